// Redundancy that verifies, end to end (issue 13's rows "a worker returns score 42 with --redundancy 2 / 3"): a real
// coordinator, fake workers (one of them a liar that answers 42 for everything) and the real `fedpool score`. With
// R = 3 and two honest workers every output line is honest and the liar ends in quarantine; with R = 2 and one honest
// worker the lines the two disagree on are marked disputed, the summary counts them, and the command exits 3.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { startCoordinator, type Coordinator } from '../../server/coordinator.js';
import { runFedpool } from '../helpers/processes.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, api, tempDir } from '../server/helpers.js';

let dir: string;
let cleanup: () => void;
let model: string;

test.before(async () => {
  ({ dir, cleanup } = tempDir());
  model = path.join(dir, 'model');
  const r = await runFedpool(['model', 'init', '--out', model, '--input', 'features:3', '--output', 'reward', '--hidden', '4']);
  if (r.status !== 0) throw new Error(r.stderr);
});

test.after.always(() => cleanup?.());

const ITEMS = 40;
/** Item i's features sum to i, which is what an honest fake worker scores it. */
const input = Array.from({ length: ITEMS }, (_, i) => JSON.stringify({ id: `x${i}`, features: [i, 0, 0] })).join('\n') + '\n';

async function pool(t: import('ava').ExecutionContext, names: string[]): Promise<Coordinator> {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: pino({ level: 'silent' }), workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  t.teardown(() => c.close());
  for (const name of names) {
    const w = await FakeWorker.connect(c.url, { name, delayMs: 1, ...(name === 'liar' ? { lie: (honest: Float32Array) => new Float32Array(honest.length).fill(42) } : {}) });
    t.teardown(() => w.close());
    w.pull(4);
  }
  return c;
}

async function score(c: Coordinator, name: string, ...extra: string[]) {
  const file = path.join(dir, `${name}.jsonl`);
  writeFileSync(path.join(dir, `${name}.in.jsonl`), input);
  const r = await runFedpool(['score', '--url', c.url, '--token', CLIENT_TOKEN, '--model', model, '--input', path.join(dir, `${name}.in.jsonl`), '--output', file, '--shard-size', '4', ...extra]);
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; score: number; disputed?: true });
  return { ...r, lines };
}

test('--redundancy 3 with two honest workers and a liar: every line is honest and the liar ends in quarantine', async (t) => {
  const c = await pool(t, ['liar', 'honest-a', 'honest-b']);
  const r = await score(c, 'r3', '--redundancy', '3');
  t.is(r.status, 0, r.stderr);
  t.deepEqual(r.lines.map((l) => [l.id, l.score, l.disputed]), Array.from({ length: ITEMS }, (_, i) => [`x${i}`, i, undefined]));
  const summary = JSON.parse(r.stdout) as { redundancy: { mode: number; replicas: number; disputed: number } };
  t.like(summary.redundancy, { mode: 3, disputed: 0 });
  t.true(summary.redundancy.replicas >= 2 * (ITEMS / 4), `${summary.redundancy.replicas} replicas: at least a quorum of 2 per shard`);
  const workers = (await (await api(c.url, '/api/workers')).json()) as { name: string; state: string; record: { outvoted: number } }[];
  const liar = workers.find((w) => w.name === 'liar');
  t.is(liar?.state, 'quarantined');
  t.true((liar?.record.outvoted ?? 0) >= 3);
  t.true(workers.filter((w) => w.name !== 'liar').every((w) => w.state !== 'quarantined' && w.record.outvoted === 0));
});

test('--redundancy 2 with one honest worker and a liar: every split line is disputed, counted, and the command exits 3', async (t) => {
  const c = await pool(t, ['liar', 'honest']);
  const r = await score(c, 'r2', '--redundancy', '2');
  t.is(r.status, 3, r.stderr);
  t.regex(r.stderr, /^fedpool score: \d+ of 40 lines are disputed: no quorum of workers agreed on their scores/m);
  // Every shard goes to both (two distinct workers), every item is split one to one, and nobody is left to ask.
  t.deepEqual(r.lines.map((l) => [l.id, l.disputed]), Array.from({ length: ITEMS }, (_, i) => [`x${i}`, true]));
  t.true(r.lines.every((l, i) => l.score === i || l.score === 42), 'a disputed line carries one of the two answers');
  const summary = JSON.parse(r.stdout) as { redundancy: { disputed: number; disagreements: number; replicas: number } };
  t.deepEqual(summary.redundancy, { mode: 2, disputed: ITEMS, disagreements: ITEMS / 4, replicas: 2 * (ITEMS / 4) });
});
