// Memory and the event loop are bounded (issue 13): caps on TCP connections per address and in total refuse the
// extra ones while those held keep working; one budget for the request bodies in flight answers 503 past it; a large
// JSON job body is parsed while the coordinator keeps answering, and its job completes; a body past the byte or
// entry limits is a 413 that costs no other job. In-process coordinators with small limits passed as options.
import test from 'ava';
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { request, type IncomingHttpHeaders } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import pino from 'pino';
import { BodyBudget } from '../../server/body-budget.js';
import { ConnectionLimiter, addressKey } from '../../server/connection-limits.js';
import { startCoordinator, type Coordinator, type CoordinatorOptions } from '../../server/coordinator.js';
import { RequestRefused } from '../../server/request-refused.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, expectedScore, featureItems, until } from './helpers.js';

const quiet = pino({ level: 'silent' });
const MODEL = new TextEncoder().encode('model');
const MODEL_HASH = createHash('sha256').update(MODEL).digest('hex');

async function coordinator(t: { teardown: (f: () => Promise<void>) => void }, options: CoordinatorOptions): Promise<Coordinator> {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN], ...options });
  t.teardown(() => c.close());
  return c;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
}

/**
 * One HTTP request on a connection of its own, closed after the answer (fetch would keep connections open in its
 * pool, and they count against the caps). `body` may be written slowly by a function; `headersOnly` sends no body.
 */
