// Pool throughput: items/s of a real coordinator and N real worker processes on this machine, for a small and a
// 256-wide MLP reward model, plus the coordinator's CPU time per shard (from its own /metrics).
//
//   npm run build && node dist/bench/pool.js [--workers 1,2,4] [--items 40000] [--shard-size 1024]
//                                            [--threads 1] [--backend auto|wasm|webgpu|cpu] [--quick]
//                                            [--submit blob,base64]
// (--submit: how the timed job's features travel, each form a row measured in the same pool: an uploaded blob of
// float32, as fedpool score sends them, or inline as base64 in the JSON body, as it did before)
//
// Children run the compiled CLI (bin/fedpool.js), so this needs `npm run build` first and works where only node
// is installed (the GPU machine). Each configuration: a fresh coordinator, N workers, one warm-up job (model fetch,
// backend start-up), then the timed job from submission to its last in-order result.
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import path from 'node:path';
import { CoordinatorApi } from '../cli/api.js';
import { loadModelForSubmit } from '../cli/score/model.js';
import { featureMatrix } from '../cli/score/plan.js';
import { run as modelInit } from '../cli/commands/model-init.js';
import { cpuSeconds, startPool, stopAll } from './processes.js';
import { mulberry32 } from '../shared/random.js';
import { stringFlag } from './flags.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): string => stringFlag(args, name, fallback);
const quick = args.includes('--quick');
const workerCounts = flag('workers', quick ? '1,2' : '1,2,4').split(',').map(Number);
const totalItems = Number(flag('items', quick ? '8000' : '40000'));
const shardSize = Number(flag('shard-size', '1024'));
const threads = flag('threads', '1');
const backend = flag('backend', 'auto');
const submitForms = flag('submit', 'blob').split(',');
if (workerCounts.some((n) => !Number.isInteger(n) || n < 1) || !(totalItems > 0) || !(shardSize > 0) || submitForms.some((f) => f !== 'blob' && f !== 'base64')) {
  console.error('usage: node dist/bench/pool.js [--workers 1,2,4] [--items N] [--shard-size N] [--threads K] [--backend B] [--quick] [--submit blob,base64]');
  process.exit(2);
}

/** Seeded features in [-1, 1). */
function items(n: number, dim: number, seed: number): { id: string; features: number[] }[] {
  const u = mulberry32(seed);
  const rand = () => u() * 2 - 1;
  return Array.from({ length: n }, (_, i) => ({ id: `${i}`, features: Array.from({ length: dim }, rand) }));
}

/** Seconds from submission to the last in-order result, and of that the submission itself (encode, upload, split). */
async function runJob(api: CoordinatorApi, model: string, list: { id: string; features: number[] }[], form = 'blob'): Promise<{ total: number; submit: number }> {
  const t0 = performance.now();
  const planned = featureMatrix(list.map((it) => it.id), list.map((it) => it.features), list[0].features.length);
  if (!('features' in planned)) throw new Error('feature items expected');
  // As fedpool score sends it (the features uploaded as a blob, the job naming it), or inline base64 as it did before.
  const columns =
    form === 'blob' ? await api.columnsBody(planned) : { ids: planned.ids, features: { dim: planned.dim, base64: Buffer.from(planned.features.buffer).toString('base64') } };
  const { id } = await api.createJob({ kind: 'score', model, columns, shardSize, batchSize: 1024 });
  const submitted = performance.now();
  let n = 0;
  await api.followResults(id, () => n++);
  if (n !== list.length) throw new Error(`job ${id}: ${n} of ${list.length} results`);
  const end = performance.now();
  return { total: (end - t0) / 1000, submit: (submitted - t0) / 1000 };
}

const dir = mkdtempSync(path.join(tmpdir(), 'fedpool-bench-pool-'));
const models = [
  { name: 'small MLP 32→32→16→1', input: 'features:32', hidden: '32,16', dim: 32 },
  { name: 'wide MLP 256→256→256→1', input: 'features:256', hidden: '256,256', dim: 256 },
];
const rows: string[] = [];
try {
  for (const m of models) {
    const out = path.join(dir, m.dim.toString());
    await modelInit({ out, input: m.input, output: 'reward', hidden: m.hidden, seed: 1 });
    const bundle = await loadModelForSubmit(out);
    const warm = items(Math.min(2048, totalItems), m.dim, 2);
    const timed = items(totalItems, m.dim, 3);
    for (const n of workerCounts) {
      const children: ChildProcess[] = [];
      try {
        const { url, backend: used } = await startPool(children, n, ['--threads', threads, '--backend', backend]);
        const api = new CoordinatorApi(url, 'c');
        await api.ensureBlob(bundle.hash, bundle.bytes);
        await runJob(api, bundle.hash, warm);
        for (const form of submitForms) {
          const cpu0 = cpuSeconds(children[0]?.pid);
          const { total, submit } = await runJob(api, bundle.hash, timed, form);
          const cpu1 = cpuSeconds(children[0]?.pid);
          const shards = Math.ceil(totalItems / shardSize);
          const rate = (s: number) => Math.round(totalItems / s).toLocaleString('en-US');
          const line = `| ${m.name} | ${n} | ${used} | ${form} | ${rate(total)} | ${submit.toFixed(2)} | ${rate(total - submit)} | ${(((cpu1 - cpu0) * 1000) / shards).toFixed(2)} |`;
          rows.push(line);
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
console.log(`\nfedpool pool throughput: ${totalItems} items, shards of ${shardSize}, ${threads} thread(s) per worker, ${cpus().length} cores, node ${process.version}\n`);
console.log('| model | workers | backend | features as | items/s end to end | submit s | items/s after submit | coordinator CPU ms/shard |');
console.log('|:--|--:|:--|:--|--:|--:|--:|--:|');
for (const r of rows) console.log(r);
