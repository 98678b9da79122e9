// The worker in-process against a fake coordinator over real sockets, with a fake scorer (sum of features).
import test, { type ExecutionContext } from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobCache } from '../../../client/blob-cache.js';
import { TokenRefusedError, VersionRefusedError, Worker, type WorkerOptions } from '../../../client/worker.js';
import { FakeCoordinator, FakeScorer, expectedScore, featureItems, type FakeCoordinatorOptions } from './fake-coordinator.js';
import { within } from '../../helpers/within.js';

function tempDir(t: ExecutionContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'fedpool-worker-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function coordinator(t: ExecutionContext, options: FakeCoordinatorOptions = {}): Promise<FakeCoordinator> {
  const coord = await new FakeCoordinator({ workerTokens: ['wt'], ...options }).listen();
  t.teardown(() => coord.close());
  return coord;
}

interface Started {
  worker: Worker;
  done: Promise<void>;
  logs: string[];
}

function startWorker(t: ExecutionContext, coord: FakeCoordinator | string, scorer: FakeScorer, options: Partial<WorkerOptions> = {}): Started {
  const logs: string[] = [];
  const log = (level: string) => (m: string) => void logs.push(`${level}: ${m}`);
  const worker = new Worker({
    url: typeof coord === 'string' ? coord : coord.url,
    token: 'wt',
    name: 'test-worker',
    threads: 2,
    backend: 'cpu',
    scorer,
    blobs: new BlobCache(),
    log: { debug: log('debug'), info: log('info'), warn: log('warn'), error: log('error') },
    backoff: { initialMs: 20, maxMs: 200 },
    ...options,
  });
  const done = worker.start();
  done.catch(() => {}); // tests that expect a rejection await it themselves
  t.teardown(() => worker.close());
  return { worker, done, logs };
}

/**
 * Backoff options that count retries: the worker draws each retry's delay (its jitter) from `random` when it schedules
 * that retry, so the count is known the moment an attempt has failed, with no waiting for the retry to show up.
 */
function countingBackoff(options: { initialMs: number; maxMs: number }): { backoff: NonNullable<WorkerOptions['backoff']>; draws: () => number; atLeast: (n: number) => Promise<void> } {
  let draws = 0;
  let waiters: { n: number; resolve: () => void }[] = [];
  return {
    backoff: {
      ...options,
      random: () => {
        draws++;
        const ready = waiters.filter((w) => draws >= w.n);
        waiters = waiters.filter((w) => draws < w.n);
        for (const w of ready) w.resolve();
        return Math.random();
      },
    },
    draws: () => draws,
    atLeast: (n) => (draws >= n ? Promise.resolve() : new Promise<void>((resolve) => void waiters.push({ n, resolve }))),
  };
}

/** A gate for the fake scorer: score() blocks until open() is called. */
function gate(scorer: FakeScorer): () => void {
  let open!: () => void;
  scorer.gate = new Promise<void>((resolve) => (open = resolve));
  return () => {
    scorer.gate = undefined;
    open();
  };
}

test('scores leases end to end: correct scores, credit respected, model fetched once for many leases, heartbeats', async (t) => {
  const coord = await coordinator(t, { heartbeatMs: 50, chunkBytes: 1000 });
  const model = randomBytes(5500); // 6 chunks
  const hash = coord.addBlob(model);
  const shards = Array.from({ length: 20 }, (_, s) => ({ jobId: 'J', modelHash: hash, items: featureItems(`s${s}`, 8) }));
  coord.enqueue(...shards);
  const scorer = new FakeScorer();
  const { worker, done } = startWorker(t, coord, scorer, { threads: 2 });
  let maxHeld = 0;
  scorer.onCall = () => (maxHeld = Math.max(maxHeld, worker.inFlight));

  await coord.until(() => coord.results.length === 20, '20 results');
  await coord.until(() => coord.heartbeats.length >= 2, 'heartbeats');

  t.deepEqual(coord.pulls.map((p) => p.message), [4], 'credit = threads × 2');
  const hello = coord.hellos[0]!.message;
  t.is(hello.name, 'test-worker');
  t.like(hello.capabilities, { backend: 'cpu', threads: 2, tasks: ['score'] });
  t.is(coord.blobRequests.length, 1, 'one fetch for 20 leases');
  t.deepEqual([...scorer.bundles], [`${hash}:${model.length}`]);
  t.true(scorer.maxRunning <= 2, `at most threads leases score at once (saw ${scorer.maxRunning})`);
  t.true(maxHeld <= 4, `never more leases held than credit (saw ${maxHeld})`);
  t.deepEqual(coord.failures, []);
  t.deepEqual(coord.protocolErrors, []);
  t.true(coord.heartbeats.every((h) => typeof h.message.inFlight === 'number' && h.message.inFlight <= 4));

  const sent = new Map(coord.leasesSent.map((l) => [l.message.leaseId, l.message]));
  const shardIds = new Set<string>();
  for (const { message: r } of coord.results) {
    const lease = sent.get(r.leaseId)!;
    t.is(r.shardId, lease.shardId);
    shardIds.add(r.shardId);
    t.is(typeof r.elapsedMs, 'number');
    if (r.payload.kind !== 'scores') return t.fail('expected scores');
    t.deepEqual([...r.payload.scores.data], Array.from({ length: 8 }, (_, i) => expectedScore(i)));
  }
  t.is(shardIds.size, 20, 'every shard answered once');

  await worker.drain();
  await done;
  t.deepEqual(coord.releases, [], 'nothing to hand back when idle');
});

