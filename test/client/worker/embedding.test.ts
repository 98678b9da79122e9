// A worker fronting an embedding server runs bundles over embeddings (`input: {kind: "embedding", dim, model}`):
// score leases' text is embedded through the server (embeddingText(prompt, response)) and the head scores the rows;
// train leases on the worker's own data embed its texts the same way. Against the fake coordinator over real sockets,
// a real scorer talking to a test-owned OpenAI-compatible embeddings server, a fake thread pool (score = sum of the
// row) and a recording trainer.
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selectBackend } from '../../../client/backends.js';
import { BlobCache } from '../../../client/blob-cache.js';
import { createServerScorer, type ServerScorer } from '../../../client/scorers/index.js';
import { Datasets } from '../../../client/training/datasets.js';
import type { TrainShard } from '../../../client/training/pool.js';
import { Worker, type Trainer } from '../../../client/worker.js';
import { embeddingText } from '../../../shared/model/embedding-input.js';
import { unpackBundle } from '../../../shared/model/bundle.js';
import type { InputSpec } from '../../../shared/model/manifest.js';
import { WEIGHTS_FILE } from '../../../shared/model/tf-model.js';
import { packedBundle } from '../../helpers/bundles.js';
import { Tensor, type ScoreItem, type TrainTask } from '../../../shared/protocol/index.js';
import { embeddingOf, startInferenceServer, type FakeServer } from '../../helpers/inference-servers.js';
import { FakeCoordinator, FakeScorer, trainShard } from './fake-coordinator.js';

const DIM = 8;
const scratch = mkdtempSync(join(tmpdir(), 'fedpool-embedding-worker-'));
test.before(async () => {
  await selectBackend('cpu');
});
test.after.always(() => rmSync(scratch, { recursive: true, force: true }));

const bundle = (input: InputSpec, output: 'reward' | 'classes' = 'reward'): Promise<Uint8Array> => packedBundle(input, output, 2);

async function embeddingServer(t: ExecutionContext, model: string, embedDim = DIM): Promise<{ fake: FakeServer; scorer: ServerScorer }> {
  const fake = await startInferenceServer({ api: 'openai', model, embedDim });
  t.teardown(() => fake.close());
  const scorer = createServerScorer({ url: fake.url, api: 'openai-embeddings' });
  await scorer.check();
  t.teardown(() => scorer.close());
  return { fake, scorer };
}

/** Texts the fake server was asked to embed (check()'s "Hello" left out). */
function embedded(fake: FakeServer): string[] {
  return fake.requests.filter((r) => r.method === 'POST' && r.path === '/v1/embeddings').flatMap((r) => (r.body as { input: string[] }).input).filter((x) => x !== 'Hello');
}

/** A trainer that records each shard and answers with a zero update of the head's size (dim + 1 for a linear reward head). */
class RecordingTrainer implements Trainer {
  readonly shards: TrainShard[] = [];
  async train(shard: TrainShard) {
    this.shards.push(shard);
    return { update: new Float32Array(DIM + 1), samples: 1, loss: 0.5 };
  }
}

async function start(t: ExecutionContext, coord: FakeCoordinator, server: ServerScorer | undefined, extra: { trainer?: Trainer; datasets?: Datasets } = {}): Promise<FakeScorer> {
  const scorer = new FakeScorer();
  const worker = new Worker({ url: coord.url, name: 'emb-w', threads: 1, backend: 'cpu', scorer, ...(server === undefined ? {} : { server }), blobs: new BlobCache(), ...extra });
  void worker.start().catch(() => {});
  t.teardown(() => worker.close());
  return scorer;
}

const textItems = (tag: string, n: number): ScoreItem[] =>
  Array.from({ length: n }, (_, i) => ({ id: `${tag}${i}`, prompt: i === 0 ? '' : `question ${i}`, response: `a clear answer number ${i}` }));

