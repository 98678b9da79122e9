// Bundles over embeddings (`input: {kind: "embedding", dim, model}`) on the coordinator: the routing key read from the
// uploaded bundle's manifest at submit, score jobs that go only to workers whose inference server serves that
// embedding model (and wait, saying why, while none is connected), a restart that keeps the key, and training jobs
// that lease only to workers fronting that embedding server and refuse central data. In-process coordinator, fake
// workers (score leases answered with fakeScore, bench/bench-worker.ts) and an in-process Pool with a recording sink.
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { startCoordinator } from '../../server/coordinator.js';
import { jobKey, workerOffers } from '../../server/score-jobs.js';
import { initBackend } from '../../server/training/tf-eval.js';
import { TrainSubmitError } from '../../server/training/training-service.js';
import { inProcessCoordinator } from '../helpers/in-process-coordinator.js';
import { parseTrainConfig } from '../../shared/config/train.js';
import type { InputSpec } from '../../shared/model/manifest.js';
import { packedBundle } from '../helpers/bundles.js';
import type { Capabilities } from '../../shared/protocol/index.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, api, results, uploadBlob, waitForJob } from './helpers.js';

const quiet = pino({ level: 'silent' });
const DIM = 8;

// The coordinator's training jobs pick the process's TF.js backend once (wasm, else cpu): pick it before any test
// builds a model, so no backend switch lands in the middle of another test's model building.
test.before(async () => {
  await initBackend();
});

const bundle = (input: InputSpec, output: 'reward' | 'classes' = 'reward'): Promise<Uint8Array> => packedBundle(input, output, 1);

const embeddingBundle = () => bundle({ kind: 'embedding', dim: DIM, model: 'emb' });
const textItems = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `t${i}`, prompt: `q${i}`, response: 'r'.repeat(i + 1) }));

async function post(url: string, body: unknown): Promise<{ status: number; body: { id?: string; error?: string } }> {
  const res = await api(url, '/api/jobs', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: res.status, body: (await res.json()) as { id?: string; error?: string } };
}

async function status(url: string, id: string): Promise<Record<string, unknown>> {
  return (await (await api(url, `/api/jobs/${id}`)).json()) as Record<string, unknown>;
}

test('routing keys: a job over embeddings needs embedding:MODEL, which an embedding worker of that model offers', (t) => {
  t.is(jobKey({ embedding: 'emb' }), 'embedding:emb');
  t.is(jobKey({}), '');
  t.is(jobKey({ scorer: { model: 'emb', output: 'reward' } }), 'reward:emb');
  const caps = (scorer?: Capabilities['scorer']): Capabilities => ({ backend: 'cpu', threads: 1, tasks: ['score'], ...(scorer === undefined ? {} : { scorer }) });
  t.deepEqual(workerOffers(caps({ api: 'openai-embeddings', model: 'emb' })), ['', 'embedding:emb']);
  t.deepEqual(workerOffers(caps({ api: 'ollama-embed', model: 'emb' })), ['', 'embedding:emb']);
  t.deepEqual(workerOffers(caps({ api: 'tei', model: 'emb' })), ['', 'reward:emb']);
  t.deepEqual(workerOffers(caps()), ['']);
  t.deepEqual(workerOffers({ backend: 'cpu', threads: 1, tasks: ['score', 'train'] }), ['', 'train'], 'training shards on central data need a worker that trains');
  t.deepEqual(workerOffers({ backend: 'cpu', threads: 1, tasks: ['train'] }), ['train']);
});

test('a job over embeddings waits for, then goes only to, workers whose server serves that embedding model', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  t.teardown(() => c.close());
  // Workers that must get nothing: no server; another embedding model; a reward server of the same name.
  const others = await Promise.all([
    FakeWorker.connect(c.url, { name: 'plain' }),
    FakeWorker.connect(c.url, { name: 'other-emb', scorer: { api: 'openai-embeddings', model: 'emb-2' } }),
    FakeWorker.connect(c.url, { name: 'reward', scorer: { api: 'tei', model: 'emb' } }),
  ]);
  t.teardown(() => others.forEach((w) => w.close()));
  for (const w of others) w.pull(4);
  const model = await uploadBlob(c.url, await embeddingBundle());

  const features = await post(c.url, { model, items: [{ id: 'a', features: Array.from({ length: DIM }, () => 0) }] });
  t.deepEqual(features, { status: 400, body: { error: 'items: this model reads embeddings of emb, which its workers compute from text: send prompt and response, not features' } });

  const submitted = await post(c.url, { model, items: textItems(9), shardSize: 3 });
  t.is(submitted.status, 201);
  const id = submitted.body.id ?? '';
  t.like(await status(c.url, id), { state: 'queued', model, embedding: 'emb', waiting: 'no connected worker serves embeddings of emb' });

  const serving = await FakeWorker.connect(c.url, { name: 'serving', scorer: { api: 'ollama-embed', model: 'emb' } });
  t.teardown(() => serving.close());
  serving.pull(2);
  t.like(await waitForJob(c.url, id), { state: 'done' });
  t.false('waiting' in (await status(c.url, id)));
  t.is(serving.leases.length, 3);
  t.deepEqual(others.map((w) => w.leases.length), [0, 0, 0], 'no lease reached a worker without embeddings of emb');
  // The lease is a bundle lease with text items: the worker embeds them.
  t.like(serving.leases[0]?.task, { kind: 'score', modelHash: model });
  t.deepEqual((await results(c.url, id)).map((r) => r.score), textItems(9).map((i) => i.prompt.length + i.response.length));

  // An ordinary bundle still goes to any worker (no key), and never says it waits.
  const plainModel = await uploadBlob(c.url, await bundle({ kind: 'text', dim: DIM }));
  const plain = (await post(c.url, { model: plainModel, items: textItems(2) })).body.id ?? '';
  t.like(await waitForJob(c.url, plain), { state: 'done' });
  t.false('embedding' in (await status(c.url, plain)));
});

