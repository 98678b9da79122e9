// startCoordinator in-process (as `fedpool demo` and benchmarks use it).
import test from 'ava';
import pino from 'pino';
import { io } from 'socket.io-client';
import { PROTOCOL_VERSION, decodeMessage, encodeMessage, type Message } from '../../shared/protocol/index.js';
import { startCoordinator } from '../../server/coordinator.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, api, featureItems, submitJob, until, uploadBlob, waitForJob } from './helpers.js';

const quiet = pino({ level: 'silent' });

test('in-process: a job runs, frame-sized limits are enforced at submit, close() releases everything', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN], maxFrameBytes: 64 * 1024 });
  t.regex(c.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const model = await uploadBlob(c.url, Uint8Array.of(5));
  const tooBig = await api(c.url, '/api/jobs', { method: 'POST', body: JSON.stringify({ model, items: featureItems(100, 200), shardSize: 100 }) });
  t.is(tooBig.status, 400);
  t.regex(((await tooBig.json()) as { error: string }).error, /^shardSize: a shard would need about \d+ bytes, more than the 65536-byte frame limit/);
  const w = await FakeWorker.connect(c.url);
  w.pull(2);
  const id = await submitJob(c.url, { model, items: featureItems(100, 200), shardSize: 10 });
  t.like(await waitForJob(c.url, id), { state: 'done' });
  t.is(c.jobs.score.progress(id)?.doneItems, 100);
  await c.close();
  await c.close(); // idempotent
  await until(() => w.disconnected, 'worker disconnected by close()');
  await t.throwsAsync(fetch(`${c.url}/healthz`));
});

test('hello without an ack gets a welcome event; a second hello is refused', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet });
  t.teardown(() => c.close());
  const socket = io(c.url, { transports: ['websocket'], reconnection: false, forceNew: true });
  t.teardown(() => socket.close());
  const got: Message[] = [];
  for (const event of ['welcome', 'peer-error']) socket.on(event, (f: unknown) => void got.push(decodeMessage(f)));
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  const hello = encodeMessage({ type: 'hello', protocolVersion: PROTOCOL_VERSION, name: 'no-ack', capabilities: { backend: 'wasm', threads: 2, tasks: ['score'] } });
  socket.emit('hello', hello);
  await until(() => got.length === 1, 'welcome');
  t.like(got[0], { type: 'welcome', protocolVersion: PROTOCOL_VERSION, leaseMs: 30_000, heartbeatMs: 5000, maxFrameBytes: 256 * 1024 * 1024 });
  socket.emit('hello', hello);
  await until(() => got.length === 2, 'error');
  t.like(got[1], { type: 'error', code: 'already-registered' });
  // A second hello that asks for an ack gets its answer in the ack, like the first would have.
  const acked = await socket.timeout(10_000).emitWithAck('hello', hello);
  t.like(decodeMessage(acked), { type: 'error', code: 'already-registered' });
  const workers = (await (await api(c.url, '/api/workers', { token: null })).json()) as { name: string; backend: string; threads: number }[];
  t.like(workers[0], { name: 'no-ack', backend: 'wasm', threads: 2 });
});

test('GET /fedpool.tgz: the package the coordinator was given, without a token; 404 without one; 503 with npm\'s reason when packing fails', async (t) => {
  const bytes = Uint8Array.of(0x1f, 0x8b, 8, 0);
  let fail = true;
  const served = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, clientTokens: [CLIENT_TOKEN], packageTarball: async () => {
    if (fail) throw new Error('npm pack failed: ENOENT');
    return bytes;
  } });
  const plain = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, clientTokens: [CLIENT_TOKEN] });
  t.teardown(async () => {
    await served.close();
    await plain.close();
  });
  const failed = await fetch(`${served.url}/fedpool.tgz`);
  t.is(failed.status, 503);
  t.deepEqual(await failed.json(), { error: 'this coordinator cannot pack its package: npm pack failed: ENOENT' });
  fail = false;
  const ok = await fetch(`${served.url}/fedpool.tgz`);
  t.is(ok.status, 200);
  t.is(ok.headers.get('content-type'), 'application/gzip');
  t.deepEqual(new Uint8Array(await ok.arrayBuffer()), bytes);
  t.is((await fetch(`${plain.url}/fedpool.tgz`)).status, 404);
});
