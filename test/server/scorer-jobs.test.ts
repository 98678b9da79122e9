// Jobs that name a scorer instead of a bundle, on an in-process coordinator with fake workers: validation at
// submit, matching a job to the workers whose inference server serves its model, the waiting hint, log-prob results,
// and a restart that keeps the job's scorer.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { startCoordinator } from '../../server/coordinator.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, api, results, until, uploadBlob, waitForJob } from './helpers.js';

const quiet = pino({ level: 'silent' });

const textItems = (n: number, prefix = 't') => Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, prompt: `q${i % 3}`, response: 'r'.repeat(i + 1) }));

async function post(url: string, body: unknown): Promise<{ status: number; body: { id?: string; error?: string } }> {
  const res = await api(url, '/api/jobs', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: res.status, body: (await res.json()) as { id?: string; error?: string } };
}

async function status(url: string, id: string): Promise<Record<string, unknown>> {
  return (await (await api(url, `/api/jobs/${id}`)).json()) as Record<string, unknown>;
}

test('submit: exactly one of model and scorer; scorer jobs take text only', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  t.teardown(() => c.close());
  const model = await uploadBlob(c.url, Uint8Array.of(1, 2));
  const both = await post(c.url, { model, scorer: { model: 'm' }, items: textItems(2) });
  t.deepEqual(both, { status: 400, body: { error: 'model: send exactly one of "model" (a bundle) and "scorer"' } });
  const neither = await post(c.url, { items: textItems(2) });
  t.deepEqual(neither, { status: 400, body: { error: 'model: send exactly one of "model" (a bundle) and "scorer"' } });
  const features = await post(c.url, { scorer: { model: 'm' }, items: [{ id: 'a', features: [1, 2] }] });
  t.deepEqual(features, { status: 400, body: { error: 'scorer: scorer jobs take text items (prompt and response), not features' } });
  const badOutput = await post(c.url, { scorer: { model: 'm', output: 'embedding' }, items: textItems(1) });
  t.is(badOutput.status, 400);
  t.regex(badOutput.body.error ?? '', /^scorer\.output: /);
});

test('a scorer job waits for, then goes only to, workers serving its model; the hint says why it waits', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  t.teardown(() => c.close());
  const plain = await FakeWorker.connect(c.url, { name: 'plain' });
  const other = await FakeWorker.connect(c.url, { name: 'other', scorer: { api: 'tei', model: 'rm-b' } });
  t.teardown(() => [plain, other].forEach((w) => w.close()));
  plain.pull(4);
  other.pull(4);
  const submitted = await post(c.url, { scorer: { model: 'rm-a' }, items: textItems(12), shardSize: 3 });
  t.is(submitted.status, 201);
  const id = submitted.body.id ?? '';
  t.like(await status(c.url, id), { state: 'queued', scorer: { model: 'rm-a', output: 'reward' }, waiting: 'no connected worker serves scorer rm-a' });
  t.false('model' in (await status(c.url, id)));

  const serving = await FakeWorker.connect(c.url, { name: 'serving', scorer: { api: 'vllm-classify', model: 'rm-a' } });
  t.teardown(() => serving.close());
  serving.pull(2);
  t.like(await waitForJob(c.url, id), { state: 'done' });
  t.false('waiting' in (await status(c.url, id)));
  t.is(serving.leases.length, 4);
  t.deepEqual([plain.leases.length, other.leases.length], [0, 0], 'no lease reached a worker without that model');
  const lease = serving.leases[0];
  t.like(lease?.task, { kind: 'score', scorer: { model: 'rm-a', output: 'reward' } });
  t.false(lease !== undefined && 'modelHash' in lease.task);
  t.deepEqual((await results(c.url, id)).map((r) => r.score), textItems(12).map((i) => i.prompt.length + i.response.length));

  // The worker list shows what each worker fronts.
  const workers = (await (await api(c.url, '/api/workers')).json()) as { name: string; scorer: unknown }[];
  t.deepEqual(Object.fromEntries(workers.map((w) => [w.name, w.scorer])), { plain: null, other: { api: 'tei', model: 'rm-b' }, serving: { api: 'vllm-classify', model: 'rm-a' } });
});

test('log-prob jobs go to log-prob workers only and stream three values per item; a reward result is refused', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  t.teardown(() => c.close());
  // Same model name, different APIs: a reward server is not a log-prob server.
  const reward = await FakeWorker.connect(c.url, { name: 'reward', scorer: { api: 'vllm-classify', model: 'g' } });
  const lm = await FakeWorker.connect(c.url, { name: 'lm', scorer: { api: 'openai-logprobs', model: 'g' }, auto: false });
  t.teardown(() => [reward, lm].forEach((w) => w.close()));
  reward.pull(4);
  lm.pull(4);
  const id = (await post(c.url, { scorer: { model: 'g', output: 'logprobs' }, items: textItems(4), shardSize: 2 })).body.id ?? '';
  await until(() => lm.leases.length === 2, 'two leases on the log-prob worker');
  t.is(reward.leases.length, 0);
  const [first, second] = lm.leases;
  if (first === undefined || second === undefined) return t.fail('no leases');
  lm.answer(first, new Float32Array(2)); // one value per item: the shard goes back
  await until(() => lm.leases.length === 3, 'the shard leased again');
  for (const l of lm.leases.slice(1)) lm.answer(l);
  t.like(await waitForJob(c.url, id), { state: 'done' });
  const res = await api(c.url, `/api/jobs/${id}/results`);
  const lines = (await res.text()).trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
  t.deepEqual(lines, textItems(4).map((i) => {
    const s = i.prompt.length + i.response.length;
    return { id: i.id, score: s, logprob_mean: s, perplexity: 2 * s, self_certainty: -s };
  }));
});

test('a restarted coordinator keeps a queued scorer job, and its scorer', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fedpool-scorer-jobs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const state = path.join(dir, 'state.db');
  const first = await startCoordinator({ port: 0, state, logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  const id = (await post(first.url, { scorer: { model: 'rm-z', output: 'logprobs' }, items: textItems(3) })).body.id ?? '';
  await first.close();
  const second = await startCoordinator({ port: 0, state, logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  t.teardown(() => second.close());
  t.like(await status(second.url, id), { state: 'queued', scorer: { model: 'rm-z', output: 'logprobs' }, waiting: 'no connected worker serves log-probs of rm-z' });
  const w = await FakeWorker.connect(second.url, { scorer: { api: 'openai-logprobs', model: 'rm-z' } });
  t.teardown(() => w.close());
  w.pull(1);
  const end = await waitForJob(second.url, id);
  t.like(end, { state: 'done' }, JSON.stringify(end));
});
