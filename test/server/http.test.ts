// The coordinator's HTTP API against a real `fedpool coordinator` process, with simulated workers.
import test from 'ava';
import { createHash } from 'node:crypto';
import { request } from 'node:http';
import { packedBundle } from '../helpers/bundles.js';
import {
  CLIENT_TOKEN,
  FakeWorker,
  WORKER_TOKEN,
  api,
  expectedScore,
  featureItems,
  results,
  startCoordinatorProcess,
  submitJob,
  until,
  uploadBlob,
  waitForJob,
  type CoordinatorProcess,
} from './helpers.js';

let c: CoordinatorProcess;
let model: string;
const workers: FakeWorker[] = [];

test.before(async () => {
  c = await startCoordinatorProcess(['--state', ':memory:', '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN]);
  model = await uploadBlob(c.url, new TextEncoder().encode('not really a model, just bytes'));
});

test.after.always(async () => {
  for (const w of workers) w.close();
  await c?.stop();
});

async function worker(name: string): Promise<FakeWorker> {
  const w = await FakeWorker.connect(c.url, { name });
  workers.push(w);
  return w;
}

async function errorOf(res: Response): Promise<string> {
  const body = (await res.json()) as { error?: unknown };
  return typeof body.error === 'string' ? body.error : `no error field: ${JSON.stringify(body)}`;
}

test('healthz needs no token; everything else needs a client token', async (t) => {
  const h = await api(c.url, '/healthz', { token: null });
  t.is(h.status, 200);
  t.deepEqual(await h.json(), { ok: true });

  const none = await api(c.url, '/api/jobs', { token: null });
  t.is(none.status, 401);
  t.is(none.headers.get('www-authenticate'), 'Bearer');
  t.regex(await errorOf(none), /^unauthorized: a client token is required/);
  const wrong = await api(c.url, '/api/workers', { token: 'guess' });
  t.is(wrong.status, 401);
  t.is(await errorOf(wrong), 'unauthorized: unknown client token');
  // A worker token is refused like any unknown token: the answer does not confirm it is a valid worker token.
  const workerToken = await api(c.url, '/api/jobs', { token: WORKER_TOKEN, method: 'POST', body: '{}' });
  t.is(workerToken.status, 401);
  t.is(await errorOf(workerToken), 'unauthorized: unknown client token');
  for (const path of ['/metrics', '/api/jobs/x', '/api/jobs/x/results']) {
    t.is((await api(c.url, path, { token: null })).status, 401, path);
  }
  t.is((await api(c.url, `/api/blobs/${model}`, { token: null, method: 'HEAD' })).status, 401);
  t.is((await api(c.url, '/api/jobs')).status, 200);
});

test('unknown paths are 404 and wrong methods 405, as JSON', async (t) => {
  const nf = await api(c.url, '/nope');
  t.is(nf.status, 404);
  t.is(await errorOf(nf), 'not found: GET /nope');
  const na = await api(c.url, '/api/jobs', { method: 'PATCH' });
  t.is(na.status, 405);
  t.is(na.headers.get('allow'), 'POST, GET');
  t.is((await api(c.url, '/api/jobs/nope')).status, 404);
  t.is((await api(c.url, '/api/jobs/nope/results')).status, 404);
  t.is((await api(c.url, '/api/jobs/nope', { method: 'DELETE' })).status, 404);
  // A malformed percent-encoding is the caller's error, after authentication, and never a stack trace.
  const pct = await api(c.url, '/api/jobs/%');
  t.is(pct.status, 400);
  t.is(await errorOf(pct), 'id: invalid percent-encoding in the path');
  t.is((await api(c.url, '/api/jobs/%', { token: null })).status, 401, 'checked after the token');
});

test('items the model cannot read are refused at submission, naming the mismatch', async (t) => {
  const features = await uploadBlob(c.url, await packedBundle({ kind: 'features', dim: 4 }));
  const text = await uploadBlob(c.url, await packedBundle({ kind: 'text', dim: 16 }));
  const post = async (body: unknown): Promise<[number, string]> => {
    const res = await api(c.url, '/api/jobs', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
    return [res.status, res.status === 201 ? '' : await errorOf(res)];
  };
  t.deepEqual(await post({ model: features, items: [{ id: 'x', features: [1, 2, 3] }] }), [400, 'items: features have 3 values, the model takes 4']);
  t.deepEqual(await post({ model: features, items: [{ id: 'x', prompt: 'p', response: 'r' }] }), [400, 'items: the model takes features:4; send features, not prompt and response']);
  t.deepEqual(await post({ model: text, items: [{ id: 'x', features: [1, 2, 3, 4] }] }), [400, 'items: the model reads text (text:16); send prompt and response, not features']);
  t.deepEqual(await post({ model: features, items: [{ id: 'x', features: [1, 2, 3, 4] }] }), [201, '']);
  t.deepEqual(await post({ model: text, items: [{ id: 'x', prompt: 'p', response: 'r' }] }), [201, '']);
});

test('a body nested deeper than 64 levels is a 400, not a stack overflow', async (t) => {
  const deep = 100_000;
  const body = `{"kind":"score","model":"${model}","items":[{"id":"x","features":[1]}],"meta":${'['.repeat(deep)}${']'.repeat(deep)}}`;
  const res = await api(c.url, '/api/jobs', { method: 'POST', body, headers: { 'content-type': 'application/json' } });
  t.is(res.status, 400);
  t.is(await errorOf(res), 'body: nested deeper than 64 levels');
  const ok = await api(c.url, '/api/jobs', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ kind: 'score', model, items: [{ id: 'x', features: [1] }], meta: { a: { b: { c: [[[1]]] } } } }),
  });
  t.is(ok.status, 201, 'ordinary nesting is fine');
});

