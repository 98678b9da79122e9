// Fine-tuning throughput (issue 4), two measurements side by side for a ~1e5- and a ~1e6-parameter classifier:
//
// 1. Server aggregation time per step: ServerAggregator.step() — the pipeline the coordinator's training drivers
//    build from train.json's `aggregation` section (trainPipelineSpec → parseAggregationConfig → DriverAggregator,
//    whose step() is ServerAggregator's) — on K client updates of d floats, in this process, median of several
//    repetitions after a warm-up step, for: samples-weighted mean; fedau weighting + mean; nnm + trimmed-mean (f=2);
//    nnm + krum (f=2); cclip.
// 2. End to end: a real coordinator and W real worker processes (the compiled CLI, as bench/pool.ts) running a
//    real `train` job on central classify data (seeded Gaussian class rows, made in memory), submitted with the same
//    POST /api/jobs body `fedpool train` sends (cli/commands/train.ts: uploaded model blob, resolved config, base64
//    columns), followed through /api/jobs/:id/metrics like `fedpool train` does.
//
//    Mode: sync, clientsPerRound = 2 × W. A worker holds 2 leases (credit = 2 × threads), so every worker gets
//    two shards per round and downloads its second while it trains the first. Sync rounds wait for their last
//    shard, then aggregate, then dispatch: shards/s here *includes* the round barrier and the server step, which is
//    what a sync job actually gets (async mode would hide the barrier; pass --mode async for that: concurrency
//    2 × W, buffer W). shards/s = Σ participants over all steps / `time` of the last step (metrics.jsonl: seconds
//    from the job's start, after the coordinator loaded the model, to the step). Each configuration first runs a
//    1-round warm-up job (workers fetch the model and start their backend), so the timed job measures steady state.
//    The coordinator's CPU ms/step comes from its own /metrics, read at step 1 and at the job's end, divided by the
//    steps between (so submission and model loading are not in it).
//
//   npm run build && node dist/bench/train.js [--workers 1,2] [--rounds 10] [--local-steps 1,10] [--batch 32]
//                                             [--reps 5] [--mode sync|async] [--threads 1] [--backend auto] [--quick]
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { CoordinatorApi } from '../cli/api.js';
import { ServerAggregator, type Contribution } from '../shared/aggregation/pipeline.js';
import { parseAggregationConfig } from '../shared/config/aggregation.js';
import { parseTrainConfig } from '../shared/config/train.js';
import { cpuSeconds, startPool, stopAll, type StderrLine } from './processes.js';
import { mulberry32 } from '../shared/random.js';
import { CLASSES, classifyColumns, initModel } from './train-jobs.js';
import { stringFlag } from './flags.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => stringFlag(args, name, fallback);
const list = (s: string): number[] => s.split(',').map(Number);
const quick = args.includes('--quick');
const workerCounts = list(flag('workers', quick ? '1' : '1,2'));
const rounds = Number(flag('rounds', quick ? '2' : '10'));
const localSteps = list(flag('local-steps', quick ? '1' : '1,10'));
const batchSize = Number(flag('batch', '32'));
const reps = Number(flag('reps', quick ? '2' : '5'));
const mode = flag('mode', 'sync');
const threads = flag('threads', '1');
const backend = flag('backend', 'auto');
const ints = (xs: number[]) => xs.every((n) => Number.isInteger(n) && n >= 1);
if (!ints(workerCounts) || !ints(localSteps) || !ints([rounds, batchSize, reps]) || (mode !== 'sync' && mode !== 'async')) {
  console.error('usage: node dist/bench/train.js [--workers 1,2] [--rounds N] [--local-steps 1,10] [--batch 32] [--reps N] [--mode sync|async] [--threads K] [--backend B] [--quick]');
  process.exit(2);
}

