// Issue 13's frame fuzzer in the suite (bench/fuzz-frames.ts sends ≥ 100,000 frames; this sends 10,000): random and
// mutated frames, hostile fields, truncated and oversize frames, forged and out-of-order messages (among them results
// that fit the honest worker's live leases, with wrong scores), unknown events, raw websocket frames and a heartbeat
// flood, over real sockets to an in-process coordinator, while an honest worker's jobs run one after another. The
// coordinator must answer /healthz throughout, every honest job must complete with exactly the right scores, and
// /metrics must count the protocol errors.
import test from 'ava';
import pino from 'pino';
import { fuzzFrames, probeHealth, protocolErrors, type FuzzReport } from '../../bench/fuzz-frames.js';
import { startCoordinator } from '../../server/coordinator.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, checkResults, featureItems, submitJob, uploadBlob, waitForJob } from './helpers.js';

const SHARD = 7;

test('10,000 fuzzed frames over real sockets while honest jobs run: the coordinator stays up, every job is exact, errors are counted', async (t) => {
  t.timeout(180_000);
  const maxFrameBytes = 1 << 20;
  // A small frame budget, so that one flood of a few thousand heartbeats is cut off; the honest worker (at most two
  // shards in flight, each answered after 5 ms) sends far fewer frames than 1,000 a second.
  const c = await startCoordinator({
    port: 0, state: ':memory:', logger: pino({ level: 'silent' }), workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN],
    maxFrameBytes, frameRate: { perSecond: 1_000, burst: 200 },
  });
  t.teardown(() => c.close());
  const model = await uploadBlob(c.url, Uint8Array.of(9, 9, 9));
  const honest = await FakeWorker.connect(c.url, { name: 'honest', delayMs: 5 });
  t.teardown(() => honest.close());
  honest.pull(2);
  // 43 full shards of 7: the fuzzer forges no result of 7 scores, the one length that could fit one of its own leases.
  const items = featureItems(43 * SHARD);

  const stop = { done: false };
  const health = probeHealth(c.url, stop);
  const states: string[] = [];
  const jobs = (async () => {
    do {
      const id = await submitJob(c.url, { model, items, shardSize: SHARD });
      const s = await waitForJob(c.url, id);
      states.push(s.state);
      if (s.state === 'done') await checkResults(t, c.url, id, items);
    } while (!stop.done);
  })();
  let report: FuzzReport;
  try {
    report = await fuzzFrames({
      url: c.url, workerToken: WORKER_TOKEN, frames: 10_000, seed: 13, connections: 4, maxFrameBytes, floods: 1, floodFrames: 3_000, avoidScoreLength: SHARD,
      // Results that fit the honest worker's live leases, with wrong scores, from connections that do not hold them.
      victims: () => [...honest.held.values()].map((l) => ({ leaseId: l.leaseId, shardId: l.shardId, count: SHARD })),
    });
  } finally {
    stop.done = true;
  }
  await jobs;
  const probe = await health;
  t.log(`${report.frames} frames in ${report.seconds.toFixed(1)} s (${Object.entries(report.byKind).map(([k, v]) => `${k} ${v}`).join(', ')}); ` +
    `${report.connections} connections, ${report.refused} refused, ${report.disconnects} cut off (${report.rateLimited} for their rate); ` +
    `${states.length} honest jobs; ${probe.probes} /healthz probes`);

  t.true(report.frames >= 10_000);
  for (const kind of ['random', 'mutated', 'field', 'truncated', 'valid', 'forged', 'event', 'flood', 'raw']) t.true((report.byKind[kind] ?? 0) > 0, `${kind} frames were sent`);
  t.true(report.disconnects > 0, 'the coordinator cut fuzzing connections off');
  t.true(report.refused > 0, 'connections without the worker token were refused');
  t.true(report.rateLimited >= 1, 'the flood was cut off for its rate');

  t.deepEqual(probe.failures, [], '/healthz answered 200 throughout');
  t.true(probe.probes > 0);
  t.is((await fetch(`${c.url}/healthz`)).status, 200);
  t.true(states.length >= 1);
  t.true(states.every((s) => s === 'done'), states.join(','));
  t.false(honest.disconnected, 'the honest worker kept its connection');

  const errors = await protocolErrors(c.url, CLIENT_TOKEN);
  t.log(JSON.stringify(errors));
  for (const code of ['malformed', 'invalid-field', 'unknown-type', 'not-registered', 'unauthorized', 'rate-limited']) t.true((errors[code] ?? 0) > 0, `protocol errors "${code}" counted`);
});
