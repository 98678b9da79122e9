// The evaluation pool end to end, as users run it: a real coordinator, real worker processes, the real
// `fedpool score` — all spawned on loopback.
import test from 'ava';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readBundleDir } from '../../client/scoring/bundle-fs.js';
import { scoreInProcess } from '../../client/scoring/reference.js';
import { selectBackend } from '../../client/backends.js';
import { cleanEnv, runFedpool as cli, startFedpool } from '../helpers/processes.js';
import { CLIENT_TOKEN, WORKER_TOKEN, sleep, startCoordinatorProcess, tempDir } from '../server/helpers.js';
import { startWorker, stop } from './processes.js';

/** Text items with groups, plus preference pairs every 50th line. */
function writeInput(file: string, n: number): void {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 50 === 49) lines.push(JSON.stringify({ id: `pair-${i}`, prompt: `question ${i % 13}`, chosen: `a good answer ${i}`, rejected: `bad ${i % 7}` }));
    else lines.push(JSON.stringify({ id: `item-${i}`, prompt: `question ${i % 13}`, response: `answer number ${i} about topic ${i % 17}`, group: `g${i % 40}` }));
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}

test('3 workers score 6,000 lines through fedpool score: complete, in order, equal to one process; kill -9 of a worker mid-job loses nothing', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const model = path.join(dir, 'model');
  const init = await cli(['model', 'init', '--out', model, '--input', 'text:128', '--output', 'reward', '--hidden', '64,32', '--seed', '3']);
  t.is(init.status, 0, String(init.stderr));

  const coordinator = await startCoordinatorProcess(['--state', path.join(dir, 'state.db'), '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN, '--lease-ms', '20000'], {}, t);
  const workers = ['a', 'b', 'c'].map((n) => startWorker(coordinator.url, `w-${n}`, path.join(dir, `cache-${n}`)));
  t.teardown(async () => {
    await Promise.all(workers.map((w) => stop(w)));
  });
  await Promise.all(workers.map((w) => w.connected));

  // Part 1: a clean run, compared against scoring the same model in this process.
  const input = path.join(dir, 'in.jsonl');
  const output = path.join(dir, 'out.jsonl');
  writeInput(input, 6000);
  const scored = await cli(['score', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--model', model, '--input', input, '--output', output, '--shard-size', '128', '--select', 'best-of-n']);
  t.is(scored.status, 0, String(scored.stderr));
  t.regex(String(scored.stderr), /^fedpool job \S+ submitted$/m);
  const summary = JSON.parse(String(scored.stdout).trim().split('\n').at(-1) ?? '{}') as { items: number; scored: number; accuracy: number; selected: { mode: string; groups: number; file: string } };
  t.is(summary.items, 6000);
  t.is(summary.scored, 6120);
  t.deepEqual(summary.selected, { mode: 'best-of-n', groups: 40, file: path.join(dir, 'out.selected.jsonl') });
  t.true(String(scored.stdout).length < 1000, 'the summary stays one short line');
  t.is(readFileSync(summary.selected.file, 'utf8').trim().split('\n').length, 40, 'one line per group');

  const inLines = readFileSync(input, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; prompt: string; response?: string; chosen?: string; rejected?: string });
  const outLines = readFileSync(output, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; score?: number; chosen_score?: number; rejected_score?: number; correct?: boolean });
  t.deepEqual(outLines.map((l) => l.id), inLines.map((l) => l.id), 'one output line per input line, in input order');

  await selectBackend('wasm');
  const flat = inLines.flatMap((l) => (l.chosen !== undefined ? [{ prompt: l.prompt, response: l.chosen }, { prompt: l.prompt, response: l.rejected ?? '' }] : [{ prompt: l.prompt, response: l.response ?? '' }]));
  const reference = await scoreInProcess(await readBundleDir(model), flat, 1024);
  let k = 0;
  let worst = 0;
  let right = 0;
  for (const l of outLines) {
    if (l.score !== undefined) worst = Math.max(worst, Math.abs(l.score - reference[k++]));
    else {
      worst = Math.max(worst, Math.abs((l.chosen_score ?? NaN) - reference[k++]), Math.abs((l.rejected_score ?? NaN) - reference[k++]));
      if (l.correct) right++;
      t.is(l.correct, (l.chosen_score ?? 0) > (l.rejected_score ?? 0));
    }
  }
  t.true(worst <= 1e-5, `max |pool − in-process| = ${worst}`);
  t.is(summary.accuracy, right / 120);

  // Part 2: kill -9 one worker while a bigger job runs; the job still completes, every line exactly once.
  const big = path.join(dir, 'big.jsonl');
  const bigOut = path.join(dir, 'big-out.jsonl');
  writeInput(big, 30000);
  const submit = startFedpool(t, ['score', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--model', model, '--input', big, '--output', bigOut, '--shard-size', '64']);
  const [, jobId] = await submit.line(/fedpool job (\S+) submitted/, { stream: 'stderr', what: 'fedpool score submitting' });
  let killedAt = -1;
  for (const end = Date.now() + 120_000; killedAt < 0;) {
    const res = await fetch(`${coordinator.url}/api/jobs/${jobId}`, { headers: { authorization: `Bearer ${CLIENT_TOKEN}` } });
    const job = (await res.json()) as { state: string; progress: { done: number; total: number } };
    if (job.state === 'done') break;
    if (job.progress.done > 0) {
      workers[0].proc.kill('SIGKILL');
      killedAt = job.progress.done / job.progress.total;
    } else if (Date.now() > end) {
      return t.fail(`no shard of job ${jobId} done in 120 s`);
    } else await sleep(20);
  }
  t.is(await submit.status, 0, submit.stderr());
  t.true(killedAt > 0 && killedAt < 1, `worker killed mid-job (at ${killedAt})`);
  const ids = readFileSync(bigOut, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id);
  const expected = readFileSync(big, 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id);
  t.deepEqual(ids, expected, 'every line exactly once, in order, after the kill');
  t.regex(submit.stdout(), /"items":30000/);
});

test('fedpool demo runs to completion, keeps its results in ./fedpool-demo, says what its numbers mean', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const r = await cli(['demo'], { cwd: dir, env: cleanEnv({ FEDPOOL_CACHE_DIR: path.join(dir, 'cache') }) });
  t.is(r.status, 0, String(r.stderr));
  const out = String(r.stdout);
  const kept = path.join(dir, 'fedpool-demo');
  for (const f of ['scores.jsonl', 'scores.selected.jsonl', 'items.jsonl', 'reward-model/fedpool.json', 'train/out/metrics.jsonl', 'train/out/model/fedpool.json', 'train/train.json']) {
    t.true(existsSync(path.join(kept, f)), f);
  }
  t.regex(out, /^ {2}pair accuracy 0\.\d\d: the share of the 50 pairs whose chosen answer the model scored higher\. The model's weights are random/m);
  t.regex(out, /^ {2}accuracy 0\.\d\d after the first round, 0\.\d\d after round 6: the share of 300 held-out examples/m);
  t.regex(out, new RegExp(`^results kept in ${kept.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\. Next steps:$`, 'm'));
  // The dashboard's URL while the pool is up (before the jobs), none after the last line, when the pool is gone.
  t.regex(out, /coordinator {2}http:\/\/127\.0\.0\.1:\d+\n {2}dashboard {4}http:\/\/127\.0\.0\.1:\d+\/\?token=\w+ {2}\(live while the demo runs; --keep keeps it up\)\n/);
  t.notRegex(out.slice(out.indexOf('results kept in')), /dashboard/, 'no URL of a pool that is gone when the demo ends');
  const again = await cli(['demo'], { cwd: dir, env: cleanEnv({ FEDPOOL_CACHE_DIR: path.join(dir, 'cache') }) });
  t.is(again.status, 1);
  t.is(again.stderr, `${kept}: not empty (an earlier demo's results?); remove it, or give another folder: fedpool demo --out DIR\n`);
  t.regex(out, /coordinator {2}http:\/\/127\.0\.0\.1:\d+/);
  t.is(out.match(/fedpool worker demo-worker-\d connected to/g)?.length, 2);
  t.regex(out, /"items":250,"scored":300/);
  const trained = /^\{"job":"\w+","steps":6,.*"final_accuracy":([\d.]+)/m.exec(out);
  t.truthy(trained, 'the demo runs a federated training job');
  t.true(Number(trained?.[1]) > 0.8, `accuracy after 6 FedAvg rounds: ${trained?.[1]}`);
  t.regex(out, /fedpool demo: done/);
});
