// Bounded load from one party (issue 13): a connection that floods frames is disconnected while an honest worker's
// job completes; many concurrent /metrics scrapes share one rendering; a client that sends its request headers too
// slowly is cut off. In-process coordinator (small limits passed as options), real sockets.
import test from 'ava';
import { connect } from 'node:net';
import pino from 'pino';
import { Registry } from 'prom-client';
import { startCoordinator } from '../../server/coordinator.js';
import { sendMessage } from '../../shared/protocol/index.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, api, checkResults, featureItems, submitJob, until, uploadBlob, waitForJob } from './helpers.js';

const quiet = pino({ level: 'silent' });

test('a connection that floods frames is told rate-limited and disconnected; an honest worker finishes the job', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN], frameRate: { perSecond: 200, burst: 400 } });
  t.teardown(() => c.close());
  const model = await uploadBlob(c.url, new TextEncoder().encode('model'));
  const items = featureItems(60);
  const id = await submitJob(c.url, { model, items, shardSize: 5 });
  const honest = await FakeWorker.connect(c.url, { name: 'honest' });
  t.teardown(() => honest.close());
  const flooder = await FakeWorker.connect(c.url, { name: 'flooder', heartbeat: false });
  t.teardown(() => flooder.close());
  // 5,000 heartbeats at once: far over a burst of 400, whatever the machine's speed.
  for (let i = 0; i < 5_000 && flooder.socket.connected; i++) sendMessage(flooder.socket, { type: 'heartbeat', time: i, inFlight: 0 });
  await until(() => flooder.disconnected, 'the flooder is disconnected');
  t.true(flooder.errors.some((e) => e.code === 'rate-limited'), 'and told why');
  honest.pull(2);
  t.like(await waitForJob(c.url, id), { state: 'done' });
  await checkResults(t, c.url, id, items);
  t.false(honest.disconnected, 'the honest worker, well under the limit, stays');
  const text = await (await api(c.url, '/metrics')).text();
  t.regex(text, /^fedpool_protocol_errors_total\{code="rate-limited"\} 1$/m);
});

test('concurrent /metrics scrapes share one rendering, and at most 64 wait for it at once', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, clientTokens: [CLIENT_TOKEN] });
  t.teardown(() => c.close());
  const original = Registry.prototype.metrics;
  let renderings = 0;
  Registry.prototype.metrics = function (this: Registry) {
    renderings++;
    return original.call(this);
  };
  t.teardown(() => {
    Registry.prototype.metrics = original;
  });
  const answers = await Promise.all(Array.from({ length: 200 }, async () => {
    const res = await api(c.url, '/metrics');
    await res.arrayBuffer();
    return [res.status, res.headers.get('retry-after')] as const;
  }));
  // At most 64 wait for the rendering at once; the others are told to come back.
  t.true(answers.every(([s, after]) => s === 200 || (s === 503 && after === '1')), JSON.stringify(answers.filter(([s]) => s !== 200 && s !== 503)));
  t.true(answers.filter(([s]) => s === 200).length >= 64);
  // Without sharing, 200 renderings; with it, one per second the burst spans (a loaded machine may take a few).
  t.true(renderings >= 1 && renderings < 20, `${renderings} renderings for 200 scrapes`);
});

test('a client that does not finish its request headers in time is disconnected', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, clientTokens: [CLIENT_TOKEN], headersTimeoutMs: 300 });
  t.teardown(() => c.close());
  const socket = connect(c.port, '127.0.0.1');
  t.teardown(() => socket.destroy());
  await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
  socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'); // and never the blank line that ends the headers
  const closed = await new Promise<string>((resolve) => {
    let answer = '';
    socket.on('data', (d) => (answer += d.toString()));
    socket.once('close', () => resolve(answer));
  });
  t.regex(closed, /^HTTP\/1\.1 408|^$/, 'a 408 or a plain close');
  t.is((await api(c.url, '/healthz', { token: null })).status, 200, 'others are served meanwhile');
});

test('a frame over the size limit closes its connection and is counted as oversize against the sender', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN], maxFrameBytes: 1 << 20 });
  t.teardown(() => c.close());
  const big = await FakeWorker.connect(c.url, { name: 'big', heartbeat: false });
  t.teardown(() => big.close());
  big.socket.emit('pull', new Uint8Array((1 << 20) + 10));
  await until(() => big.disconnected, 'the sender is disconnected');
  await until(async () => /^fedpool_protocol_errors_total\{code="oversize"\} 1$/m.test(await (await api(c.url, '/metrics')).text()), 'the frame is counted as oversize');
  t.is(c.jobs.records.of('big').protocolErrors, 1);
});
