// Issue 13's fault injection, in the suite: two of bench/fault-injection.ts's seeded runs (the benchmark does 20 and
// more), on a real pool — a coordinator on a SQLite state file and two `fedpool worker` processes. A scoring job loses
// a worker (SIGKILL) and then its coordinator (SIGKILL, restarted on the same state file and port; `fedpool score`
// follows its job through the restart, as `fedpool train` does); a training job in sync rounds loses its coordinator and then
// a worker. Both must end exactly once: the score output byte for byte an uninterrupted run's, the trained model's
// files byte for byte an uninterrupted run's with every step once in the coordinator's metrics.
import test from 'ava';
import path from 'node:path';
import {
  faultRun,
  planFaults,
  referenceScore,
  referenceTrain,
  startPool,
  stopPool,
  writeScoreCase,
  writeTrainCase,
  type Launch,
  type Pool,
  type RunReport,
} from '../../bench/fault-injection.js';
import { cleanEnv, startFedpool } from '../helpers/processes.js';
import { tempDir } from '../server/helpers.js';

/** Every process through the test helpers, so the file's backstops kill whatever a failure leaves running. */
const launch: Launch = (args, env) => startFedpool(null, args, { env: cleanEnv(env) });

// Seeds whose plans hold one worker kill and one coordinator kill with short outages, so that the test stays short
// (planFaults with extra delays up to 100 ms).
const SCORE_SEED = 547; // a worker at 20 % (back after 0.46 s), the coordinator at 55 % (down 0.14 s)
const TRAIN_SEED = 2375; // the coordinator at 25 % (down 0.10 s), a worker at 50 % (back after 0.19 s)
const MAX_EXTRA_MS = 100;

function describe(r: RunReport): string {
  return `${r.kind} seed ${r.seed}: ${r.faults.join('; ')} → ${r.outcome}${r.resumes > 0 ? `, ${r.resumes} resume(s)` : ''} (${r.seconds.toFixed(1)} s)`;
}

test('seeded kill -9 of a worker and of the coordinator, scoring then training: every run exactly once', async (t) => {
  t.timeout(240_000);
  const { dir, cleanup } = tempDir();
  for (const [seed, kinds] of [[SCORE_SEED, 'score'], [TRAIN_SEED, 'train']] as const) {
    const plan = planFaults(seed, MAX_EXTRA_MS);
    t.deepEqual(plan.map((e) => e.what).sort(), ['coordinator', 'worker'], `the ${kinds} seed's plan`);
  }
  const t0 = performance.now();
  let pool: Pool | undefined;
  // One teardown, in this order: every process of the pool has exited before its folder is removed.
  t.teardown(async () => {
    try {
      if (pool !== undefined) await stopPool(pool);
    } finally {
      cleanup();
    }
  });
  const [started, scoreFiles, trainFiles] = await Promise.all([
    startPool(launch, dir, { workers: 2, workerDelayMs: 20 }),
    writeScoreCase(launch, path.join(dir, 'score-case'), { lines: 1000, shardSize: 25 }),
    writeTrainCase(launch, path.join(dir, 'train-case'), { rounds: 6 }),
  ]);
  pool = started;
  t.log(`set-up ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  // The uninterrupted runs, side by side: a score output and a sync training run do not depend on what else runs.
  const [score, train] = await Promise.all([referenceScore(pool, scoreFiles), referenceTrain(pool, trainFiles)]);
  t.log(`references ${((performance.now() - t0) / 1000).toFixed(1)} s`);

  for (const [c, seed] of [[score, SCORE_SEED], [train, TRAIN_SEED]] as const) {
    const r = await faultRun(pool, c, seed, path.join(dir, `run-${c.kind}`), { maxExtraMs: MAX_EXTRA_MS, trace: (s, what) => t.log(`  ${s.toFixed(2)} s: ${what}`) });
    t.log(describe(r));
    t.is(r.workerKills, 1, `${c.kind}: a worker was killed`);
    t.is(r.coordinatorKills, 1, `${c.kind}: the coordinator was killed`);
    t.deepEqual(r.problems, [], `${c.kind}: exactly once`);
    t.true(r.exactlyOnce);
    t.is(r.outcome, 'done');
    if (c.kind === 'score') t.is(r.resumes, 0, 'fedpool score followed its job through the coordinator restart itself (no --resume needed)');
  }
});