test('leases beyond the pulled credit are released, not held', async (t) => {
  const coord = await coordinator(t, { overshoot: 2 });
  const hash = coord.addBlob(randomBytes(100));
  const scorer = new FakeScorer();
  const open = gate(scorer);
  const { worker } = startWorker(t, coord, scorer, { threads: 1 }); // credit 2
  await coord.until(() => coord.pulls.length === 1, 'pull');
  coord.enqueue(...Array.from({ length: 4 }, (_, s) => ({ jobId: 'J', modelHash: hash, items: featureItems(`s${s}`, 2) })));
  await coord.until(() => coord.releases.flatMap((r) => r.message).length === 2, 'the two extra leases released');
  t.deepEqual(coord.releases.flatMap((r) => r.message), ['L3', 'L4'], 'the last two sent are the extra ones');
  t.true(worker.inFlight <= 2);
  open();
  await coord.until(() => coord.results.length === 2, 'the two held leases answered');
  t.is(scorer.maxRunning, 1);
  const released = new Set(coord.releases.flatMap((r) => r.message));
  t.true(coord.results.every((r) => !released.has(r.message.leaseId)), 'no result for a released lease');
  t.deepEqual(coord.failures, []);
});

test('a blob whose sha-256 does not match, or that the coordinator lacks, fails the lease (retryable) without scoring', async (t) => {
  const coord = await coordinator(t, { chunkBytes: 64 });
  const bytes = randomBytes(300);
  const wrongHash = 'ab'.repeat(32);
  coord.addBlob(bytes, wrongHash);
  const missing = 'cd'.repeat(32);
  const scorer = new FakeScorer();
  startWorker(t, coord, scorer);
  coord.enqueue(
    { jobId: 'J', modelHash: wrongHash, items: featureItems('a', 2) },
    { jobId: 'J', modelHash: wrongHash, items: featureItems('b', 2) },
    { jobId: 'J', modelHash: missing, items: featureItems('c', 2) },
  );
  await coord.until(() => coord.failures.length === 3, 'three failures');
  t.is(scorer.calls, 0);
  t.deepEqual(coord.results, []);
  for (const { message: f } of coord.failures) t.true(f.retryable, f.reason);
  const reasons = coord.failures.map((f) => f.message.reason);
  t.is(reasons.filter((r) => /sha-256/.test(r)).length, 2, reasons.join(' | '));
  t.is(reasons.filter((r) => /has no blob/.test(r)).length, 1, reasons.join(' | '));
});

test('an invalid bundle fails the lease for good; other scoring errors are retryable', async (t) => {
  const coord = await coordinator(t);
  const hash = coord.addBlob(randomBytes(50));
  const scorer = new FakeScorer();
  startWorker(t, coord, scorer);
  await coord.until(() => coord.pulls.length === 1, 'pull');
  // As it arrives from a pool thread: structured clone keeps the message, not the class.
  scorer.failWith = new RangeError('model bundle: fedpool.json is missing (not a fedpool model)');
  coord.enqueue({ jobId: 'J', modelHash: hash, items: featureItems('a', 2) });
  await coord.until(() => coord.failures.length === 1, 'first failure');
  scorer.failWith = new Error('out of memory in the backend');
  coord.enqueue({ jobId: 'J', modelHash: hash, items: featureItems('b', 2) });
  await coord.until(() => coord.failures.length === 2, 'second failure');
  t.like(coord.failures[0]!.message, { retryable: false, reason: 'model bundle: fedpool.json is missing (not a fedpool model)' });
  t.like(coord.failures[1]!.message, { retryable: true, reason: 'out of memory in the backend' });
});