function send(url: string, path: string, o: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {}): Promise<Answer> {
  return new Promise<Answer>((resolve, reject) => {
    const req = request(`${url}${path}`, { method: o.method ?? 'GET', agent: false, headers: { authorization: `Bearer ${CLIENT_TOKEN}`, connection: 'close', ...o.headers } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

function postJob(url: string, body: unknown): Promise<Answer> {
  return send(url, '/api/jobs', { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
}

/** A raw connection, proven accepted by the answer to a keep-alive GET /healthz on it. */
async function heldConnection(port: number, localAddress?: string): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', ...(localAddress === undefined ? {} : { localAddress }) });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('error', reject);
  });
  if (!(await healthzOn(socket))) throw new Error('a connection under the caps was not served');
  return socket;
}

/** Sends GET /healthz on a held connection: true on a 200, false if the connection closes first. */
function healthzOn(socket: Socket): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    let seen = '';
    const onData = (d: Buffer): void => {
      seen += d.toString();
      if (/\r\n\r\n[\s\S]*\n/.test(seen)) done(/^HTTP\/1\.1 200/.test(seen));
    };
    const onClose = (): void => done(false);
    const done = (ok: boolean): void => {
      socket.off('data', onData);
      socket.off('close', onClose);
      resolve(ok);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.on('error', () => undefined);
    if (socket.destroyed) done(false);
    else socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
  });
}

/** A connection past a cap: accepted by the kernel, then closed by the coordinator without a byte of answer. */
async function refusedConnection(port: number, localAddress?: string): Promise<boolean> {
  const socket = connect({ port, host: '127.0.0.1', ...(localAddress === undefined ? {} : { localAddress }) });
  socket.on('error', () => undefined);
  const served = await healthzOn(socket);
  socket.destroy();
  return !served;
}

/** Polls /metrics on fresh connections (one may be refused while a cap is full) until `pattern` shows. */
async function metricsShow(url: string, pattern: RegExp): Promise<string> {
  let text = '';
  await until(async () => {
    text = await send(url, '/metrics').then((a) => a.text, () => '');
    return pattern.test(text);
  }, `metrics matching ${pattern}`);
  return text;
}

test('a cap per address refuses extra connections, HTTP and websocket, while those held keep working', async (t) => {
  const c = await coordinator(t, { maxConnectionsPerIp: 4, maxConnections: 1_000 });
  t.is((await send(c.url, `/api/blobs/${MODEL_HASH}`, { method: 'PUT', body: Buffer.from(MODEL) })).status, 201);
  const items = featureItems(40);
  const submitted = await postJob(c.url, { model: MODEL_HASH, items, shardSize: 4 });
  t.is(submitted.status, 201);
  const id = (JSON.parse(submitted.text) as { id: string }).id;
  await until(() => c.jobs.jobStatus(id) !== undefined, 'the job');

  const worker = await FakeWorker.connect(c.url, { name: 'held', auto: true });
  t.teardown(() => worker.close());
  const held = [await heldConnection(c.port), await heldConnection(c.port), await heldConnection(c.port)];
  t.teardown(() => held.forEach((s) => s.destroy()));
  // Four from 127.0.0.1 are held: a fifth, plain or websocket, is closed at once.
  t.true(await refusedConnection(c.port), 'a fifth connection is closed unanswered');
  await t.throwsAsync(FakeWorker.connect(c.url, { name: 'extra' }), undefined, 'a second worker cannot connect');
  for (const s of held) t.true(await healthzOn(s), 'the held connections are still served');
  worker.pull(4);
  await until(() => c.jobs.jobStatus(id)?.state === 'done', 'the held worker finishes the job');
  t.false(worker.disconnected);

  held[0]?.destroy();
  const text = await metricsShow(c.url, /^fedpool_connections_refused_total\{reason="per-ip"\} [2-9]/m);
  t.regex(text, /^fedpool_connections_refused_total\{reason="total"\} 0$/m);
});

test('a cap on all connections refuses past it, whatever the address', async (t) => {
  const c = await coordinator(t, { maxConnectionsPerIp: 1_000, maxConnections: 3 });
  const held = [await heldConnection(c.port), await heldConnection(c.port), await heldConnection(c.port)];
  t.teardown(() => held.forEach((s) => s.destroy()));
  t.true(await refusedConnection(c.port));
  for (const s of held) t.true(await healthzOn(s));
  held.pop()?.destroy();
  await metricsShow(c.url, /^fedpool_connections_refused_total\{reason="total"\} [1-9]/m);
});

test('connections count per address (IPv4, IPv4-mapped, an IPv6 /64) and are given back when they close', (t) => {
  t.is(addressKey('10.0.0.7'), '10.0.0.7');
  t.is(addressKey('::ffff:10.0.0.7'), '10.0.0.7');
  t.is(addressKey('2001:db8:1:2::1'), '2001:db8:1:2::/64');
  t.is(addressKey('2001:db8:1:2:ffff:1:2:3'), '2001:db8:1:2::/64');
  t.is(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
  t.is(addressKey('::1'), '0:0:0:0::/64');
  t.is(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  t.is(addressKey(undefined), 'unknown');

  const server = createServer();
  const refused: string[] = [];
  const limiter = new ConnectionLimiter(server, { maxConnections: 4, maxConnectionsPerIp: 2 }, { refused: (reason, key) => refused.push(`${reason} ${key}`) });
  const fake = (remoteAddress: string): EventEmitter & { remoteAddress: string; destroyed: boolean; destroy: () => void } => {
    const s = Object.assign(new EventEmitter(), { remoteAddress, destroyed: false, destroy: () => void (s.destroyed = true) });
    server.emit('connection', s);
    return s;
  };
  const a = [fake('10.0.0.1'), fake('::ffff:10.0.0.1'), fake('10.0.0.1')];
  t.deepEqual(a.map((s) => s.destroyed), [false, false, true]);
  const b = [fake('2001:db8::1'), fake('2001:db8::2'), fake('2001:db8:0:1::1')];
  t.deepEqual(b.map((s) => s.destroyed), [false, false, true], 'the third is refused for the total, not its /64');
  t.deepEqual(refused, ['per-ip 10.0.0.1', 'total 2001:db8:0:1::/64']);
  t.is(limiter.open, 4);
  a[0]?.emit('close');
  t.is(limiter.open, 3);
  t.is(limiter.openFrom('10.0.0.1'), 1);
  t.false(fake('10.0.0.1').destroyed, 'a closed connection makes room');
  limiter.detach();
});

test('the body budget: declared sizes are reserved up front, undeclared bodies as they arrive, and given back once', (t) => {
  const seen: number[] = [];
  const budget = new BodyBudget(100, { inFlight: (b) => seen.push(b) });
  const a = budget.admit(60);
  const busy = t.throws(() => budget.admit(50), { instanceOf: RequestRefused });
  t.is(busy?.status, 503);
  t.regex(busy?.message ?? '', /busy, retry later$/);
  t.is(busy?.headers['retry-after'], '5');
  t.is(t.throws(() => budget.admit(101), { instanceOf: RequestRefused })?.status, 413, 'a body larger than the whole budget never fits');
  const b = budget.admit(undefined);
  b.cover(30);
  b.cover(40);
  t.is(budget.inFlight, 100);
  t.is(t.throws(() => b.cover(41), { instanceOf: RequestRefused })?.status, 503);
  a.release();
  a.release();
  b.release();
  t.is(budget.inFlight, 0);
  t.is(seen.at(-1), 0);
});

test('request bodies past the budget in flight are answered 503 with Retry-After; the one in flight completes, then others fit', async (t) => {
  const c = await coordinator(t, { bodyBudgetBytes: 64 * 1024 });
  const blob = Buffer.alloc(48 * 1024, 7);
  const hash = createHash('sha256').update(blob).digest('hex');
  // An upload of 48 KiB, of which only the headers are sent: with Expect: 100-continue the coordinator says
  // "continue" as it takes the request, so its reservation stands once the client hears it.
  const holder = request(`${c.url}/api/blobs/${hash}`, {
    method: 'PUT', agent: false, headers: { authorization: `Bearer ${CLIENT_TOKEN}`, 'content-length': String(blob.length), expect: '100-continue' },
  });
  const holderAnswer = new Promise<Answer>((resolve, reject) => {
    holder.on('response', (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
    });
    holder.on('error', reject);
  });
  holder.flushHeaders();
  await new Promise<void>((resolve) => holder.once('continue', () => resolve()));

  const job = JSON.stringify({ model: MODEL_HASH, items: featureItems(600) });
  t.true(job.length > 16 * 1024, 'the job does not fit next to the upload');
  const refused = await postJob(c.url, job);
  t.is(refused.status, 503);
  t.regex((JSON.parse(refused.text) as { error: string }).error, /busy, retry later/);
  t.is(refused.headers['retry-after'], '5');
  const refusedBlob = await send(c.url, `/api/blobs/${MODEL_HASH.replace(/^./, '0')}`, { method: 'PUT', body: Buffer.alloc(20 * 1024) });
  t.is(refusedBlob.status, 503, 'blob uploads count too');

  holder.end(blob);
  t.is((await holderAnswer).status, 201, 'the upload in flight completes');
  t.is((await send(c.url, `/api/blobs/${MODEL_HASH}`, { method: 'PUT', body: Buffer.from(MODEL) })).status, 201);
  t.is((await postJob(c.url, job)).status, 201, 'and the job fits once it is stored');
  await metricsShow(c.url, /^fedpool_request_bodies_refused_total [2-9]/m);
});

test('a large JSON job body is parsed while the coordinator keeps answering, and its job completes', async (t) => {
  const c = await coordinator(t, {});
  t.is((await send(c.url, `/api/blobs/${MODEL_HASH}`, { method: 'PUT', body: Buffer.from(MODEL) })).status, 201);
  const items = featureItems(70_000, 16, `item-with-a-longer-id-${'x'.repeat(40)}-`);
  const body = JSON.stringify({ model: MODEL_HASH, items, shardSize: 8_192 });
  t.true(body.length > 10_000_000, `${body.length} bytes`);
  let done = false;
  const posted = postJob(c.url, body).finally(() => (done = true));
  let answered = 0;
  while (!done) {
    const health = await Promise.race([send(c.url, '/healthz', { headers: {} }), posted.then(() => undefined)]);
    if (health !== undefined && !done) answered += health.status === 200 ? 1 : 0;
  }
  const answer = await posted;
  t.is(answer.status, 201, answer.text);
  t.true(answered > 0, '/healthz answered while the body was received and parsed');
  const id = (JSON.parse(answer.text) as { id: string }).id;
  const worker = await FakeWorker.connect(c.url, { name: 'big' });
  t.teardown(() => worker.close());
  worker.pull(2);
  await until(() => c.jobs.jobStatus(id)?.state === 'done', 'the large job is done');
  const results = (await send(c.url, `/api/jobs/${id}/results`)).text.trim().split('\n').map((l) => JSON.parse(l) as { id: string; score: number });
  t.is(results.length, items.length);
  t.true(results.every((r, i) => r.id === items[i]?.id && Math.abs(r.score - expectedScore(items[i] as { features: number[] })) <= 1e-5));
});

test('a body past the entry or byte limits is a 413 naming the limit, and costs no other job', async (t) => {
  const c = await coordinator(t, { maxItems: 1_000, maxJsonBytes: 2 * 1024 * 1024 });
  t.is((await send(c.url, `/api/blobs/${MODEL_HASH}`, { method: 'PUT', body: Buffer.from(MODEL) })).status, 201);
  const before = await postJob(c.url, { model: MODEL_HASH, items: featureItems(1_000), shardSize: 100 });
  t.is(before.status, 201, before.text);
  const id = (JSON.parse(before.text) as { id: string }).id;

  // Small (read whole) and large (parsed as it arrives: 1.5 MiB of ids in columns).
  const small = await postJob(c.url, { model: MODEL_HASH, items: featureItems(1_001) });
  t.is(small.status, 413);
  t.regex((JSON.parse(small.text) as { error: string }).error, /^body: an array or object has more than 1000 entries \(the coordinator's maxItems limit\)$/);
  const ids = Array.from({ length: 40_000 }, (_, i) => `a-fairly-long-item-id-number-${i}`);
  const large = await postJob(c.url, { model: MODEL_HASH, columns: { ids, features: { dim: 1, base64: '' } } });
  t.is(large.status, 413);
  t.regex((JSON.parse(large.text) as { error: string }).error, /more than 1000 entries \(the coordinator's maxItems limit\)$/);
  // Past the byte limit without a declared length: refused as the bytes pass it.
  const bytes = await send(c.url, '/api/jobs', { method: 'POST', headers: { 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, body: `{"meta":"${'x'.repeat(3 * 1024 * 1024)}"}` }).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
  // (The coordinator drops the connection right after its answer; should the reset overtake the answer, it still refused.)
  if (bytes instanceof Error) t.regex(bytes.message, /ECONNRESET|EPIPE|socket hang up/);
  else {
    t.is(bytes.status, 413);
    t.regex((JSON.parse(bytes.text) as { error: string }).error, /^request body exceeds the 2097152-byte limit$/);
  }

  t.is((await send(c.url, '/healthz')).status, 200);
  t.deepEqual(c.jobs.allJobs().map((j) => j.id), [id], 'no job was added or lost');
  const worker = await FakeWorker.connect(c.url, { name: 'after' });
  t.teardown(() => worker.close());
  worker.pull(2);
  await until(() => c.jobs.jobStatus(id)?.state === 'done', 'the earlier job completes');
  await metricsShow(c.url, /^fedpool_request_body_bytes_in_flight 0$/m);
});