test('blobs: PUT verifies the sha-256, HEAD reports presence', async (t) => {
  const bytes = new TextEncoder().encode('model bytes');
  const hash = createHash('sha256').update(bytes).digest('hex');
  t.is((await api(c.url, `/api/blobs/${hash}`, { method: 'HEAD' })).status, 404);
  const bad = await api(c.url, `/api/blobs/${'0'.repeat(64)}`, { method: 'PUT', body: bytes });
  t.is(bad.status, 400);
  t.regex(await errorOf(bad), /^blob hash mismatch: body hashes to [0-9a-f]{64}, not 0{64}$/);
  const badName = await api(c.url, '/api/blobs/xyz', { method: 'PUT', body: bytes });
  t.is(badName.status, 400);
  t.regex(await errorOf(badName), /64 lowercase hex/);
  const ok = await api(c.url, `/api/blobs/${hash}`, { method: 'PUT', body: bytes });
  t.is(ok.status, 201);
  t.deepEqual(await ok.json(), { hash, size: bytes.length });
  const head = await api(c.url, `/api/blobs/${hash}`, { method: 'HEAD' });
  t.is(head.status, 200);
  t.is(head.headers.get('content-length'), String(bytes.length));
  t.is((await api(c.url, `/api/blobs/${hash}`, { method: 'PUT', body: bytes })).status, 201, 'uploading again is fine');
});