test('the disk cache spares a second worker the download', async (t) => {
  const dir = tempDir(t);
  const coord = await coordinator(t, { chunkBytes: 500 });
  const hash = coord.addBlob(randomBytes(2000));
  const first = startWorker(t, coord, new FakeScorer(), { blobs: new BlobCache({ dir }) });
  coord.enqueue({ jobId: 'J', modelHash: hash, items: featureItems('a', 3) });
  await coord.until(() => coord.results.length === 1, 'first result');
  await first.worker.drain();
  t.is(coord.blobRequests.length, 1);
  t.true(existsSync(join(dir, hash)));

  const second = startWorker(t, coord, new FakeScorer(), { blobs: new BlobCache({ dir }) });
  coord.enqueue({ jobId: 'J', modelHash: hash, items: featureItems('b', 3) });
  await coord.until(() => coord.results.length === 2, 'second result');
  t.is(coord.blobRequests.length, 1, 'no second download');
  await second.worker.drain();
});

test('after a lost connection the worker says hello and pulls again, resumes, and never sends old leases\' results', async (t) => {
  const coord = await coordinator(t);
  const hash = coord.addBlob(randomBytes(64));
  const scorer = new FakeScorer();
  const open = gate(scorer);
  const { logs } = startWorker(t, coord, scorer, { threads: 1 }); // credit 2: one scoring, one waiting
  coord.enqueue(...Array.from({ length: 3 }, (_, s) => ({ jobId: 'J', modelHash: hash, items: featureItems(`s${s}`, 2) })));
  await coord.until(() => scorer.calls === 1 && coord.leasesSent.length === 2, 'one lease scoring, one waiting');

  coord.disconnectAll(); // server-side disconnect: socket.io-client would not reconnect by itself
  await coord.until(() => coord.hellos.length === 2 && coord.pulls.length === 2, 'hello + pull on the new connection');
  t.true(logs.some((l) => /connection lost: io server disconnect/.test(l)), logs.join('\n'));
  open();
  await coord.until(() => coord.results.length === 3, 'three results after reconnecting');
  t.true(coord.results.every((r) => r.connection === 2));
  const firstConnection = new Set(coord.leasesSent.filter((l) => l.connection === 1).map((l) => l.message.leaseId));
  t.true(coord.results.every((r) => !firstConnection.has(r.message.leaseId)), 'no result for a lease of the old connection');

  coord.dropTransports(); // a network failure this time
  await coord.until(() => coord.hellos.length === 3 && coord.pulls.length === 3, 'third session');
  coord.enqueue({ jobId: 'J', modelHash: hash, items: featureItems('late', 2) });
  await coord.until(() => coord.results.length === 4, 'work resumes');
  t.is(coord.results[3]!.connection, 3);
  t.is(coord.blobRequests.length, 1, 'the model stays cached across reconnections');
  t.deepEqual(coord.failures, []);
});

test('job-control cancel drops the job\'s waiting leases and silences its running one', async (t) => {
  const coord = await coordinator(t);
  const hash = coord.addBlob(randomBytes(64));
  const scorer = new FakeScorer();
  const open = gate(scorer);
  const { worker } = startWorker(t, coord, scorer, { threads: 1 });
  coord.enqueue(
    { jobId: 'A', modelHash: hash, items: featureItems('a1', 2) },
    { jobId: 'A', modelHash: hash, items: featureItems('a2', 2) },
    { jobId: 'B', modelHash: hash, items: featureItems('b1', 2) },
  );
  await coord.until(() => scorer.calls === 1 && coord.leasesSent.length === 2, 'A1 scoring, A2 waiting');
  coord.control('A', 'cancel');
  // The real coordinator forgets a cancelled job's leases; mimic that so B gets the freed credit.
  for (const peer of coord.peers.values()) for (const [id, l] of peer.outstanding) if (l.jobId === 'A') peer.outstanding.delete(id);
  coord.enqueue();
  // Held: A1 (cancelled, not counted) and B1, once the worker has seen the cancel and B1.
  await coord.until(() => coord.leasesSent.length === 3 && worker.inFlight === 1, 'cancel seen, B1 held');
  open();
  await coord.until(() => coord.results.length === 1, 'B1 result');
  t.is(coord.results[0]!.message.leaseId, coord.leasesSent[2]!.message.leaseId);
  t.is(scorer.calls, 2, 'A2 was never scored');
  t.deepEqual(coord.failures, []);
  t.deepEqual(coord.releases, []);
});