test('a score lease of a bundle over embeddings: the text is embedded through the server, the head scores the rows; embeddings are cached', async (t) => {
  const coord = await new FakeCoordinator().listen();
  t.teardown(() => coord.close());
  const { fake, scorer: server } = await embeddingServer(t, 'emb');
  const hash = coord.addBlob(await bundle({ kind: 'embedding', dim: DIM, model: 'emb' }));
  const fakePool = await start(t, coord, server);
  const items = textItems('a', 5);
  coord.enqueue({ jobId: 'J', modelHash: hash, items });
  await coord.until(() => coord.results.length + coord.failures.length === 1, 'an answer');
  t.deepEqual(coord.failures, []);
  const texts = items.map((i) => embeddingText(i.prompt ?? '', i.response ?? ''));
  t.is(texts[0], 'a clear answer number 0', 'an empty prompt embeds the response alone');
  t.is(texts[1], 'question 1\na clear answer number 1');
  t.deepEqual(embedded(fake), texts, 'each text sent once, as embeddingText');
  const payload = coord.results[0]!.message.payload;
  if (payload.kind !== 'scores') return t.fail('expected scores');
  // The fake pool's score is the sum of the row it got: the server's embedding, as float32.
  const expected = texts.map((text) => Math.fround(embeddingOf('emb', text, DIM).reduce((s, x) => s + Math.fround(x), 0)));
  [...payload.scores.data].forEach((s, i) => t.true(Math.abs(s - expected[i]!) < 1e-6, `item ${i}: ${s} vs ${expected[i]}`));
  t.is(fakePool.calls, 1);

  // The same texts again: answered from the scorer's cache, no request.
  const requests = fake.requests.length;
  coord.enqueue({ jobId: 'J', modelHash: hash, items: textItems('b', 5) });
  await coord.until(() => coord.results.length === 2, 'the second answer');
  t.is(fake.requests.length, requests);
  t.deepEqual([...(coord.results[1]!.message.payload as { scores: Tensor }).scores.data], [...payload.scores.data]);

  // An ordinary bundle on the same worker is not embedded.
  const plain = coord.addBlob(await bundle({ kind: 'text', dim: DIM }));
  coord.enqueue({ jobId: 'K', modelHash: plain, items: textItems('c', 2) });
  await coord.until(() => coord.results.length === 3, 'the plain answer');
  t.is(fake.requests.length, requests);
});

test('what a worker cannot embed for the model: features items, another embedding model, another width (for good); no embedding server (retryable)', async (t) => {
  const coord = await new FakeCoordinator().listen();
  t.teardown(() => coord.close());
  const other = await embeddingServer(t, 'emb-2');
  const narrow = await embeddingServer(t, 'emb', DIM - 2);
  const hash = coord.addBlob(await bundle({ kind: 'embedding', dim: DIM, model: 'emb' }));
  const reasons = async (server: ServerScorer | undefined, items: ScoreItem[]) => {
    const c = await new FakeCoordinator().listen();
    t.teardown(() => c.close());
    c.addBlob(coord.blobs.get(hash)!, hash);
    await start(t, c, server);
    c.enqueue({ jobId: 'J', modelHash: hash, items });
    await c.until(() => c.failures.length + c.results.length === 1, 'an answer');
    t.is(c.results.length, 0);
    return c.failures[0]!.message;
  };
  const features = [{ id: 'f', features: Tensor.float32(new Float32Array(DIM)) }];
  t.like(await reasons(narrow.scorer, features), { retryable: false, reason: 'item 0: this model reads embeddings of emb, computed here from prompt and response; the item has features' });
  t.like(await reasons(other.scorer, textItems('x', 2)), { retryable: false, reason: "this worker's openai-embeddings server serves embeddings of emb-2; the model reads embeddings of emb" });
  t.like(await reasons(narrow.scorer, textItems('x', 2)), { retryable: false, reason: `this worker's openai-embeddings server answers embeddings of emb with ${DIM - 2} dimensions; the model reads embedding:${DIM}` });
  t.like(await reasons(undefined, textItems('x', 2)), { retryable: true, reason: 'this worker has no inference server; the model reads embeddings of emb' });
});

