// The coordinator's own cost per score shard (issue 14: "a coordinator that costs microseconds"): one real coordinator
// process (the compiled CLI, in-memory or SQLite state) and W light workers simulated in this process
// (bench/bench-worker.ts) that answer each lease at once with the honest scores. A job of small shards runs from
// submission to its last result; the coordinator's CPU seconds (its own /metrics) over that time, divided by the
// shards, is what dispatching a lease and accounting its result cost (its CPU from /proc, bench/processes.ts). Submission is timed apart. The job runs --reps
// times in the same pool (this machine is shared and noisy); the table gives the median and the range.
//
//   npm run build && node dist/bench/coordinator.js [--workers 50] [--shards 20000] [--shard-size 8] [--state memory|sqlite]
//                                                   [--reps 3] [--node-args "--cpu-prof --cpu-prof-dir=DIR"]
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { CoordinatorApi } from '../cli/api.js';
import { featureMatrix } from '../cli/score/plan.js';
import { BenchWorker } from './bench-worker.js';
import { bin, cpuSeconds, firstLine, stopAll } from './processes.js';
import { stringFlag } from './flags.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => stringFlag(args, name, fallback);
const workerCount = Number(flag('workers', '50'));
const shards = Number(flag('shards', '20000'));
const shardSize = Number(flag('shard-size', '8'));
const stateKind = flag('state', 'memory');
const reps = Number(flag('reps', '3'));
const nodeArgs = flag('node-args', '').split(' ').filter((a) => a !== '');
if (![workerCount, shards, shardSize, reps].every((n) => Number.isInteger(n) && n > 0) || (stateKind !== 'memory' && stateKind !== 'sqlite')) {
  console.error('usage: node dist/bench/coordinator.js [--workers N] [--shards N] [--shard-size N] [--state memory|sqlite] [--reps N] [--node-args "…"]');
  process.exit(2);
}

const dir = mkdtempSync(path.join(tmpdir(), 'fedpool-bench-coordinator-'));
const children: ChildProcess[] = [];
const workers: BenchWorker[] = [];
try {
  const state = stateKind === 'memory' ? ':memory:' : path.join(dir, 'state.db');
  const coord = spawn(process.execPath, [...nodeArgs, bin, 'coordinator', '--port', '0', '--state', state, '--worker-token', 'w', '--client-token', 'c'], {
    stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FEDPOOL_LOG: 'warn' },
  });
  children.push(coord);
  const [, url] = await firstLine(coord, /^fedpool coordinator listening on (\S+)$/);
  if (url === undefined) throw new Error('no coordinator URL');
  const api = new CoordinatorApi(url, 'c');
  const model = Buffer.from('a model the light workers only fetch');
  const modelHash = createHash('sha256').update(model).digest('hex');
  await api.ensureBlob(modelHash, model);
  for (let k = 0; k < workerCount; k++) workers.push(await BenchWorker.connect(url, { name: `light-${k}`, token: 'w', threads: 4, fetchModels: true }));
  for (const w of workers) w.pull(8);

  const job = async (n: number): Promise<{ submitS: number; runS: number; cpuS: number }> => {
    const ids = Array.from({ length: n }, (_, i) => `${i}`);
    const rows = ids.map((_, i) => [i % 7, (i * 3) % 5, 1, -1]);
    const t0 = performance.now();
    const columns = await api.columnsBody(featureMatrix(ids, rows, 4));
    const { id } = await api.createJob({ kind: 'score', model: modelHash, columns, shardSize, batchSize: shardSize });
    const t1 = performance.now();
    const cpu0 = cpuSeconds(coord.pid);
    let got = 0;
    await api.followResults(id, () => got++);
    const t2 = performance.now();
    const cpu1 = cpuSeconds(coord.pid);
    if (got !== n) throw new Error(`job ${id}: ${got} of ${n} results`);
    return { submitS: (t1 - t0) / 1000, runS: (t2 - t1) / 1000, cpuS: cpu1 - cpu0 };
  };
  // Warm-up, as long as a timed run: model fetches, and the JIT (a first run of 20,000 shards was ~40 % dearer).
  await job(shards * shardSize);
  const runs: Array<{ submitS: number; runS: number; cpuS: number }> = [];
  for (let k = 0; k < reps; k++) runs.push(await job(shards * shardSize));
  // The run with the median CPU time, and the range of CPU per shard over all runs.
  const sorted = [...runs].sort((a, b) => a.cpuS - b.cpuS);
  const r = sorted[Math.floor((sorted.length - 1) / 2)] as { submitS: number; runS: number; cpuS: number };
  const perShard = (cpuS: number): string => ((cpuS * 1e6) / shards).toFixed(0);
  const range = `${perShard((sorted[0] as { cpuS: number }).cpuS)}–${perShard((sorted[sorted.length - 1] as { cpuS: number }).cpuS)}`;
  const errors = workers.reduce((s, w) => s + w.errors.length, 0);
  console.log(`\nfedpool coordinator cost per score shard: ${workerCount} light workers in one process, ${shards.toLocaleString('en-US')} shards of ${shardSize} items (4 features), ${stateKind} state, the median of ${reps} runs, ${cpus().length} cores, node ${process.version}, ${new Date().toISOString().slice(0, 10)}\n`);
  console.log('| shards | workers | state | submit s | run s | shards/s | coordinator CPU s | coordinator CPU µs/shard (range) | worker errors |');
  console.log('|--:|--:|:--|--:|--:|--:|--:|--:|--:|');
  console.log(`| ${shards} | ${workerCount} | ${stateKind} | ${r.submitS.toFixed(2)} | ${r.runS.toFixed(2)} | ${Math.round(shards / r.runS).toLocaleString('en-US')} | ${r.cpuS.toFixed(2)} | ${perShard(r.cpuS)} (${range}) | ${errors} |`);
} finally {
  for (const w of workers) w.close();
  await stopAll(children);
  rmSync(dir, { recursive: true, force: true });
}
