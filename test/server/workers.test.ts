// Workers against a real coordinator process: auth in the handshake, hostile frames, disconnects,
// lease expiry, late results, credit and draining. Each test runs its own coordinator.
import test from 'ava';
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { io } from 'socket.io-client';
import { PROTOCOL_VERSION, Tensor, decodeMessage, encodeMessage, onMessage, sendMessage } from '../../shared/protocol/index.js';
import {
  CLIENT_TOKEN,
  FakeWorker,
  WORKER_TOKEN,
  api,
  checkResults,
  featureItems,
  sleep,
  startCoordinatorProcess,
  submitJob,
  until,
  uploadBlob,
  waitForJob,
  type CoordinatorProcess,
} from './helpers.js';
import { runFedpool } from '../helpers/processes.js';
import { within } from '../helpers/within.js';

/**
 * Lease time for the tests where a lease must expire or a silent worker must be dropped. Only the deliberately silent
 * side may run out of it; the rest has a loaded machine's margin: heartbeats come every third of it (a worker is
 * dropped only after a whole lease without a frame) and the leases that must not expire are answered on arrival.
 */
const SHORT_LEASE_MS = '4000';

/** A generous limit for waits on the coordinator process, which shares a loaded machine. */
const PATIENCE_MS = 30_000;

type ClientSocket = ReturnType<typeof io>;

/** Resolves once the socket connects; rejects with the server's reason (or socket.io's own connect timeout). */
function connected(socket: ClientSocket): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', (e) => reject(e));
  });
}

