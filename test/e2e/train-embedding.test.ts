// A reward head over a server's embeddings (`fedpool model init --input embedding:DIM --embedding-model emb`),
// fine-tuned federatedly on two workers' own preference pairs: each worker fronts its own test-owned embedding server
// (one OpenAI-compatible, one Ollama, both serving model `emb`) and embeds its own rows there, so no text reaches the
// coordinator. Held-out pairwise accuracy is measured with `fedpool score --model` through the pool, before (a job
// that first waits, saying so, for workers serving embeddings of `emb`) and after.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { embeddingText } from '../../shared/model/embedding-input.js';
import { mulberry32 } from '../../shared/random.js';
import { startInferenceServer, type FakeServer } from '../helpers/inference-servers.js';
import { runFedpool as fedpool, startFedpool } from '../helpers/processes.js';
import { CLIENT_TOKEN, api, tempDir } from '../server/helpers.js';
import { modelInit, readMetrics, startTrainingPool, startWorker, summaryOf } from './processes.js';

const DIM = 64;
const GOOD = ['clear', 'correct', 'precise', 'thanks', 'because', 'example', 'verified', 'sources', 'helpful', 'accurate'];
const BAD = ['wrong', 'guess', 'rude', 'dunno', 'spam', 'lazy', 'vague', 'nonsense', 'whatever', 'maybe'];
const NEUTRAL = Array.from({ length: 40 }, (_, i) => `w${i}`);

interface Pair {
  id: string;
  prompt: string;
  chosen: string;
  rejected: string;
}

/**
 * Seeded preference pairs: a chosen answer has five neutral words and two "good" ones, a rejected answer five neutral
 * words and two "bad" ones; each of those two words comes from the other vocabulary with probability 0.1 (noise: the best possible accuracy is about 0.95).
 */
function pairs(n: number, seed: number): Pair[] {
  const rand = mulberry32(seed);
  const pick = (words: readonly string[], k: number): string[] => Array.from({ length: k }, () => words[Math.floor(rand() * words.length)]!);
  const signal = (own: readonly string[], other: readonly string[]): string[] => Array.from({ length: 2 }, () => pick(rand() < 0.1 ? other : own, 1)[0]!);
  const answer = (own: readonly string[], other: readonly string[]): string => [...pick(NEUTRAL, 5), ...signal(own, other)].sort(() => rand() - 0.5).join(' ');
  return Array.from({ length: n }, (_, i) => ({ id: `p${seed}-${i}`, prompt: pick(NEUTRAL, 4).join(' '), chosen: answer(GOOD, BAD), rejected: answer(BAD, GOOD) }));
}

function writePairs(file: string, lines: readonly Pair[]): void {
  writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
}

/** Every text a server was asked to embed. */
function embedded(server: FakeServer): Set<string> {
  return new Set(server.requests.filter((r) => r.method === 'POST').flatMap((r) => ((r.body as { input?: unknown }).input as string[] | undefined) ?? []));
}

const textsOf = (lines: readonly Pair[]): string[] => lines.flatMap((p) => [embeddingText(p.prompt, p.chosen), embeddingText(p.prompt, p.rejected)]);