test('drain: waiting leases are released, the running one finishes and reports, then the worker disconnects', async (t) => {
  const coord = await coordinator(t);
  const hash = coord.addBlob(randomBytes(64));
  const scorer = new FakeScorer();
  const open = gate(scorer);
  const { worker, done } = startWorker(t, coord, scorer, { threads: 1 });
  coord.enqueue(
    { jobId: 'J', modelHash: hash, items: featureItems('x', 2) },
    { jobId: 'J', modelHash: hash, items: featureItems('y', 2) },
  );
  await coord.until(() => scorer.calls === 1 && coord.leasesSent.length === 2, 'one running, one waiting');
  const drained = worker.drain();
  await coord.until(() => coord.releases.length === 1, 'release');
  t.deepEqual(coord.releases[0]!.message, [coord.leasesSent[1]!.message.leaseId]);
  open();
  await drained;
  await done;
  await coord.until(() => coord.peers.size === 0, 'disconnected');
  t.is(coord.results.length, 1);
  t.is(coord.results[0]!.message.leaseId, coord.leasesSent[0]!.message.leaseId);
  t.is(coord.hellos.length, 1, 'no reconnection after draining');
});

test('a refused token is final: no retry, and the reason is the coordinator\'s', async (t) => {
  const coord = await coordinator(t, { clientTokens: ['ct'] });
  const retries = countingBackoff({ initialMs: 20, maxMs: 200 });
  const unknown = startWorker(t, coord, new FakeScorer(), { token: 'nope', backoff: retries.backoff });
  const e1 = await t.throwsAsync(unknown.done, { instanceOf: TokenRefusedError });
  t.is(e1?.message, 'coordinator refused the token: unauthorized: unknown worker token');
  const client = startWorker(t, coord, new FakeScorer(), { token: 'ct', backoff: retries.backoff });
  const e2 = await t.throwsAsync(client.done, { instanceOf: TokenRefusedError });
  t.regex(e2?.message ?? '', /client token; workers need a worker token/);
  const missing = startWorker(t, coord, new FakeScorer(), { token: undefined, backoff: retries.backoff });
  await t.throwsAsync(missing.done, { instanceOf: TokenRefusedError });
  // `done` rejects once a worker has stopped for good. A retry is scheduled (drawing its delay) when the refusal is
  // handled, before that; so no draw by now means no retry will ever come, with no sleeping to see one not happen.
  t.is(retries.draws(), 0, 'no retry was scheduled');
  t.false(unknown.worker.connected || client.worker.connected || missing.worker.connected);
  t.is(coord.authRefusals, 3);
  t.is(coord.connections, 0);
});

test('a protocol version refusal is final too; other hello refusals are retried', async (t) => {
  const version = await coordinator(t, { refuseHello: { code: 'unsupported-version', message: 'coordinator speaks protocol 2' } });
  const a = startWorker(t, version, new FakeScorer());
  const e = await t.throwsAsync(a.done, { instanceOf: VersionRefusedError });
  t.regex(e?.message ?? '', /unsupported-version: coordinator speaks protocol 2/);
  t.is(version.hellos.length, 1);

  const busy = await coordinator(t, { refuseHello: { code: 'internal', message: 'starting up' } });
  const b = startWorker(t, busy, new FakeScorer());
  await busy.until(() => busy.hellos.length >= 3, 'retried hellos');
  t.true(b.logs.some((l) => /retrying in/.test(l)), b.logs.join('\n'));
});

test('an unreachable coordinator is retried with backoff (logged sparingly) until it appears', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const scorer = new FakeScorer();
  const retries = countingBackoff({ initialMs: 20, maxMs: 80 });
  const { logs } = startWorker(t, url, scorer, { backoff: retries.backoff, retryLogIntervalMs: 60_000 });
  // Several failed attempts (each draws the delay of its retry), however long the machine takes for them.
  await within(retries.atLeast(4), 15_000, 'four failed connection attempts');
  const coord = await coordinator(t, { port });
  await coord.until(() => coord.pulls.length === 1, 'connected after the coordinator came up');
  const lines = logs.filter((l) => /retrying in/.test(l));
  t.is(lines.length, 1, `one line per log interval, not per attempt (${retries.draws()} retries):\n${logs.join('\n')}`);
  t.regex(lines[0]!, new RegExp(`^warn: ${url}: cannot connect: .+; retrying in \\d+\\.\\d s \\(attempt 1\\)$`));
});