test('training on the worker\'s own data: pairs and labelled rows are embedded through the server, the head trains on the rows', async (t) => {
  const coord = await new FakeCoordinator().listen();
  t.teardown(() => coord.close());
  const { fake, scorer: server } = await embeddingServer(t, 'emb');
  const pairs = [
    { prompt: 'q1', chosen: 'clear and correct', rejected: 'vague guess' },
    { prompt: '', chosen: 'precise', rejected: 'rude' },
  ];
  const rows = [{ text: 'kind words', label: 1 }, { prompt: 'q', response: 'lazy answer', label: 0 }];
  writeFileSync(join(scratch, 'pairs.jsonl'), pairs.map((p) => JSON.stringify(p)).join('\n'));
  writeFileSync(join(scratch, 'rows.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n'));
  writeFileSync(join(scratch, 'features.jsonl'), JSON.stringify({ features: Array.from({ length: DIM }, () => 0), label: 0 }));
  const datasets = new Datasets(new Map([['pairs', join(scratch, 'pairs.jsonl')], ['rows', join(scratch, 'rows.jsonl')], ['features', join(scratch, 'features.jsonl')]]));
  const trainer = new RecordingTrainer();
  await start(t, coord, server, { trainer, datasets });
  const rewardBundle = await bundle({ kind: 'embedding', dim: DIM, model: 'emb' });
  const classifierBundle = await bundle({ kind: 'embedding', dim: DIM, model: 'emb' }, 'classes');
  const reward = coord.addBlob(rewardBundle);
  const classifier = coord.addBlob(classifierBundle);
  // Version 0's weights are the bundle's own (a coordinator sends them before the lease).
  const weightsOf = (b: Uint8Array): Float32Array => new Float32Array(unpackBundle(b).files.get(WEIGHTS_FILE)!.slice().buffer);
  const task = (modelHash: string, name: string): TrainTask => ({
    kind: 'train', modelHash, modelVersion: 0, client: 0, local: { steps: 1, batchSize: 2, lr: 0.1, momentum: 0 }, data: { source: 'worker', name },
  });
  coord.enqueue(
    trainShard('J', task(reward, 'pairs'), weightsOf(rewardBundle)),
    trainShard('K', task(classifier, 'rows'), weightsOf(classifierBundle)),
    trainShard('L', task(classifier, 'features'), weightsOf(classifierBundle)),
  );
  await coord.until(() => coord.results.length + coord.failures.length === 3, 'three answers');

  const row = (text: string) => embeddingOf('emb', text, DIM).map((x) => Math.fround(x));
  const [pairShard, rowShard] = trainer.shards;
  if (pairShard?.data.kind !== 'pairs' || rowShard?.data.kind !== 'classify') return t.fail('expected a pairs shard and a classify shard');
  t.deepEqual([...pairShard.data.chosen], [...row('q1\nclear and correct'), ...row('precise')]);
  t.deepEqual([...pairShard.data.rejected], [...row('q1\nvague guess'), ...row('rude')]);
  t.deepEqual([...rowShard.data.x], [...row('kind words'), ...row('q\nlazy answer')]);
  t.deepEqual([...rowShard.data.labels], [1, 0]);
  t.deepEqual(embedded(fake).sort(), ['q1\nclear and correct', 'precise', 'q1\nvague guess', 'rude', 'kind words', 'q\nlazy answer'].sort(), 'each text embedded once, nothing else');
  t.is(coord.updates.length, 2);
  t.like(coord.failures[0]?.message, { retryable: false, reason: 'dataset features holds features; this model reads embeddings of emb, which the worker computes from text' });
});