const models = [
  { name: '784→128→10', input: 'features:784', hidden: '128', dim: 784 },
  { name: '1024→768→256→10', input: 'features:1024', hidden: '768,256', dim: 1024 },
].slice(0, quick ? 1 : 2);
const paramCount = (dim: number, hidden: string): number => {
  const sizes = [dim, ...hidden.split(',').map(Number), CLASSES];
  let n = 0;
  for (let i = 1; i < sizes.length; i++) n += sizes[i - 1] * sizes[i] + sizes[i];
  return n;
};
const fmt = (x: number, digits = 2) => x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

// ---- 1. server aggregation per step --------------------------------------------------------------------------

/** Seeded approximately-normal floats (sum of 4 uniforms, centred), scaled. */
function vectors(k: number, d: number, seed: number, scale: number): Float32Array[] {
  const u = mulberry32(seed);
  return Array.from({ length: k }, () => {
    const v = new Float32Array(d);
    for (let j = 0; j < d; j++) v[j] = (u() + u() + u() + u() - 2) * scale;
    return v;
  });
}

const pipelines: { name: string; aggregation: unknown }[] = [
  { name: 'samples-weighted mean', aggregation: { weighting: 'samples' } },
  { name: 'fedau + mean', aggregation: { weighting: 'fedau' } },
  { name: 'nnm + trimmed-mean f=2', aggregation: { weighting: 'samples', robust: { mix: 'nnm', rule: 'trimmed-mean', f: 2 } } },
  { name: 'nnm + krum f=2', aggregation: { weighting: 'samples', robust: { mix: 'nnm', rule: 'krum', f: 2 } } },
  { name: 'cclip', aggregation: { weighting: 'samples', robust: { rule: 'cclip' } } },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

const aggRows: string[] = [];
{
  const sizes = models.map((m) => paramCount(m.dim, m.hidden));
  const ks = quick ? [10] : [10, 30];
  const population = 100;
  for (const d of sizes) {
    for (const k of ks) {
      const updates = vectors(k, d, 7 + k, 0.01);
      const model = vectors(1, d, 3, 0.1)[0];
      const contributions: Contribution[] = updates.map((update, i) => ({ update, samples: 50 + ((i * 37) % 60), client: (i * 7) % population }));
      const cells: string[] = [];
      for (const p of pipelines) {
        const spec = parseAggregationConfig(p.aggregation, { numClients: population, perStep: k });
        const agg = new ServerAggregator(spec);
        agg.step(model, contributions); // warm-up (JIT, first allocations)
        const times: number[] = [];
        for (let r = 0; r < reps; r++) {
          const t0 = performance.now();
          agg.step(model, contributions);
          times.push(performance.now() - t0);
        }
        cells.push(fmt(median(times), 1));
      }
      const line = `| ${d.toLocaleString('en-US')} | ${k} | ${cells.join(' | ')} |`;
      aggRows.push(line);
      process.stderr.write(`${line}\n`);
    }
  }
}

// ---- 2. end to end -------------------------------------------------------------------------------------------

/** The last warnings of every child (workers log failed leases there), shown when a job trains nothing. */
const childWarnings: string[] = [];

const recordWarning: StderrLine = (line, argv) => {
  childWarnings.push(`${argv[0]}: ${line}`);
  if (childWarnings.length > 20) childWarnings.shift();
};

interface MetricLine {
  step: number;
  time: number;
  participants: number;
}

interface JobFigures {
  steps: number;
  shards: number;
  seconds: number;
  cpuMsPerStep: number;
}

async function trainJob(api: CoordinatorApi, coordinatorPid: number | undefined, body: { model: string; config: unknown; data: unknown }): Promise<JobFigures> {
  const { id } = await api.createJob({ kind: 'train', ...body });
  const lines: MetricLine[] = [];
  let cpuFirst: number | undefined;
  await api.followLines(`/api/jobs/${encodeURIComponent(id)}/metrics?follow=1`, (value) => {
    lines.push(value as MetricLine);
    cpuFirst ??= cpuSeconds(coordinatorPid);
  });
  const cpuLast = cpuSeconds(coordinatorPid);
  const job = await api.job(id);
  if (job.state !== 'done') throw new Error(`job ${id} ended ${job.state}: ${job.error ?? ''}`);
  const last = lines.at(-1);
  if (last === undefined || cpuFirst === undefined) throw new Error(`job ${id}: no metrics`);
  const shards = lines.reduce((a, l) => a + l.participants, 0);
  // A round without updates means the workers' shards failed: a throughput figure would be meaningless.
  if (lines.some((l) => l.participants === 0)) throw new Error(`job ${id}: ${lines.filter((l) => l.participants === 0).length} of ${lines.length} steps aggregated no update; last warnings:\n${childWarnings.join('\n')}`);
  return { steps: lines.length, shards, seconds: last.time, cpuMsPerStep: lines.length > 1 ? ((cpuLast - cpuFirst) * 1000) / (lines.length - 1) : Number.NaN };
}

const dir = mkdtempSync(path.join(tmpdir(), 'fedpool-bench-train-'));
const e2eRows: string[] = [];
try {
  for (const m of models) {
    const { bytes, hash } = await initModel(dir, m.input, m.hidden);
    const out = path.join(dir, m.input.replace(':', '-'));
    const params = paramCount(m.dim, m.hidden);
    for (const w of workerCounts) {
      const perStep = mode === 'sync' ? 2 * w : w;
      const clients = Math.max(20, 4 * w);
      const data = classifyColumns(clients * 64, m.dim, 11);
      const config = (steps: number, total: number) =>
        parseTrainConfig(
          {
            model: out, task: 'classify',
            data: { source: 'central', path: 'in-memory', partition: { clients, kind: 'iid', seed: 1 } },
            mode,
            ...(mode === 'sync' ? { rounds: total, clientsPerRound: perStep } : { steps: total, concurrency: 2 * w, buffer: perStep }),
            local: { steps, batchSize, lr: 0.05, momentum: 0.9 },
          },
          dir,
          (base, p) => path.resolve(base, p),
        );
      const children: ChildProcess[] = [];
      try {
        const { url, backend: used } = await startPool(children, w, ['--threads', threads, '--backend', backend], recordWarning);
        const api = new CoordinatorApi(url, 'c');
        await api.ensureBlob(hash, bytes);
        await trainJob(api, children[0]?.pid, { model: hash, config: config(1, 1), data });
        for (const steps of localSteps) {
          const r = await trainJob(api, children[0]?.pid, { model: hash, config: config(steps, rounds), data });
          const line =
            `| ${m.name} | ${params.toLocaleString('en-US')} | ${w} | ${used} | ${steps} | ${r.steps} × ${perStep} | ${fmt(r.seconds)} | ` +
            `${fmt(r.shards / r.seconds)} | ${fmt(r.steps / r.seconds)} | ${fmt(r.cpuMsPerStep, 0)} |`;
          e2eRows.push(line);
          process.stderr.write(`${line}\n`);
        }
      } finally {
        await stopAll(children);
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}

console.log(`\nfedpool server aggregation, ServerAggregator.step(), median of ${reps} after a warm-up, ms per step (${cpus().length} cores, node ${process.version})\n`);
console.log(`| d | K | ${pipelines.map((p) => p.name).join(' | ')} |`);
console.log(`|--:|--:|${pipelines.map(() => '--:').join('|')}|`);
for (const r of aggRows) console.log(r);
console.log(
  `\nfedpool fine-tuning end to end: ${mode} mode, ${mode === 'sync' ? `clientsPerRound 2 × workers` : 'concurrency 2 × workers, buffer = workers'}, ` +
    `batch ${batchSize}, ${threads} thread(s) per worker, 64 rows per client\n`,
);
console.log('| model | params | workers | backend | local steps | steps × updates | train s | shards/s | server steps/s | coordinator CPU ms/step |');
console.log('|:--|--:|--:|:--|--:|--:|--:|--:|--:|--:|');
for (const r of e2eRows) console.log(r);