test('a head over embeddings trains federatedly on two workers\' own data, embedded through their own servers; held-out accuracy rises', async (t) => {
  t.timeout(300_000);
  const started = Date.now();
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const openai = await startInferenceServer({ api: 'openai', model: 'emb', embedDim: DIM });
  const ollama = await startInferenceServer({ api: 'ollama', model: 'emb', embedDim: DIM });
  t.teardown(() => Promise.all([openai.close(), ollama.close()]).then(() => undefined));

  const train = pairs(600, 1);
  const [mineA, mineB] = [train.slice(0, 300), train.slice(300)];
  writePairs(path.join(dir, 'a.jsonl'), mineA);
  writePairs(path.join(dir, 'b.jsonl'), mineB);
  const heldout = pairs(300, 2);
  writePairs(path.join(dir, 'heldout.jsonl'), heldout);
  await modelInit(dir, ['--input', `embedding:${DIM}`, '--embedding-model', 'emb', '--output', 'reward', '--hidden', '', '--seed', '3']);

  // The workers join only once the first scoring job waits for them (the pool's teardown stops them too).
  const pool = await startTrainingPool(t, dir, { workers: [] });
  const { coordinator } = pool;
  const scoreArgs = (model: string, out: string): string[] => ['score', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--model', model, '--input', path.join(dir, 'heldout.jsonl'), '--output', path.join(dir, out)];
  const first = startFedpool(t, scoreArgs(path.join(dir, 'model'), 'before.jsonl'));
  await first.line(/^fedpool score: job \S+ waits: no connected worker serves embeddings of emb$/m, { stream: 'stderr', what: 'the waiting line' });
  pool.workers.push(
    startWorker(coordinator.url, 'w-a', path.join(dir, 'cache-a'), ['--data', `pairs=${path.join(dir, 'a.jsonl')}`, '--scorer-url', openai.url, '--scorer-api', 'openai-embeddings']),
    startWorker(coordinator.url, 'w-b', path.join(dir, 'cache-b'), ['--data', `pairs=${path.join(dir, 'b.jsonl')}`, '--scorer-url', ollama.url, '--scorer-api', 'ollama-embed', '--scorer-model', 'emb']),
  );
  await Promise.all(pool.workers.map((w) => w.connected));
  t.is(await first.status, 0, first.stderr());
  t.is(first.stderr().match(/waits:/g)?.length, 1, 'said once');
  const before = summaryOf<{ accuracy: number }>(first.stdout()).accuracy;
  const score = async (model: string, out: string): Promise<number> => {
    const r = await fedpool(scoreArgs(model, out));
    t.is(r.status, 0, r.stderr);
    return summaryOf<{ accuracy: number }>(r.stdout).accuracy;
  };

  const rounds = 8;
  writeFileSync(path.join(dir, 'train.json'), JSON.stringify({
    model: 'model',
    task: 'reward-pairs',
    data: { source: 'worker', name: 'pairs' },
    mode: 'sync', rounds, clientsPerRound: 2, roundDeadlineMs: 60000,
    local: { steps: 10, batchSize: 32, lr: 1, momentum: 0.5 },
  }));
  const trainStarted = Date.now();
  const run = await fedpool(['train', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--config', path.join(dir, 'train.json'), '--out', path.join(dir, 'out')]);
  t.is(run.status, 0, run.stderr);
  const trainSeconds = (Date.now() - trainStarted) / 1000;
  const metrics = readMetrics(path.join(dir, 'out', 'metrics.jsonl'));
  t.is(metrics.length, rounds);
  t.true(metrics.every((m) => m.participants === 2), `participants ${metrics.map((m) => m.participants).join(' ')}`);
  t.true(metrics.at(-1)!.loss! < metrics[0]!.loss!, `loss ${metrics[0]!.loss} → ${metrics.at(-1)!.loss}`);

  const after = await score(path.join(dir, 'out', 'model'), 'after.jsonl');
  t.log(`held-out pairwise accuracy ${before} → ${after} after ${rounds} rounds (training ${trainSeconds.toFixed(1)} s, test ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  t.true(before <= 0.7, `initial accuracy ${before}`);
  t.true(after >= before + 0.2, `accuracy ${before} → ${after}`);
  t.true(after >= 0.85, `accuracy after training ${after}`);

  // Each worker trained, on its own rows, embedded by its own server: neither server saw the other worker's data, and
  // the coordinator got no text (the job names a worker dataset; its leases carry none).
  const done = Object.fromEntries(((await (await api(coordinator.url, '/api/workers')).json()) as Array<{ name: string; trainShardsDone: number }>).map((w) => [w.name, w.trainShardsDone]));
  t.deepEqual(done, { 'w-a': rounds, 'w-b': rounds });
  const held = new Set(textsOf(heldout));
  const [seenA, seenB] = [embedded(openai), embedded(ollama)];
  t.true(textsOf(mineA).every((x) => seenA.has(x)), 'worker a embedded its rows through its own server');
  t.true(textsOf(mineB).every((x) => seenB.has(x)), 'worker b embedded its rows through its own server');
  t.deepEqual(textsOf(mineB).filter((x) => seenA.has(x) && !held.has(x)), [], "b's rows never reached a's server");
  t.deepEqual(textsOf(mineA).filter((x) => seenB.has(x) && !held.has(x)), [], "a's rows never reached b's server");
});