async function coordinator(t: { teardown: (fn: () => unknown) => void }, ...extra: string[]): Promise<{ c: CoordinatorProcess; model: string }> {
  const c = await startCoordinatorProcess(['--state', ':memory:', '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN, ...extra]);
  t.teardown(() => c.stop());
  const model = await uploadBlob(c.url, Uint8Array.of(1, 2, 3));
  return { c, model };
}

async function worker(t: { teardown: (fn: () => unknown) => void }, url: string, options: Parameters<typeof FakeWorker.connect>[1] = {}): Promise<FakeWorker> {
  const w = await FakeWorker.connect(url, options);
  t.teardown(() => w.close());
  return w;
}

/** A metric's value from /metrics (labels as written, e.g. `{reason="expired"}`). */
async function metric(url: string, name: string): Promise<number> {
  const text = await (await api(url, '/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

/**
 * A connection attempt with `token` in the upgrade's Authorization header: it must be refused before the websocket
 * exists (a bare 400, which socket.io reports as a transport error); the reason is GET /api/worker-auth's answer.
 */
async function refusal(url: string, token: unknown): Promise<string> {
  const headers: Record<string, string> = typeof token === 'string' ? { authorization: `Bearer ${token}` } : {};
  const socket = io(url, { auth: { token }, extraHeaders: headers, transports: ['websocket'], reconnection: false, forceNew: true });
  try {
    const error = await new Promise<Error>((resolve, reject) => {
      socket.once('connect', () => reject(new Error('connected')));
      socket.once('connect_error', (e) => resolve(e));
    });
    if (Reflect.get(error, 'type') !== 'TransportError') throw new Error(`refused after the upgrade: ${error.message}`);
  } finally {
    socket.close();
  }
  const res = await fetch(`${url}/api/worker-auth`, { headers });
  const body = (await res.json()) as { error?: string };
  return `${res.status} ${body.error ?? ''}`;
}


test('wrong, missing and client tokens are refused in the handshake with a reason; a running job is unaffected', async (t) => {
  const { c, model } = await coordinator(t);
  const items = featureItems(200);
  const id = await submitJob(c.url, { model, items, shardSize: 10 });
  const good = await worker(t, c.url, { delayMs: 5 });
  good.pull(2);
  t.is(await refusal(c.url, 'guess'), '401 unauthorized: unknown worker token');
  t.is(await refusal(c.url, CLIENT_TOKEN), '401 unauthorized: unknown worker token', 'a client token is not confirmed as one');
  t.is(await refusal(c.url, undefined), '401 unauthorized: this coordinator needs a worker token');
  t.is(await refusal(c.url, 42), '401 unauthorized: this coordinator needs a worker token');
  t.is((await fetch(`${c.url}/api/worker-auth`, { headers: { authorization: `Bearer ${WORKER_TOKEN}` } })).status, 200);
  await waitForJob(c.url, id);
  await checkResults(t, c.url, id, items);
  t.false(good.disconnected);
});

/** A raw websocket upgrade to socket.io's endpoint: the HTTP status it gets (101 when the websocket opens). */
function upgradeStatus(url: string, token: string | undefined): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/socket.io/?EIO=4&transport=websocket`, {
      headers: {
        connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64'),
        ...(token === undefined ? {} : { authorization: `Bearer ${token}` }),
      },
    });
    req.once('upgrade', (res, socket) => {
      socket.destroy();
      resolve(res.statusCode ?? 0);
    });
    req.once('response', (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.once('error', reject);
    req.end();
  });
}

test('the worker token is checked in the websocket upgrade: without a valid one no websocket exists to send a frame on', async (t) => {
  const { c } = await coordinator(t);
  t.is(await upgradeStatus(c.url, undefined), 400);
  t.is(await upgradeStatus(c.url, 'guess'), 400);
  t.is(await upgradeStatus(c.url, CLIENT_TOKEN), 400);
  t.is(await upgradeStatus(c.url, WORKER_TOKEN), 101);
  t.true((await metric(c.url, 'fedpool_protocol_errors_total{code="unauthorized"}')) >= 3);
});

test('fedpool worker with a refused token exits 1 with the coordinator\'s reason, without retrying', async (t) => {
  const { c } = await coordinator(t);
  const r = await runFedpool(['worker', '--url', c.url, '--token', 'nope', '--backend', 'cpu', '--threads', '1'], { ms: 120_000 });
  t.is(r.status, 1);
  t.is(r.stderr, 'fedpool worker: coordinator refused the token: unauthorized: unknown worker token\n');
});

test('a protocol version mismatch is answered with unsupported-version and a disconnect', async (t) => {
  const { c } = await coordinator(t);
  const socket = io(c.url, { auth: { token: WORKER_TOKEN }, extraHeaders: { authorization: `Bearer ${WORKER_TOKEN}` }, transports: ['websocket'], reconnection: false, forceNew: true });
  t.teardown(() => socket.close());
  await connected(socket);
  const gone = new Promise<void>((resolve) => socket.once('disconnect', () => resolve()));
  const reply: unknown = await socket.timeout(PATIENCE_MS).emitWithAck('hello', encodeMessage({ type: 'hello', protocolVersion: PROTOCOL_VERSION + 1, name: 'future', capabilities: { backend: 'cpu', threads: 1, tasks: ['score'] } }));
  t.like(decodeMessage(reply), { type: 'error', code: 'unsupported-version' });
  await within(gone, PATIENCE_MS, 'the disconnect after unsupported-version');
  t.pass();
});

test('malformed frames are answered with errors, > 10 disconnects the sender, and a running job is unaffected', async (t) => {
  const { c, model } = await coordinator(t);
  const items = featureItems(300);
  const id = await submitJob(c.url, { model, items, shardSize: 10 });
  const good = await worker(t, c.url, { name: 'good', delayMs: 5 });
  good.pull(2);

  // Before hello: a valid frame is refused as not registered.
  const stranger = io(c.url, { auth: { token: WORKER_TOKEN }, extraHeaders: { authorization: `Bearer ${WORKER_TOKEN}` }, transports: ['websocket'], reconnection: false, forceNew: true });
  t.teardown(() => stranger.close());
  await connected(stranger);
  const strangerErrors: string[] = [];
  stranger.on('peer-error', (f: unknown) => void strangerErrors.push(decodeMessage(f).type === 'error' ? String((decodeMessage(f) as { code: string }).code) : '?'));
  stranger.emit('pull', encodeMessage({ type: 'pull', credit: 4 }));
  await until(() => strangerErrors.length === 1, 'not-registered error');
  t.deepEqual(strangerErrors, ['not-registered']);

  const hostile = await worker(t, c.url, { name: 'hostile', auto: false });
  const raw = hostile.socket as unknown as { emit: (event: string, ...args: unknown[]) => void };
  raw.emit('result', new Uint8Array([0xc1, 0xff, 0x00]));
  raw.emit('heartbeat', encodeMessage({ type: 'pull', credit: 1 }));
  raw.emit('pull', 'not a frame');
  raw.emit('bogus-event', 1, 2, 3);
  raw.emit('lease', encodeMessage({ type: 'heartbeat', time: 1 }));
  raw.emit('result', encodeMessage({ type: 'result', leaseId: 'L', shardId: 'S', payload: { kind: 'scores', scores: Tensor.float32([1]) } }));
  await until(() => hostile.errors.length >= 5, 'five error replies');
  // socket.io runs catch-all listeners first, so unknown events are answered before the rest.
  t.deepEqual(hostile.errors.map((e) => e.code).sort(), ['malformed', 'malformed', 'malformed', 'unknown-type', 'unknown-type']);
  t.false(hostile.disconnected, 'still connected after a few errors');
  for (let i = 0; i < 8; i++) raw.emit('pull', new Uint8Array([0x90 + i]));
  await until(() => hostile.disconnected, 'disconnect after too many errors');
  t.true(hostile.errors.some((e) => e.code === 'too-many-errors'));

  await waitForJob(c.url, id);
  await checkResults(t, c.url, id, items);
  t.false(good.disconnected);
  t.true((await metric(c.url, 'fedpool_protocol_errors_total{code="malformed"}')) >= 3);
  t.is(await metric(c.url, 'fedpool_late_results_ignored_total'), 1, 'the result for an unknown lease was ignored');
});

test('a result with the wrong number of scores is refused and its shard re-queued', async (t) => {
  const { c, model } = await coordinator(t);
  const items = featureItems(10);
  const id = await submitJob(c.url, { model, items, shardSize: 10 });
  const w = await worker(t, c.url, { auto: false });
  w.pull(1);
  await until(() => w.held.size === 1, 'lease');
  const [lease] = [...w.held.values()];
  if (lease === undefined) return t.fail();
  w.answer(lease, new Float32Array(9));
  await until(() => w.errors.length === 1 && w.leases.length === 2, 'error and a second lease');
  t.like(w.errors[0], { code: 'shape-mismatch' });
  t.like(w.leases[1], { shardId: lease.shardId, attempt: 2 });
  w.answer(w.leases[1] as typeof lease);
  await waitForJob(c.url, id);
  await checkResults(t, c.url, id, items);
  t.is(await metric(c.url, 'fedpool_shards_requeued_total{reason="failed"}'), 1);
});

test('a worker that disconnects mid-lease: its shard is re-queued at once and completed by another', async (t) => {
  const { c, model } = await coordinator(t);
  const items = featureItems(30);
  const id = await submitJob(c.url, { model, items, shardSize: 10 });
  const a = await worker(t, c.url, { name: 'a', auto: false });
  a.pull(3);
  await until(() => a.held.size === 3, 'a holds all shards');
  a.close();
  await until(async () => (await metric(c.url, 'fedpool_shards_requeued_total{reason="disconnected"}')) === 3, 're-queued');
  const b = await worker(t, c.url, { name: 'b' });
  b.pull(2);
  await waitForJob(c.url, id);
  await checkResults(t, c.url, id, items);
  t.deepEqual(b.leases.map((l) => l.attempt), [2, 2, 2]);
});

test('lease expiry re-issues the shard (attempt 2); the late result is ignored and counted', async (t) => {
  const { c, model } = await coordinator(t, '--lease-ms', SHORT_LEASE_MS);
  const items = featureItems(5);
  const id = await submitJob(c.url, { model, items, shardSize: 5 });
  const a = await worker(t, c.url, { auto: false });
  // The first lease is the silent one. A re-issue only comes after it expired; answer that at once, so nothing else
  // waits on the lease time: first the expired lease, with scores that would show in the results were it accepted,
  // then the new one (the coordinator handles a socket's frames in order).
  onMessage(a.socket, 'lease', (lease) => {
    const first = a.leases[0];
    if (lease.attempt < 2 || first === undefined) return;
    if (lease.attempt === 2) a.answer(first, new Float32Array(items.length).fill(-1));
    a.answer(lease);
  }, (e) => t.fail(`bad lease frame: ${e.message}`), { direction: 'coordinator' });
  a.pull(1);
  t.is((await waitForJob(c.url, id)).state, 'done');
  t.is(a.leases.length, 2, 'one re-issue, answered before it could expire too');
  const [first, second] = a.leases;
  if (first === undefined || second === undefined) return t.fail();
  t.is(second.shardId, first.shardId);
  t.is(second.attempt, 2);
  t.true(second.deadline > first.deadline);
  t.is(await metric(c.url, 'fedpool_shards_requeued_total{reason="expired"}'), 1);
  t.is(await metric(c.url, 'fedpool_late_results_ignored_total'), 1, 'the late result was ignored and counted');
  await checkResults(t, c.url, id, items); // not the late result's −1s
  t.false(a.disconnected, 'heartbeats kept the worker registered');
});

test('credit is never exceeded, in the worker’s view and the coordinator’s', async (t) => {
  const { c, model } = await coordinator(t);
  const items = featureItems(400);
  const id = await submitJob(c.url, { model, items, shardSize: 5 });
  const ws = [await worker(t, c.url, { name: 'one', delayMs: 3 }), await worker(t, c.url, { name: 'three', delayMs: 1 })];
  ws[0]?.pull(1);
  ws[1]?.pull(3);
  // Sample the coordinator's view until the job is done; every sample must hold. The pause between samples leaves the
  // CPU to the coordinator and the workers; the deadline turns a stuck job into a failure instead of a spin.
  const over: string[] = [];
  const end = Date.now() + 60_000;
  for (let sample = 1; ; sample++) {
    const list = (await (await api(c.url, '/api/workers')).json()) as { name: string; inFlight: number; credit: number }[];
    for (const w of list) if (w.inFlight > w.credit) over.push(`sample ${sample}: ${w.name} holds ${w.inFlight} > credit ${w.credit}`);
    const s = (await (await api(c.url, `/api/jobs/${id}`)).json()) as { state: string; progress: { done: number; total: number } };
    if (s.state === 'done') break;
    if (s.state !== 'running' && s.state !== 'queued') return t.fail(`job ended ${s.state}`);
    if (Date.now() > end) return t.fail(`job still ${s.state} (${s.progress.done}/${s.progress.total} items) after 60 s of sampling`);
    await sleep(5);
  }
  t.deepEqual(over, []);
  t.true((ws[0]?.maxHeld ?? 99) <= 1);
  t.true((ws[1]?.maxHeld ?? 99) <= 3);
  t.is((ws[0]?.leases.length ?? 0) + (ws[1]?.leases.length ?? 0) >= 80, true);
  await checkResults(t, c.url, id, items);
});

test('a silent worker is dropped after the lease time and its shard goes to another', async (t) => {
  const { c, model } = await coordinator(t, '--lease-ms', SHORT_LEASE_MS);
  const items = featureItems(10);
  const id = await submitJob(c.url, { model, items, shardSize: 10 });
  const mute = await worker(t, c.url, { name: 'mute', auto: false, heartbeat: false });
  mute.pull(1);
  // Dropped within a lease time plus a sweep (its lease may expire first and come back to it: either way).
  await until(() => mute.disconnected, 'the silent worker is disconnected', PATIENCE_MS);
  // b heartbeats and answers on arrival, so only the mute worker depends on the lease time.
  const b = await worker(t, c.url, { name: 'b' });
  b.pull(1);
  t.is((await waitForJob(c.url, id)).state, 'done');
  t.is(b.leases.length, 1);
  t.is(b.leases[0]?.shardId, mute.leases[0]?.shardId);
  await checkResults(t, c.url, id, items);
});

test('release: handed-back leases go to others and the releasing worker gets no more until it pulls', async (t) => {
  const { c, model } = await coordinator(t);
  const items = featureItems(40);
  const id = await submitJob(c.url, { model, items, shardSize: 10 });
  const a = await worker(t, c.url, { name: 'a', auto: false });
  a.pull(2);
  await until(() => a.held.size === 2, 'a holds 2');
  const b = await worker(t, c.url, { name: 'b', auto: false });
  b.pull(2);
  await until(() => b.held.size === 2, 'b holds 2');
  sendMessage(a.socket, { type: 'release', leaseIds: [...a.held.keys()] });
  a.held.clear();
  await until(async () => {
    const list = (await (await api(c.url, '/api/workers')).json()) as { name: string; state: string; inFlight: number }[];
    return list.some((w) => w.name === 'a' && w.state === 'draining' && w.inFlight === 0);
  }, 'a draining');
  b.auto = true;
  for (const l of [...b.held.values()]) b.answer(l);
  await waitForJob(c.url, id);
  await checkResults(t, c.url, id, items);
  t.is(a.leases.length, 2, 'nothing new for the draining worker');
  t.is(b.leases.length, 4);
  t.is(await metric(c.url, 'fedpool_shards_requeued_total{reason="released"}'), 2);
});

test('speculation: near the end an idle worker duplicates a slow outstanding shard; the first result wins', async (t) => {
  // The default lease (30 s): nothing here may expire, so a slow machine cannot turn the duplicate into a re-issue.
  const { c, model } = await coordinator(t);
  const slow = await worker(t, c.url, { name: 'slow' });
  slow.pull(1);
  // A warm-up job answered at once gives the coordinator a typical shard time (taken from all jobs while this job
  // has none), so the shard below counts as slow after about twice that, instead of after 2 × leaseMs / 8.
  const warmUp = await submitJob(c.url, { model, items: featureItems(5, 4, 'w'), shardSize: 5 });
  t.is((await waitForJob(c.url, warmUp)).state, 'done');
  slow.auto = false;
  const items = featureItems(10);
  const id = await submitJob(c.url, { model, items, shardSize: 10 });
  await until(() => slow.held.size === 1, 'slow holds the shard');
  const [held] = [...slow.held.values()];
  if (held === undefined) return t.fail();
  const fast = await worker(t, c.url, { name: 'fast' });
  fast.pull(1);
  t.is((await waitForJob(c.url, id)).state, 'done');
  t.is(fast.leases.length, 1);
  t.like(fast.leases[0], { shardId: held.shardId, attempt: 2 });
  await until(() => slow.controls.length === 1, 'slow told to drop the finished job');
  t.like(slow.controls[0], { jobId: id, action: 'cancel' });
  slow.answer(held);
  await until(async () => (await metric(c.url, 'fedpool_late_results_ignored_total')) === 1, 'the twin result is ignored');
  await checkResults(t, c.url, id, items);
  t.is(await metric(c.url, 'fedpool_shards_leased_total{speculative="true"}'), 1);
  t.is(await metric(c.url, 'fedpool_shards_requeued_total{reason="expired"}'), 0);
});
