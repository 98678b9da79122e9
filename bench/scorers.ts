// Inference-server scorers through the pool vs the same server called directly: items/s of a real coordinator and
// one real worker fronting a test server (test/helpers/inference-servers.ts, in a process of its own, answering
// each request after a fixed delay as a GPU server would), against a plain loop in this process that sends the same
// requests with the same concurrency. Side by side, alternating, in one run.
//
//   npm run bench:scorers [-- --items 4000] [--concurrency 4] [--delay-ms 20] [--reps 3] [--shard-size 256]
//                             [--api all|vllm|tei]
//
// The worker's added latency per request is (pool seconds − direct seconds) × concurrency / requests: the time a
// request slot sat idle in the pool that it did not in the plain loop (lease round trips, result sends, JSON).
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { cpus } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { CoordinatorApi } from '../cli/api.js';
import { firstLine, startPool, stopAll } from './processes.js';
import { stringFlag } from './flags.js';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string): number => Number(stringFlag(args, name, fallback));
const totalItems = flag('items', '4000');
const concurrency = flag('concurrency', '4');
const delayMs = flag('delay-ms', '20');
const reps = flag('reps', '3');
const shardSize = flag('shard-size', '256');
const apiIndex = args.indexOf('--api');
const only = apiIndex >= 0 ? (args[apiIndex + 1] ?? '') : 'all';
if (![totalItems, concurrency, reps, shardSize].every((n) => Number.isInteger(n) && n >= 1) || !(delayMs >= 0) || !['all', 'vllm', 'tei'].includes(only)) {
  console.error('usage: npm run bench:scorers -- [--items N] [--concurrency C] [--delay-ms D] [--reps R] [--shard-size S] [--api all|vllm|tei]');
  process.exit(2);
}

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The fake server in its own process (tsx runs the test helper from source). */
async function startServer(children: ChildProcess[], api: string, model: string, extra: string[]): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'test/helpers/inference-server-main.ts'), '--api', api, '--model', model, '--delay-ms', String(delayMs), ...extra], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  createInterface({ input: child.stderr! }).on('line', (l) => process.stderr.write(`server: ${l}\n`));
  const [, url] = await firstLine(child, /^listening on (\S+)$/);
  return url as string;
}

interface Scenario {
  name: string;
  api: 'vllm' | 'tei';
  scorerApi: string;
  /** Items per request. */
  batch: number;
  /** The request the plain loop sends for items [from, to). */
  request: (url: string, model: string, from: number, to: number) => { url: string; body: unknown };
}

const prompt = (i: number): string => `question ${i % 97}: how would you explain topic ${i % 13} to a student?`;
const response = (i: number): string => `an answer of some length, number ${i}, with a few more words than that`;

const scenarios: Scenario[] = [
  {
    name: 'vllm-classify (one conversation per request)',
    api: 'vllm',
    scorerApi: 'vllm-classify',
    batch: 1,
    request: (url, model, i) => ({
      url: `${url}/classify`,
      body: { model, messages: [{ role: 'user', content: prompt(i) }, { role: 'assistant', content: response(i) }], use_activation: false },
    }),
  },
  {
    name: 'tei (batches of 32 pairs)',
    api: 'tei',
    scorerApi: 'tei',
    batch: 32,
    request: (url, _model, from, to) => ({
      url: `${url}/predict`,
      body: { inputs: Array.from({ length: to - from }, (_, k) => [prompt(from + k), response(from + k)]), raw_scores: true },
    }),
  },
];

/** The plain loop: `concurrency` workers take the next batch until all items are sent; seconds taken. */
async function direct(s: Scenario, url: string, model: string): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const loop = async (): Promise<void> => {
    while (next < totalItems) {
      const from = next;
      const to = Math.min(totalItems, from + s.batch);
      next = to;
      const r = s.request(url, model, from, to);
      const res = await fetch(r.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(r.body) });
      if (res.status !== 200) throw new Error(`direct: ${res.status} ${await res.text()}`);
      await res.arrayBuffer();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  return (performance.now() - t0) / 1000;
}

/** The same items as a scorer job through the pool, from submission to the last in-order result; seconds taken. */
async function pooled(api: CoordinatorApi, model: string): Promise<number> {
  const t0 = performance.now();
  const ids = Array.from({ length: totalItems }, (_, i) => `${i}`);
  const columns = { ids, prompts: ids.map((_, i) => prompt(i)), responses: ids.map((_, i) => response(i)) };
  const { id } = await api.createJob({ kind: 'score', scorer: { model }, columns, shardSize });
  let n = 0;
  await api.followResults(id, () => n++);
  if (n !== totalItems) throw new Error(`job ${id}: ${n} of ${totalItems} results`);
  return (performance.now() - t0) / 1000;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

const rows: string[] = [];
for (const s of scenarios.filter((x) => only === 'all' || x.api === only)) {
  const children: ChildProcess[] = [];
  try {
    const model = `bench-${s.api}`;
    const url = await startServer(children, s.api, model, []);
    const { url: coordinator } = await startPool(children, 1, ['--threads', '1', '--backend', 'wasm', '--scorer-url', url, '--scorer-api', s.scorerApi, '--scorer-concurrency', String(concurrency)]);
    const api = new CoordinatorApi(coordinator, 'c');
    // Warm-up: connections, JIT, the worker's first lease.
    await direct(s, url, model);
    await pooled(api, model);
    const d: number[] = [];
    const p: number[] = [];
    for (let r = 0; r < reps; r++) {
      d.push(await direct(s, url, model));
      p.push(await pooled(api, model));
    }
    const requests = Math.ceil(totalItems / s.batch);
    const [dm, pm] = [median(d), median(p)];
    const added = (((pm - dm) * concurrency) / requests) * 1000;
    const line = `| ${s.name} | ${Math.round(totalItems / dm)} | ${Math.round(totalItems / pm)} | ${(dm / pm).toFixed(2)}× | ${added.toFixed(2)} |`;
    rows.push(line);
    process.stderr.write(`${line}  (direct ${d.map((x) => x.toFixed(2)).join(' ')} s, pool ${p.map((x) => x.toFixed(2)).join(' ')} s)\n`);
  } finally {
    await stopAll(children);
  }
}
console.log(`\nfedpool scorers: ${totalItems} items, ${concurrency} requests in flight, server delay ${delayMs} ms per request, shards of ${shardSize}, median of ${reps}; ${cpus().length} cores, node ${process.version}\n`);
console.log('| API | direct items/s | pool items/s | pool / direct | added ms per request |');
console.log('|:--|--:|--:|--:|--:|');
for (const r of rows) console.log(r);