test('a restarted coordinator keeps a queued job over embeddings, and its routing key', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fedpool-embedding-jobs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const state = path.join(dir, 'state.db');
  const first = await startCoordinator({ port: 0, state, logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  const model = await uploadBlob(first.url, await embeddingBundle());
  const id = (await post(first.url, { model, items: textItems(3) })).body.id ?? '';
  await first.close();
  const second = await startCoordinator({ port: 0, state, logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  t.teardown(() => second.close());
  t.like(await status(second.url, id), { state: 'queued', embedding: 'emb', waiting: 'no connected worker serves embeddings of emb' });
  const plain = await FakeWorker.connect(second.url, { name: 'plain' });
  const w = await FakeWorker.connect(second.url, { name: 'serving', scorer: { api: 'openai-embeddings', model: 'emb' } });
  t.teardown(() => [plain, w].forEach((x) => x.close()));
  plain.pull(2);
  w.pull(1);
  t.like(await waitForJob(second.url, id), { state: 'done' });
  t.is(plain.leases.length, 0);
});

/** A Pool in process whose sink records which worker got each train lease and answers it at once. */
async function trainingSetup(t: ExecutionContext, workers: Array<{ name: string; capabilities: Partial<Capabilities> }>) {
  const { jobs, leasedTo } = inProcessCoordinator(workers);
  t.teardown(() => jobs.close());
  return { service: jobs.training, blobs: jobs.blobs, leasedTo };
}

const pairsConfig = (data: Record<string, unknown>, extra: Record<string, unknown> = {}) => parseTrainConfig({
  model: 'model', task: 'reward-pairs', data, mode: 'sync', rounds: 3, clientsPerRound: 4, roundDeadlineMs: 30_000,
  local: { steps: 1, batchSize: 8, lr: 0.1 }, ...extra,
}, '/', (_base, p) => p);

test('training a head over embeddings: only workers holding the dataset and fronting that embedding server are clients', async (t) => {
  const { service, blobs, leasedTo } = await trainingSetup(t, [
    { name: 'emb-a', capabilities: { datasets: ['d'], scorer: { api: 'openai-embeddings', model: 'emb' } } },
    { name: 'emb-b', capabilities: { datasets: ['d'], scorer: { api: 'ollama-embed', model: 'emb' } } },
    { name: 'no-data', capabilities: { scorer: { api: 'openai-embeddings', model: 'emb' } } },
    { name: 'other-model', capabilities: { datasets: ['d'], scorer: { api: 'openai-embeddings', model: 'emb-2' } } },
    { name: 'reward-server', capabilities: { datasets: ['d'], scorer: { api: 'tei', model: 'emb' } } },
    { name: 'no-server', capabilities: { datasets: ['d'] } },
  ]);
  const model = blobs.put(await embeddingBundle());
  const { id } = service.submit({ model, config: pairsConfig({ source: 'worker', name: 'd' }) });
  while (service.status(id)?.state !== 'done') await Promise.race([service.waitForChange(id), new Promise((r) => setTimeout(r, 50))]);
  t.is(service.status(id)?.clients, 2);
  t.deepEqual([...new Set(leasedTo)].sort(), ['emb-a', 'emb-b']);
  t.is(leasedTo.length, 6, 'two clients, three rounds');
});

test('a head over embeddings refuses central training and eval data at submit: only workers can embed', async (t) => {
  const { service, blobs } = await trainingSetup(t, []);
  const model = blobs.put(await embeddingBundle());
  const pairs = { kind: 'pairs' as const, dim: DIM, n: 4, chosen: new Float32Array(4 * DIM), rejected: new Float32Array(4 * DIM) };
  const central = pairsConfig({ source: 'central', path: 'train.jsonl', partition: { clients: 4, kind: 'iid', seed: 1 } });
  t.throws(() => service.submit({ model, config: central, data: pairs }), {
    instanceOf: TrainSubmitError,
    message: "data: this model reads embeddings of emb, which only workers compute: train it on workers' own data (data.source 'worker')",
  });
  const withEval = pairsConfig({ source: 'worker', name: 'd' }, { eval: { path: 'val.jsonl', every: 1 } });
  t.throws(() => service.submit({ model, config: withEval, eval: pairs }), {
    instanceOf: TrainSubmitError,
    message: 'eval: this model reads embeddings of emb, which only workers compute: central eval data cannot be embedded',
  });
  t.is(service.list().length, 0);
});