test('an upload declared larger than the limit is refused with 413 before its body is read', async (t) => {
  const status = await new Promise<number>((resolve, reject) => {
    const req = request(`${c.url}/api/blobs/${'1'.repeat(64)}`, {
      method: 'PUT', headers: { authorization: `Bearer ${CLIENT_TOKEN}`, 'content-length': String(600 * 1024 * 1024) },
    }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.write('x'); // the rest never comes
  });
  t.is(status, 413);
});

test('job requests are validated: 400 with one line naming the field or item', async (t) => {
  const cases: [unknown, RegExp][] = [
    [{ model, items: [] }, /^items: /],
    [{ model: 'abc', items: featureItems(1) }, /^model: expected the sha-256/],
    [{ model: 'f'.repeat(64), items: featureItems(1) }, /^model: unknown blob f{64}; upload it first/],
    [{ model, items: [{ id: 'a', features: [1, 'x'] }] }, /^items\[0\]\.features\[1\]: expected number/],
    [{ model, items: [{ id: 'a', features: [1] }, { id: 'b' }] }, /^items\[1\]: needs "features", or "prompt" and "response"/],
    [{ model, items: [{ id: 'a', prompt: 'p' }] }, /^items\[0\]\.response: missing/],
    [{ model, items: [{ id: 'a', features: [1], prompt: 'p', response: 'r' }] }, /^items\[0\]: has both/],
    [{ model, items: [{ id: 'a', features: [1, 2] }, { id: 'b', features: [1] }] }, /^items\[1\]\.features: has 1 values, items\[0\] has 2$/],
    [{ model, items: [{ id: 'a', features: [1] }, { id: 'b', prompt: 'p', response: 'r' }] }, /^items\[1\]: is a text item/],
    [{ model, items: [{ id: 'a', features: [1e39] }] }, /^items\[0\]\.features\[0\]: is outside the float32 range/],
    [{ model, items: [{ id: '', features: [1] }] }, /^items\[0\]\.id: /],
    [{ model, items: featureItems(1), shardSize: 0 }, /^shardSize: /],
    [{ model, items: featureItems(1), redundancy: 1.5 }, /^redundancy: /],
    [{ model, items: featureItems(1), shardsize: 2 }, /^shardsize: unknown field$/],
    [{ kind: 'train', model, items: featureItems(1) }, /^config: /],
    [[1, 2], /expected object/],
    [{ model, items: featureItems(1), batchSize: -1 }, /^batchSize: /],
  ];
  for (const [body, pattern] of cases) {
    const res = await api(c.url, '/api/jobs', { method: 'POST', body: JSON.stringify(body) });
    t.is(res.status, 400, JSON.stringify(body).slice(0, 80));
    const error = await errorOf(res);
    t.regex(error, pattern);
    t.false(error.includes('\n'));
  }
  const notJson = await api(c.url, '/api/jobs', { method: 'POST', body: '{"model":' });
  t.is(notJson.status, 400);
  t.regex(await errorOf(notJson), /^body is not valid JSON: /);
});

test.serial('submit → workers lease and answer → results complete, in input order, exactly once', async (t) => {
  const items = featureItems(1000, 8);
  const id = await submitJob(c.url, { model, items, shardSize: 37 });
  const queued = await api(c.url, `/api/jobs/${id}`);
  t.like(await queued.json(), { id, kind: 'score', state: 'queued', progress: { done: 0, total: 1000 } });
  // A follower attached before any worker exists receives everything as it completes.
  const followed = results(c.url, id, true);
  const a = await worker('a');
  const b = await worker('b');
  a.pull(2);
  b.pull(3);
  const status = await waitForJob(c.url, id);
  t.like(status, { state: 'done', progress: { done: 1000, total: 1000 } });
  for (const r of [await results(c.url, id), await followed]) {
    t.is(r.length, items.length);
    t.deepEqual(r.map((x) => x.id), items.map((x) => x.id));
    t.true(r.every((x, i) => Math.abs(x.score - expectedScore(items[i] as { features: number[] })) <= 1e-6));
  }
  t.true(a.leases.length > 0 && b.leases.length > 0, 'both workers took part');
  t.true(a.maxHeld <= 2 && b.maxHeld <= 3, 'credit respected');
  const list = (await (await api(c.url, '/api/jobs')).json()) as { id: string }[];
  t.true(list.some((j) => j.id === id));
  const ws = (await (await api(c.url, '/api/workers')).json()) as { name: string; credit: number; backend: string; itemsPerSecond: number }[];
  t.like(ws.find((w) => w.name === 'a'), { credit: 2, backend: 'cpu' });
  const metrics = await (await api(c.url, '/metrics')).text();
  t.regex(metrics, /^fedpool_items_scored_total \d+/m);
  t.regex(metrics, /^fedpool_workers_connected [1-9]/m);
  t.regex(metrics, /^fedpool_job_duration_seconds_count\{state="done"\} [1-9]/m);
  t.regex(metrics, /^fedpool_process_cpu_seconds_total /m);
  a.close();
  b.close();
});

test.serial('text items, redundancy 2 and the partial prefix of a running job', async (t) => {
  const items = Array.from({ length: 50 }, (_, i) => ({ id: `t${i}`, prompt: 'p'.repeat(i), response: 'ré', group: 'g', answer: 'x' }));
  const id = await submitJob(c.url, { model, items, shardSize: 10, redundancy: 2 });
  const a = await worker('ra');
  a.auto = false;
  a.pull(5);
  await until(() => a.held.size === 5, 'a holds 5 leases');
  // Answer only shard 0 and 2: the completed prefix is shard 0 alone, and only after a second worker.
  const index = (shardId: string): string => shardId.split('/')[1] ?? '';
  for (const l of [...a.held.values()]) if (['0', '2'].includes(index(l.shardId))) a.answer(l);
  const b = await worker('rb');
  b.auto = false;
  b.pull(5);
  await until(() => b.held.size === 5, 'b holds 5 leases');
  for (const l of [...b.held.values()]) if (['0', '2'].includes(index(l.shardId))) b.answer(l);
  await until(async () => (await results(c.url, id)).length === 10, 'prefix of shard 0');
  const prefix = await results(c.url, id);
  t.deepEqual(prefix.map((r) => r.id), items.slice(0, 10).map((x) => x.id));
  t.deepEqual(prefix.map((r) => r.score), items.slice(0, 10).map((x) => x.prompt.length + 2));
  for (const w of [a, b]) for (const l of [...w.held.values()]) w.answer(l);
  const done = await waitForJob(c.url, id);
  t.like(done, { state: 'done', progress: { done: 50, total: 50 } });
  t.like(await (await api(c.url, `/api/jobs/${id}`)).json(), { redundancy: 2, disagreements: 0, shards: { done: 5, total: 5 } });
  t.is((await results(c.url, id)).length, 50);
  a.close();
  b.close();
});

test.serial('cancel: DELETE stops the job, workers holding its leases get job-control cancel, the stream ends', async (t) => {
  const id = await submitJob(c.url, { model, items: featureItems(40), shardSize: 10 });
  const w = await worker('cancel');
  w.auto = false;
  w.pull(2);
  await until(() => w.held.size === 2, 'two leases held');
  const stream = results(c.url, id, true);
  const res = await api(c.url, `/api/jobs/${id}`, { method: 'DELETE' });
  t.is(res.status, 200);
  t.like(await res.json(), { state: 'cancelled' });
  t.deepEqual(await stream, []);
  await until(() => w.controls.length > 0, 'job-control');
  t.deepEqual(w.controls[0], { type: 'job-control', jobId: id, action: 'cancel' });
  // `?only=cancel` (what `fedpool` sends to stop a job) never deletes; a plain DELETE of an ended job does (retention.test.ts).
  t.is((await api(c.url, `/api/jobs/${id}?only=cancel`, { method: 'DELETE' })).status, 200, 'cancelling twice is fine');
  w.auto = true;
  const doneId = await submitJob(c.url, { model, items: featureItems(3), shardSize: 10 });
  await waitForJob(c.url, doneId);
  const late = await api(c.url, `/api/jobs/${doneId}?only=cancel`, { method: 'DELETE' });
  t.is(late.status, 409);
  t.regex(await errorOf(late), /already done/);
  w.close();
});

test.serial('workers fetch a model blob once in 1 MiB chunks; an unknown hash is not-found', async (t) => {
  const big = new Uint8Array(2.5 * 1024 * 1024).map((_, i) => i % 256);
  const hash = await uploadBlob(c.url, big);
  const w = await worker('blob');
  const { sendMessage } = await import('../../shared/protocol/index.js');
  sendMessage(w.socket, { type: 'blob-request', hash });
  await until(() => w.blobs.some((b) => b.final), 'final chunk');
  t.deepEqual(w.blobs.map((b) => [b.offset, b.data.length, b.final]), [[0, 1048576, false], [1048576, 1048576, false], [2097152, 524288, true]]);
  const joined = Buffer.concat(w.blobs.map((b) => b.data));
  t.is(createHash('sha256').update(joined).digest('hex'), hash);
  sendMessage(w.socket, { type: 'blob-request', hash: 'e'.repeat(64) });
  await until(() => w.errors.length > 0, 'not-found');
  t.like(w.errors[0], { code: 'not-found', ref: 'e'.repeat(64) });
  w.close();
});

test.serial('a blob requested 300 times at once is sent once; more than 4 different blobs at once are refused as busy', async (t) => {
  const big = new Uint8Array(3 * 1024 * 1024).map((_, i) => (i * 13) % 256);
  const hash = await uploadBlob(c.url, big);
  const w = await worker('hoarder');
  const { sendMessage } = await import('../../shared/protocol/index.js');
  for (let i = 0; i < 300; i++) sendMessage(w.socket, { type: 'blob-request', hash });
  await until(() => w.blobs.some((b) => b.final), 'one whole transfer');
  await new Promise((r) => setTimeout(r, 200)); // anything still coming would be another transfer
  const finals = w.blobs.filter((b) => b.final).length;
  t.true(finals >= 1 && finals <= 5, `${finals} transfers for 300 requests of one blob (a repeat during a transfer is dropped)`);
  t.true(w.blobs.length <= 5 * 3, `${w.blobs.length} chunks, not 900`);
  w.blobs.length = 0;
  // 6 MiB each: a transfer waits for its connection to drain between chunks, so the first four are still under way
  // when the fifth request is read, however the requests are split across reads on a loaded machine.
  const others = await Promise.all([1, 2, 3, 4, 5].map((k) => uploadBlob(c.url, new Uint8Array(6 * 1024 * 1024).fill(k))));
  for (const h of others) sendMessage(w.socket, { type: 'blob-request', hash: h });
  await until(() => w.errors.some((e) => e.code === 'busy'), 'busy');
  t.is(w.errors.filter((e) => e.code === 'busy').length, 1, 'the fifth concurrent transfer is refused');
  await until(() => w.blobs.filter((b) => b.final).length === 4, 'the other four complete');
  w.close();
});

test('the dashboard is a self-contained page under a CSP nonce, fed by the dashboard socket with the client it serves itself', async (t) => {
  const res = await api(c.url, '/', { token: null });
  t.is(res.status, 200);
  t.regex(res.headers.get('content-type') ?? '', /text\/html/);
  const csp = res.headers.get('content-security-policy') ?? '';
  const nonce = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
  t.truthy(nonce);
  const html = await res.text();
  t.true(html.includes(`<script nonce="${nonce ?? ''}">`));
  t.true(html.includes(`<script nonce="${nonce ?? ''}" src="/dashboard/socket.io.min.js"></script>`));
  t.true(html.includes("path: '/dashboard.io'"), 'the live feed, not polling');
  t.false(html.includes('setInterval'), 'no polling');
  t.false(/src="http/.test(html), 'no external resources');
  t.true(html.includes('textContent'));
  const client = await api(c.url, '/dashboard/socket.io.min.js', { token: null });
  t.is(client.status, 200);
  t.regex(client.headers.get('content-type') ?? '', /text\/javascript/);
  t.regex(await client.text(), /Socket\.IO v4\./);
});
