// The coordinator's own cost per training update (issue 14: "≤ 3 ms per 4 MB training update"): one real coordinator
// process (the compiled CLI, in-memory state) and W light workers simulated in this process (bench/bench-worker.ts)
// that answer each train lease at once with an update of the model's size — no training, so the coordinator's CPU is
// all there is to see. A sync job of R rounds with every worker in every round (clientsPerRound = W, local momentum 0,
// no evaluation data, a checkpoint every 10 steps, as by default) runs after a one-round warm-up job; its CPU time from
// /proc between the first and the last step, divided by the updates in between, is what one update costs the
// coordinator: leasing it (weights once per worker and version), decoding and checking the result, the step's mean
// and the server optimizer, metrics and checkpoints. --reps jobs; the table gives the median and the range.
//
//   npm run build && node dist/bench/coordinator-training.js [--workers 10] [--rounds 20] [--reps 3]
//                                                            [--aggregation-threads 0] [--node-args "--cpu-prof …"]
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { CoordinatorApi } from '../cli/api.js';
import { parseTrainConfig } from '../shared/config/train.js';
import { BenchWorker } from './bench-worker.js';
import { bin, cpuSeconds, firstLine, stopAll } from './processes.js';
import { classifyColumns, initModel } from './train-jobs.js';
import { stringFlag } from './flags.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => stringFlag(args, name, fallback);
const workerCount = Number(flag('workers', '10'));
const rounds = Number(flag('rounds', '20'));
const reps = Number(flag('reps', '3'));
const helpers = Number(flag('aggregation-threads', '0'));
const nodeArgs = flag('node-args', '').split(' ').filter((a) => a !== '');
if (![workerCount, rounds, reps].every((n) => Number.isInteger(n) && n > 1) || !(Number.isInteger(helpers) && helpers >= 0)) {
  console.error('usage: node dist/bench/coordinator-training.js [--workers N ≥ 2] [--rounds N ≥ 2] [--reps N ≥ 2] [--aggregation-threads N] [--node-args "…"]');
  process.exit(2);
}

const INPUT = 'features:1024';
const HIDDEN = '768,256';
const dir = mkdtempSync(path.join(tmpdir(), 'fedpool-bench-coordinator-training-'));
const children: ChildProcess[] = [];
const workers: BenchWorker[] = [];
try {
  const { bytes, hash } = await initModel(dir, INPUT, HIDDEN);
  const coord = spawn(process.execPath, [...nodeArgs, bin, 'coordinator', '--port', '0', '--state', ':memory:', '--worker-token', 'w', '--client-token', 'c', '--aggregation-threads', String(helpers)], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FEDPOOL_LOG: 'warn' },
  });
  children.push(coord);
  const [, url] = await firstLine(coord, /^fedpool coordinator listening on (\S+)$/);
  if (url === undefined) throw new Error('no coordinator URL');
  const api = new CoordinatorApi(url, 'c');
  await api.ensureBlob(hash, bytes);
  for (let k = 0; k < workerCount; k++) workers.push(await BenchWorker.connect(url, { name: `light-${k}`, token: 'w', trainUpdate: 1e-4 }));
  for (const w of workers) w.pull(2);
  const clients = 4 * workerCount;
  const data = classifyColumns(clients * 8, 1024, 11);
  const config = (total: number) =>
    parseTrainConfig(
      {
        model: 'model', task: 'classify',
        data: { source: 'central', path: 'in-memory', partition: { clients, kind: 'iid', seed: 1 } },
        mode: 'sync', rounds: total, clientsPerRound: workerCount,
        local: { steps: 1, batchSize: 8, lr: 0.05, momentum: 0 },
      },
      dir,
      (base, p) => path.resolve(base, p),
    );

  /** One job: CPU seconds of the coordinator per update between its first and last step, and the updates. */
  const job = async (total: number): Promise<{ msPerUpdate: number; updates: number }> => {
    const { id } = await api.createJob({ kind: 'train', model: hash, config: config(total), data });
    const lines: Array<{ participants: number }> = [];
    let cpuFirst: number | undefined;
    await api.followLines(`/api/jobs/${encodeURIComponent(id)}/metrics?follow=1`, (value) => {
      lines.push(value as { participants: number });
      cpuFirst ??= cpuSeconds(coord.pid);
    });
    const cpuLast = cpuSeconds(coord.pid);
    const state = await api.job(id);
    if (state.state !== 'done') throw new Error(`job ${id} ended ${state.state}: ${state.error ?? ''}`);
    if (lines.some((l) => l.participants !== workerCount)) throw new Error(`job ${id}: a step aggregated fewer than ${workerCount} updates`);
    const updates = lines.slice(1).reduce((a, l) => a + l.participants, 0);
    return { msPerUpdate: cpuFirst === undefined || updates === 0 ? Number.NaN : ((cpuLast - cpuFirst) * 1000) / updates, updates };
  };
  await job(2); // warm-up: model load, JIT
  const runs: number[] = [];
  for (let r = 0; r < reps; r++) runs.push((await job(rounds)).msPerUpdate);
  const sorted = [...runs].sort((a, b) => a - b);
  const median = sorted[Math.floor((sorted.length - 1) / 2)] as number;
  const errors = workers.reduce((s, w) => s + w.errors.length, 0);
  console.log(`\nfedpool coordinator cost per training update: ${workerCount} light workers in one process, a ${INPUT}→${HIDDEN}→10 classifier (986,634 parameters: 3.9 MB updates), sync, ${workerCount} updates a step, ${rounds} steps, ${helpers} aggregation thread(s), the median of ${reps} jobs, ${cpus().length} cores, node ${process.version}, ${new Date().toISOString().slice(0, 10)}\n`);
  console.log('| workers = updates per step | steps | aggregation threads | coordinator CPU ms per update (range) | worker errors |');
  console.log('|--:|--:|--:|--:|--:|');
  console.log(`| ${workerCount} | ${rounds} | ${helpers} | ${median.toFixed(1)} (${sorted[0]!.toFixed(1)}–${sorted.at(-1)!.toFixed(1)}) | ${errors} |`);
} finally {
  for (const w of workers) w.close();
  await stopAll(children);
  rmSync(dir, { recursive: true, force: true });
}
