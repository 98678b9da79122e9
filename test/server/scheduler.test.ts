// The scheduler as a pure state machine: example-based tests for each rule, then a fast-check
// model-based test over random sequences of worker and job events.
import test from 'ava';
import fc from 'fast-check';
import { quorumOf } from '../../server/quorum.js';
import { pinned, Scheduler, type Grant, type JobStateEvent, type SchedulerOptions, type ShardDoneEvent, type TallyOf } from '../../server/scheduler.js';

interface Harness {
  s: Scheduler;
  clock: { t: number };
  done: ShardDoneEvent[];
  states: JobStateEvent[];
}

function harness(options: Partial<SchedulerOptions> = {}): Harness {
  const clock = { t: 1_000 };
  const done: ShardDoneEvent[] = [];
  const states: JobStateEvent[] = [];
  const s = new Scheduler({
    leaseMs: 1_000,
    now: () => clock.t,
    listener: { shardDone: (e) => done.push(e), jobState: (e) => states.push(e) },
    ...options,
  });
  return { s, clock, done, states };
}

const ones = (n: number): Float32Array => new Float32Array(n).fill(1);

/** A tally hook that compares first values only (a job whose results carry more than they are judged by). */
function firstValueTally(replies: readonly Float32Array[], quorum: number): TallyOf<Float32Array> {
  const agreeing = replies.filter((r) => r[0] === replies[0]?.[0]).length;
  return { value: replies[0] as Float32Array, unresolved: agreeing >= quorum ? [] : [0], short: Math.max(0, quorum - agreeing), outvoted: [], disagreed: agreeing < replies.length };
}

function answer(s: Scheduler, g: Grant, value = 1) {
  return s.complete(g.workerId, g.leaseId, new Float32Array(g.count).fill(value));
}

test('a job is split into shards; leases never exceed credit; every shard completes once, then the job', (t) => {
  const { s, done, states } = harness({ speculative: false });
  s.addJob({ id: 'J', items: 10, shardSize: 3, redundancy: 1 });
  t.deepEqual(s.progress('J'), { state: 'queued', doneItems: 0, totalItems: 10, doneShards: 0, totalShards: 4, prefixShards: 0, prefixItems: 0, leases: 0, disagreements: 0, replies: 0, disputed: 0 });
  s.addWorker('a');
  t.deepEqual(s.dispatch(), [], 'no credit, no lease');
  s.setCredit('a', 2);
  const first = s.dispatch();
  t.deepEqual(first.map((g) => [g.shardIndex, g.start, g.count, g.attempt]), [[0, 0, 3, 1], [1, 3, 3, 1]]);
  t.deepEqual(s.dispatch(), [], 'credit exhausted');
  t.is(s.progress('J')?.state, 'running');
  t.is(answer(s, first[1] as Grant).kind, 'accepted');
  t.is(s.progress('J')?.prefixShards, 0, 'shard 1 done, but shard 0 is not: no prefix yet');
  const second = s.dispatch();
  t.deepEqual(second.map((g) => g.shardIndex), [2]);
  answer(s, first[0] as Grant);
  t.deepEqual([s.progress('J')?.prefixShards, s.progress('J')?.prefixItems], [2, 6]);
  const third = s.dispatch();
  t.deepEqual(third.map((g) => [g.shardIndex, g.count]), [[3, 1]]);
  answer(s, second[0] as Grant);
  answer(s, third[0] as Grant);
  t.deepEqual(done.map((d) => d.index), [1, 0, 2, 3]);
  t.deepEqual(states.map((e) => e.state), ['running', 'done']);
  t.deepEqual(s.progress('J'), { state: 'done', doneItems: 10, totalItems: 10, doneShards: 4, totalShards: 4, prefixShards: 4, prefixItems: 10, leases: 0, disagreements: 0, replies: 4, disputed: 0 });
  t.is(s.stats.completed, 4);
  t.is(s.stats.itemsDone, 10);
});

test('work is spread one lease per worker per round', (t) => {
  const { s } = harness({ speculative: false });
  s.addJob({ id: 'J', items: 6, shardSize: 1, redundancy: 1 });
  for (const w of ['a', 'b', 'c']) {
    s.addWorker(w);
    s.setCredit(w, 4);
  }
  const grants = s.dispatch();
  t.deepEqual(grants.map((g) => g.workerId), ['a', 'b', 'c', 'a', 'b', 'c']);
});

test('an expired lease is re-queued first with attempt + 1, and its late result is ignored and counted', (t) => {
  const { s, clock, done } = harness({ speculative: false });
  s.addJob({ id: 'J', items: 3, shardSize: 1, redundancy: 1 });
  s.addWorker('slow');
  s.setCredit('slow', 1);
  const [lease] = s.dispatch();
  t.is(lease?.deadline, 2_000);
  t.is(s.nextDeadline(), 2_000);
  clock.t = 1_999;
  t.is(s.expire(), 0);
  clock.t = 2_000;
  t.is(s.expire(), 1);
  t.is(s.stats.requeued.expired, 1);
  s.addWorker('fast');
  s.setCredit('fast', 1);
  const grants = s.dispatch();
  // slow has free credit again too; the re-queued shard 0 goes out first.
  t.deepEqual(grants.map((g) => [g.workerId, g.shardIndex, g.attempt]), [['slow', 0, 2], ['fast', 1, 1]]);
  t.deepEqual(answer(s, lease as Grant), { kind: 'ignored', reason: 'unknown-lease' });
  t.is(s.stats.ignored, 1);
  t.is(done.length, 0);
  answer(s, grants[0] as Grant);
  t.deepEqual(done.map((d) => [d.index, d.workers]), [[0, ['slow']]]);
});

test('a disconnect re-queues the worker’s leases at once, ahead of fresh work', (t) => {
  const { s } = harness({ speculative: false });
  s.addJob({ id: 'J', items: 4, shardSize: 1, redundancy: 1 });
  s.addWorker('a');
  s.setCredit('a', 2);
  t.deepEqual(s.dispatch().map((g) => g.shardIndex), [0, 1]);
  s.removeWorker('a');
  t.is(s.stats.requeued.disconnected, 2);
  t.is(s.workerLoad('a'), undefined);
  s.addWorker('b');
  s.setCredit('b', 4);
  const order = s.dispatch().map((g) => g.shardIndex);
  t.deepEqual(order.slice(2), [2, 3], 'fresh shards after the re-queued ones');
  t.deepEqual(order.slice(0, 2).sort(), [0, 1]);
});

test('speculative copies go only to workers with a good record', (t) => {
  const { s, clock } = harness({ trusted: (identity) => identity !== 'shaky' });
  s.addJob({ id: 'J', items: 1, shardSize: 1, redundancy: 1 });
  s.addWorker('a');
  s.setCredit('a', 1);
  s.dispatch();
  s.addWorker('s1', [''], 'shaky');
  s.setCredit('s1', 1);
  clock.t += 1_000;
  t.deepEqual(s.dispatch(), [], 'the slow shard is not duplicated onto a shaky worker');
  s.addWorker('b');
  s.setCredit('b', 1);
  t.deepEqual(s.dispatch().map((g) => [g.workerId, g.speculative]), [['b', true]]);
});

test('speculation: an idle worker duplicates the oldest outstanding shard; the first result wins', (t) => {
  const { s, done, clock } = harness();
  s.addJob({ id: 'J', items: 2, shardSize: 1, redundancy: 1 });
  s.addWorker('a');
  s.setCredit('a', 2);
  const [a0, a1] = s.dispatch();
  s.addWorker('b');
  s.setCredit('b', 3);
  t.deepEqual(s.dispatch(), [], 'not yet: the shards are not slow');
  // No shard has finished yet, so "slow" means 2 × leaseMs / 8 = 250 ms out.
  t.is(s.nextSpeculation(), 1_250);
  clock.t = 1_250;
  const dup = s.dispatch();
  t.deepEqual(dup.map((g) => [g.workerId, g.shardIndex, g.speculative, g.attempt]), [['b', 0, true, 2], ['b', 1, true, 2]], 'one duplicate per shard, oldest first');
  t.deepEqual(s.dispatch(), [], 'never a third lease of a shard');
  t.is(answer(s, dup[1] as Grant).kind, 'accepted');
  t.deepEqual(done.map((d) => [d.index, d.workers]), [[1, ['b']]]);
  // a's twin lease is obsolete but still holds a's credit until a answers.
  t.deepEqual(s.workerLoad('a'), { credit: 2, inFlight: 2 });
  t.deepEqual(answer(s, a1 as Grant), { kind: 'ignored', reason: 'duplicate' });
  t.deepEqual(s.workerLoad('a'), { credit: 2, inFlight: 1 });
  t.is(answer(s, a0 as Grant).kind, 'accepted');
  t.is(done.length, 2);
  t.is(s.progress('J')?.state, 'done');
  t.is(s.stats.speculative, 2);
  // b's remaining duplicate was dropped when the job ended, and reported so b can be told.
  t.deepEqual(s.workerLoad('b'), { credit: 3, inFlight: 0 });
});

test('speculation waits for shards slower than twice the job’s typical shard time', (t) => {
  const { s, clock } = harness({ leaseMs: 60_000 });
  s.addJob({ id: 'J', items: 3, shardSize: 1, redundancy: 1 });
  s.addWorker('a');
  s.setCredit('a', 3);
  const [g0, g1, g2] = s.dispatch();
  clock.t += 100;
  answer(s, g0 as Grant);
  clock.t += 100;
  answer(s, g1 as Grant); // typical: 0.8 · 100 + 0.2 · 200 = 120 ms
  s.addWorker('b');
  s.setCredit('b', 1);
  t.deepEqual(s.dispatch(), []);
  t.is(s.nextSpeculation(), 1_000 + 240, 'g2 was covered at t=1000; 2 × 120 ms later it is slow');
  clock.t = 1_239;
  t.deepEqual(s.dispatch(), []);
  clock.t = 1_240;
  t.deepEqual(s.dispatch().map((g) => [g.workerId, g.shardIndex, g.speculative]), [['b', 2, true]]);
  t.is(s.nextSpeculation(), undefined);
  answer(s, g2 as Grant);
});

test('a worker never holds two leases of one shard, and speculation can be switched off', (t) => {
  const on = harness();
  on.s.addJob({ id: 'J', items: 1, shardSize: 1, redundancy: 1 });
  on.s.addWorker('a');
  on.s.setCredit('a', 5);
  t.is(on.s.dispatch().length, 1);
  const off = harness({ speculative: false });
  off.s.addJob({ id: 'J', items: 1, shardSize: 1, redundancy: 1 });
  off.s.addWorker('a');
  off.s.addWorker('b');
  off.s.setCredit('a', 1);
  off.s.setCredit('b', 1);
  t.is(off.s.dispatch().length, 1);
});

test('redundancy R = 2: distinct workers; agreeing results accepted, a split with nobody left to ask is disputed', (t) => {
  const { s, done } = harness({ speculative: false });
  s.addJob({ id: 'J', items: 2, shardSize: 1, redundancy: 2 });
  s.addWorker('a');
  s.setCredit('a', 4);
  const ga = s.dispatch();
  t.deepEqual(ga.map((g) => g.shardIndex), [0, 1], 'a takes each shard once');
  s.complete('a', (ga[0] as Grant).leaseId, Float32Array.of(0.5));
  s.complete('a', (ga[1] as Grant).leaseId, Float32Array.of(0.25));
  t.deepEqual(s.dispatch(), [], 'a cannot provide the second result itself');
  t.is(done.length, 0);
  s.addWorker('b');
  s.setCredit('b', 4);
  const gb = s.dispatch();
  t.deepEqual(gb.map((g) => [g.workerId, g.shardIndex]), [['b', 0], ['b', 1]]);
  s.complete('b', (gb[0] as Grant).leaseId, Float32Array.of(0.5 + 1e-7));
  s.complete('b', (gb[1] as Grant).leaseId, Float32Array.of(0.75));
  t.deepEqual(done.map((d) => [d.index, d.result[0], d.agreed, d.disputed, d.workers]), [[0, 0.5, true, [], ['a', 'b']], [1, 0.25, false, [0], ['a', 'b']]]);
  t.like(s.progress('J'), { state: 'done', disagreements: 1, disputed: 1, replies: 4 });
});

test('cancel drops the job’s leases (reported for job-control), and nothing of it is leased again', (t) => {
  const { s, states } = harness();
  s.addJob({ id: 'J', items: 5, shardSize: 1, redundancy: 1 });
  s.addJob({ id: 'K', items: 1, shardSize: 1, redundancy: 1 });
  s.addWorker('a');
  s.setCredit('a', 2);
  const g = s.dispatch();
  t.true(s.cancel('J'));
  t.false(s.cancel('J'), 'already over');
  t.false(s.cancel('nope'));
  const end = states.find((e) => e.jobId === 'J' && e.state === 'cancelled');
  t.deepEqual(end?.dropped.map((d) => d.leaseId).sort(), g.map((x) => x.leaseId).sort());
  t.deepEqual(s.workerLoad('a'), { credit: 2, inFlight: 0 });
  t.deepEqual(answer(s, g[0] as Grant), { kind: 'ignored', reason: 'unknown-lease' });
  const next = s.dispatch();
  t.deepEqual(next.map((x) => x.jobId), ['K'], 'only the other job is served');
  t.is(s.progress('J')?.state, 'cancelled');
});

test('release hands leases back without counting a loss and pauses the worker until its next pull', (t) => {
  const { s } = harness({ speculative: false, lossesPerWorker: 1, blameWorkers: 1 });
  s.addJob({ id: 'J', items: 3, shardSize: 1, redundancy: 1 });
  s.addWorker('a');
  s.setCredit('a', 2);
  const g = s.dispatch();
  t.is(s.release('a', [g[0]?.leaseId ?? '', 'unknown']), 1);
  t.is(s.stats.requeued.released, 1);
  t.deepEqual(s.dispatch(), [], 'a drains: no new leases');
  s.addWorker('b');
  s.setCredit('b', 1);
  t.deepEqual(s.dispatch().map((x) => [x.workerId, x.shardIndex]), [['b', 0]]);
  t.is(s.progress('J')?.state, 'running', 'a release is not a loss (one loss by one worker would fail the job)');
  s.setCredit('a', 2);
  t.deepEqual(s.dispatch().map((x) => [x.workerId, x.shardIndex]), [['a', 2]]);
});

test('failures: retryable re-queues; non-retryable is one worker\'s vote, and fails the job when no other worker can serve it', (t) => {
  const { s, states } = harness({ speculative: false });
  s.addJob({ id: 'J', items: 2, shardSize: 1, redundancy: 1 });
  s.addWorker('a');
  s.addWorker('b');
  s.setCredit('a', 1);
  const [g] = s.dispatch();
  t.is(s.fail('a', g?.leaseId ?? '', true, 'out of memory').kind, 'accepted');
  t.is(s.stats.requeued.failed, 1);
  const [again] = s.dispatch();
  t.deepEqual([again?.shardIndex, again?.attempt], [0, 2]);
  s.fail('a', again?.leaseId ?? '', false, 'model is not a fedpool bundle');
  t.is(s.progress('J')?.state, 'running', 'one vote: b may still do shard 0');
  const next = s.dispatch();
  t.deepEqual(next.map((x) => x.shardIndex), [1], 'a never gets shard 0 back');
  s.setCredit('b', 1);
  const [byB] = s.dispatch();
  t.deepEqual([byB?.workerId, byB?.shardIndex], ['b', 0]);
  s.fail('b', byB?.leaseId ?? '', false, 'model is not a fedpool bundle');
  t.is(s.progress('J')?.state, 'failed', 'every connected worker that serves it voted');
  t.is(states.at(-1)?.error, 'shard 0 could not be done by any connected worker that serves it: a (failed: model is not a fedpool bundle), b (failed: model is not a fedpool bundle)');
  t.deepEqual(s.fail('a', 'x', true, 'r'), { kind: 'ignored', reason: 'unknown-lease' });
});

test('blame is per worker: one worker losing shards again and again never fails a job others can do', (t) => {
  const { s, clock } = harness({ speculative: false });
  s.addJob({ id: 'J', items: 6, shardSize: 1, redundancy: 1 });
  s.addWorker('honest-1', [''], 'honest');
  // A liar under one name: takes everything it can, disconnects, comes back, for ever.
  for (let round = 0; round < 50; round++) {
    s.addWorker(`liar-${round}`, [''], 'liar');
    s.setCredit(`liar-${round}`, 1024);
    s.dispatch();
    s.removeWorker(`liar-${round}`);
  }
  t.is(s.progress('J')?.state, 'running', 'no shard failed although each was lost 50 times');
  s.setCredit('honest-1', 1);
  for (let i = 0; i < 10 && s.progress('J')?.state === 'running'; i++) for (const g of s.dispatch()) answer(s, g);
  t.is(s.progress('J')?.state, 'done', 'the honest worker did every shard');
  t.is(s.stats.requeued.disconnected, 6 + 6, 'the liar lost each shard twice; then it was out for all of them');
  clock.t += 1;
});

test('a small pool does not stall: workers out for a shard by losses retry it when nobody else can, up to maxLosses in all', (t) => {
  const { s, clock, states } = harness({ speculative: false, maxLosses: 5 });
  s.addJob({ id: 'J', items: 1, shardSize: 1, redundancy: 1 });
  s.addWorker('only');
  for (let i = 0; i < 4; i++) {
    s.setCredit('only', 1);
    const [g] = s.dispatch();
    t.is(g?.shardIndex, 0, `attempt ${i + 1}: the only worker gets the shard again`);
    clock.t += 5_000;
    s.expire();
  }
  t.is(s.progress('J')?.state, 'running');
  s.removeWorker('only');
  t.is(s.progress('J')?.state, 'running', 'a worker leaving with nothing held fails nothing');
  s.addWorker('back', [''], 'only');
  s.setCredit('back', 1);
  const [last] = s.dispatch();
  s.fail('back', last?.leaseId ?? '', true, 'server busy');
  t.is(s.progress('J')?.state, 'failed');
  t.is(states.at(-1)?.error, 'shard 0 was lost 5 times by every connected worker that serves it: only (failed: server busy)');
});

test('a shard fails when K distinct workers could not do it, naming them; a wrong number of scores counts as a loss', (t) => {
  const { s, clock, states } = harness({ speculative: false, blameWorkers: 3, lossesPerWorker: 2 });
  s.addJob({ id: 'J', items: 4, shardSize: 2, redundancy: 1 });
  for (const w of ['a', 'b', 'c', 'd']) s.addWorker(w);
  s.setCredit('a', 1);
  const [g1] = s.dispatch();
  t.deepEqual(s.complete('a', g1?.leaseId ?? '', ones(3)), { kind: 'ignored', reason: 'invalid' });
  t.is(s.stats.requeued.failed, 1);
  const [g2] = s.dispatch();
  t.deepEqual([g2?.workerId, g2?.shardIndex], ['a', 0], 'one loss: a may try again');
  clock.t += 5_000;
  s.expire();
  t.deepEqual(s.dispatch().map((g) => [g.workerId, g.shardIndex]), [['a', 1]], 'two losses: a is out for shard 0');
  for (const w of ['b', 'c']) {
    s.setCredit(w, 1);
    const [g] = s.dispatch().filter((x) => x.workerId === w);
    t.is(g?.shardIndex, 0);
    s.fail(w, g?.leaseId ?? '', false, `${w} cannot`);
  }
  t.is(s.progress('J')?.state, 'failed', 'three workers out, though d could still try');
  t.is(states.at(-1)?.error, 'shard 0 could not be done by 3 workers: a (expired), b (failed: b cannot), c (failed: c cannot)');
});

test('a resumed job leases only shards without results; one with all results is done at once', (t) => {
  const { s, states } = harness({ speculative: false });
  s.addJob({ id: 'J', items: 5, shardSize: 1, redundancy: 1, done: [0, 1, 3] });
  t.deepEqual(s.progress('J'), { state: 'running', doneItems: 3, totalItems: 5, doneShards: 3, totalShards: 5, prefixShards: 2, prefixItems: 2, leases: 0, disagreements: 0, replies: 0, disputed: 0 });
  s.addWorker('a');
  s.setCredit('a', 5);
  t.deepEqual(s.dispatch().map((g) => g.shardIndex), [2, 4]);
  s.addJob({ id: 'K', items: 2, shardSize: 1, redundancy: 1, done: [0, 1] });
  t.is(s.progress('K')?.state, 'done');
  t.deepEqual(states.map((e) => [e.jobId, e.state]), [['K', 'done']]);
  t.throws(() => s.addJob({ id: 'K', items: 1, shardSize: 1, redundancy: 1 }), { message: /already exists/ });
  t.throws(() => s.addJob({ id: 'Z', items: 0, shardSize: 1, redundancy: 1 }), { instanceOf: RangeError });
});

test('jobs are served in submission order', (t) => {
  const { s } = harness({ speculative: false });
  s.addJob({ id: 'A', items: 2, shardSize: 1, redundancy: 1 });
  s.addJob({ id: 'B', items: 2, shardSize: 1, redundancy: 1 });
  s.addWorker('w');
  s.setCredit('w', 10);
  t.deepEqual(s.dispatch().map((g) => g.shardId), ['A/0', 'A/1', 'B/0', 'B/1']);
});

// The scheduler exposes no operation count, so this cannot show the absence of per-event scans (and a wall-clock
// bound would be flaky on a loaded machine). It checks, at a scale where shortcuts show, that the bookkeeping is exact.
test('large: 200k shards through 64 workers with expiries, disconnects and speculation: each shard done once, each lost lease re-leased, counters exact', (t) => {
  const shards = 200_000;
  const failures: string[] = [];
  const fail = (m: string): void => {
    if (failures.length < 10) failures.push(m);
  };
  const doneCount = new Uint8Array(shards);
  let doneEvents = 0;
  const states: JobStateEvent[] = [];
  const clock = { t: 1_000 };
  // Not the harness: it keeps every shardDone event, which 200k shards do not need.
  const s = new Scheduler({
    leaseMs: 50,
    now: () => clock.t,
    listener: {
      shardDone: (e) => {
        doneEvents++;
        if (++doneCount[e.index] > 1) fail(`shard ${e.index} completed twice`);
      },
      jobState: (e) => states.push(e),
    },
  });
  s.addJob({ id: 'big', items: shards, shardSize: 1, redundancy: 1 });
  const workers = Array.from({ length: 64 }, (_, i) => `w${i}`);
  for (const w of workers) {
    s.addWorker(w);
    s.setCredit(w, 4);
  }
  // Leases issued and not answered: left to expire, or lost with their worker.
  const pending = new Map<string, Grant>();
  const pendingOrder: Grant[] = []; // issue order = deadline order (one leaseMs)
  let pendingHead = 0;
  const pendingOfShard = new Int32Array(shards);
  /** Shards whose lease was lost while they were live and had no other lease: they must be re-queued. */
  const awaiting = new Uint8Array(shards);
  const expected = { expired: 0, disconnected: 0 };
  let relet = 0;
  let grantsTotal = 0;
  let speculativeTotal = 0;
  let duplicatesAnswered = 0;
  const droppedAtEnd = new Set<string>();
  let nextFresh = 0;

  const lose = (g: Grant, reason: 'expired' | 'disconnected'): void => {
    pending.delete(g.leaseId);
    pendingOfShard[g.shardIndex]--;
    if (doneCount[g.shardIndex] === 0 && pendingOfShard[g.shardIndex] === 0) {
      expected[reason]++;
      awaiting[g.shardIndex] = 1;
    }
  };

  let round = 0;
  while (s.progress('big')?.state === 'running' || s.progress('big')?.state === 'queued') {
    round++;
    const grants = s.dispatch();
    // One dispatch hands out re-queued shards first, then fresh ones in submission order, then speculative twins.
    let seenFresh = false;
    let seenSpeculative = false;
    for (const g of grants) {
      const k = g.shardIndex;
      grantsTotal++;
      if (doneCount[k] !== 0) fail(`round ${round}: lease ${g.leaseId} of completed shard ${k}`);
      if (g.speculative) {
        speculativeTotal++;
        seenSpeculative = true;
        if (pendingOfShard[k] === 0) fail(`round ${round}: speculative lease of shard ${k}, which has no outstanding lease`);
      } else {
        if (pendingOfShard[k] !== 0) fail(`round ${round}: second lease of shard ${k} while one is outstanding`);
        if (seenSpeculative) fail(`round ${round}: shard ${k} leased after a speculative twin in one dispatch`);
        if (g.attempt === 1) {
          seenFresh = true;
          if (k !== nextFresh) fail(`round ${round}: fresh shard ${k} leased, expected ${nextFresh}`);
          nextFresh = k + 1;
        } else {
          if (seenFresh) fail(`round ${round}: re-queued shard ${k} leased after fresh work`);
          if (awaiting[k] !== 1) fail(`round ${round}: shard ${k} re-leased (attempt ${g.attempt}) without a loss`);
          awaiting[k] = 0;
          relet++;
        }
      }
      pendingOfShard[k]++; // outstanding until answered below
    }
    for (const [i, g] of grants.entries()) {
      // Every 97th lease is lost (left to expire, unless its worker disconnects first), and so is the first twin of
      // an even shard, so that leases are also lost while a twin is out; the rest are answered.
      if ((i + round) % 97 === 0 || (g.speculative && g.attempt === 2 && g.shardIndex % 2 === 0)) {
        pending.set(g.leaseId, g);
        pendingOrder.push(g);
        continue;
      }
      pendingOfShard[g.shardIndex]--;
      const wasDone = doneCount[g.shardIndex] !== 0;
      const out = answer(s, g);
      if (doneEvents === shards && out.kind === 'ignored' && out.reason === 'unknown-lease') {
        // The job ended earlier in this round and dropped the twins still out (reported in its 'done' event).
        droppedAtEnd.add(g.leaseId);
      } else if (wasDone) {
        duplicatesAnswered++;
        if (out.kind !== 'ignored' || out.reason !== 'duplicate') fail(`round ${round}: late twin of shard ${g.shardIndex}: ${JSON.stringify(out)}`);
      } else if (out.kind !== 'accepted' || !out.shardDone) fail(`round ${round}: answer for shard ${g.shardIndex}: ${JSON.stringify(out)}`);
    }
    if (doneEvents === shards) break; // the job's end dropped what was still out
    clock.t += 20;
    let due = 0;
    while (pendingHead < pendingOrder.length && (pendingOrder[pendingHead] as Grant).deadline <= clock.t) {
      const g = pendingOrder[pendingHead++] as Grant;
      if (!pending.has(g.leaseId)) continue; // already lost with its worker
      due++;
      lose(g, 'expired');
    }
    const expired = s.expire();
    if (expired !== due) fail(`round ${round}: expire() returned ${expired}, ${due} leases were due`);
    if (round % 50 === 0) {
      // Disconnect the holder of the newest outstanding lease, so disconnects lose leases before they expire.
      const newest = pendingOrder.at(-1);
      const w = newest !== undefined && pending.has(newest.leaseId) ? newest.workerId : (workers[round % workers.length] as string);
      for (const g of [...pending.values()]) if (g.workerId === w) lose(g, 'disconnected');
      s.removeWorker(w);
      s.addWorker(w);
      s.setCredit(w, 4);
    }
    if (round > 100_000) break;
  }
  t.deepEqual(failures, []);
  t.is(s.progress('big')?.state, 'done');
  t.is(doneEvents, shards);
  t.true(doneCount.every((c) => c === 1), 'every shard completed exactly once');
  t.is(nextFresh, shards);
  // What the job's end dropped is exactly what was still outstanding (lost leases not yet expired, obsolete twins).
  t.deepEqual(states.map((e) => e.state), ['running', 'done']);
  t.deepEqual(new Set(states[1]?.dropped.map((d) => d.leaseId)), new Set([...pending.keys(), ...droppedAtEnd]));
  t.true(expected.expired > 0 && expected.disconnected > 0 && speculativeTotal > 0, `the run exercises expiry, disconnects and speculation: ${JSON.stringify({ ...expected, speculativeTotal })}`);
  t.is(relet, expected.expired + expected.disconnected, 'every re-queued shard was leased again');
  t.deepEqual(s.stats, {
    leased: grantsTotal,
    speculative: speculativeTotal,
    completed: shards,
    itemsDone: shards,
    requeued: { expired: expected.expired, disconnected: expected.disconnected, failed: 0, released: 0 },
    ignored: duplicatesAnswered + droppedAtEnd.size,
    disagreements: 0,
    disputed: 0,
  });
  t.deepEqual(s.progress('big'), { state: 'done', doneItems: shards, totalItems: shards, doneShards: shards, totalShards: shards, prefixShards: shards, prefixItems: shards, leases: 0, disagreements: 0, replies: shards, disputed: 0 });
});

// ---- model-based ------------------------------------------------------------------------------

interface World {
  h: Harness;
  /** Leases the model believes each worker holds. */
  held: Map<string, Map<string, Grant>>;
  credit: Map<string, number>;
  /** Every grant ever issued (for late results). */
  issued: Grant[];
  jobs: { id: string; shards: number; R: number; needs: string; open: boolean }[];
  /** Open jobs' shards pinned to a worker: shard id → worker id. */
  pins: Map<string, string>;
  /** Shards given up (shardLost) or dropped: no lease of them may follow. */
  gone: Map<string, 'lost' | 'dropped'>;
  workers: string[];
  /** The job keys each worker offers. */
  offers: Map<string, ReadonlySet<string>>;
  nextWorker: number;
  doneCount: Map<string, number>;
  failures: string[];
}

function newWorld(speculative: boolean): World {
  const w: World = { h: harness({ speculative, blameWorkers: 1_000_000, lossesPerWorker: 1_000_000, leaseMs: 100 }), held: new Map(), credit: new Map(), issued: [], jobs: [], workers: [], offers: new Map(), nextWorker: 0, doneCount: new Map(), failures: [], pins: new Map(), gone: new Map() };
  w.h.s = new Scheduler({
    leaseMs: 100, now: () => w.h.clock.t, speculative, blameWorkers: 1_000_000, lossesPerWorker: 1_000_000,
    listener: {
      shardDone: (e) => {
        const key = `${e.jobId}/${e.index}`;
        w.doneCount.set(key, (w.doneCount.get(key) ?? 0) + 1);
        const job = w.jobs.find((j) => j.id === e.jobId);
        // Every result agrees in this model: a shard is accepted by exactly its quorum of distinct identities.
        if (new Set(e.workers).size !== e.workers.length || e.workers.length !== quorumOf(job?.R ?? 1)) w.failures.push(`${key} completed by ${e.workers.join(',')} with R=${job?.R}`);
        if (w.gone.has(key)) w.failures.push(`${key} completed after it was ${w.gone.get(key)}`);
      },
      shardLost: (e) => {
        const key = `${e.jobId}/${e.index}`;
        if (w.gone.has(key) || (w.doneCount.get(key) ?? 0) > 0) w.failures.push(`${key} given up after it was ${w.gone.get(key) ?? 'done'}`);
        w.gone.set(key, 'lost');
      },
      jobState: (e) => {
        for (const d of e.dropped) w.held.get(d.workerId)?.delete(d.leaseId);
        w.h.states.push(e);
      },
    },
  });
  return w;
}

function dispatch(w: World): void {
  for (const g of w.h.s.dispatch()) {
    const held = w.held.get(g.workerId);
    if (held === undefined) {
      w.failures.push(`grant to unknown worker ${g.workerId}`);
      continue;
    }
    if (held.size >= (w.credit.get(g.workerId) ?? 0)) w.failures.push(`${g.workerId} got a lease beyond its credit ${w.credit.get(g.workerId)}`);
    for (const other of held.values()) if (other.shardId === g.shardId) w.failures.push(`${g.workerId} holds two leases of ${g.shardId}`);
    if ((w.doneCount.get(g.shardId) ?? 0) > 0) w.failures.push(`lease of completed shard ${g.shardId}`);
    if (w.gone.has(g.shardId)) w.failures.push(`lease of ${w.gone.get(g.shardId)} shard ${g.shardId}`);
    const state = w.h.s.progress(g.jobId)?.state;
    if (state !== 'running') w.failures.push(`lease of ${state} job ${g.jobId}`);
    const needs = w.jobs.find((j) => j.id === g.jobId)?.needs;
    const pin = w.pins.get(g.shardId);
    if (pin !== undefined) {
      if (pin !== g.workerId) w.failures.push(`${g.workerId} got ${g.shardId}, which is pinned to ${pin}`);
    } else if (needs === undefined || w.offers.get(g.workerId)?.has(needs) !== true) w.failures.push(`${g.workerId} got ${g.shardId}, which needs ${JSON.stringify(needs)}`);
    held.set(g.leaseId, g);
    w.issued.push(g);
  }
  checkAgreement(w);
}

/** The model's view of in-flight leases matches the scheduler's, and no shard completed twice. */
function checkAgreement(w: World): void {
  for (const id of w.workers) {
    const load = w.h.s.workerLoad(id);
    const held = w.held.get(id)?.size ?? 0;
    if (load?.inFlight !== held) w.failures.push(`${id}: scheduler says ${load?.inFlight} in flight, model ${held}`);
  }
  for (const [key, n] of w.doneCount) if (n > 1) w.failures.push(`${key} completed ${n} times`);
  for (const key of KEYS) {
    const offered = w.workers.some((id) => w.offers.get(id)?.has(key) === true);
    if (w.h.s.servable(key) !== offered) w.failures.push(`servable(${JSON.stringify(key)}) is ${!offered}, but ${offered ? 'a' : 'no'} connected worker offers it`);
  }
}

type Cmd = fc.Command<World, World>;

class AddJob implements Cmd {
  constructor(readonly items: number, readonly shardSize: number, readonly R: number, readonly needs: string) {}
  check = (): boolean => true;
  run(w: World): void {
    const id = `J${w.jobs.length}`;
    w.h.s.addJob({ id, items: this.items, shardSize: this.shardSize, redundancy: this.R, needs: this.needs });
    w.jobs.push({ id, shards: Math.ceil(this.items / this.shardSize), R: this.R, needs: this.needs, open: false });
    dispatch(w);
  }
  toString = (): string => `addJob(${this.items},${this.shardSize},R=${this.R},needs=${JSON.stringify(this.needs)})`;
}

/** An open job (training): shards come later; a lost shard is leased again twice at most, never after an expiry. */
class AddOpenJob implements Cmd {
  constructor(readonly needs: string) {}
  check = (): boolean => true;
  run(w: World): void {
    const id = `O${w.jobs.length}`;
    w.h.s.addJob({ id, items: 0, shardSize: 1, redundancy: 1, needs: this.needs, open: true, hooks: { retry: (_i, reason, attempt) => reason !== 'expired' && attempt < 3 } });
    w.jobs.push({ id, shards: 0, R: 1, needs: this.needs, open: true });
  }
  toString = (): string => `addOpenJob(needs=${JSON.stringify(this.needs)})`;
}

/** Shards for an open job, each for any worker of its key or pinned to a worker (maybe one that is gone). */
class AddShards implements Cmd {
  constructor(readonly pick: number, readonly pins: ReadonlyArray<number | null>) {}
  check = (w: World): boolean => w.jobs.some((j) => j.open);
  run(w: World): void {
    const open = w.jobs.filter((j) => j.open);
    const job = open[this.pick % open.length] as World['jobs'][number];
    const targets = this.pins.map((p) => (p === null ? undefined : (w.workers[p % (w.workers.length + 1)] ?? 'gone')));
    const indices = w.h.s.addShards(job.id, targets.map((t) => (t === undefined ? undefined : pinned(t))));
    indices.forEach((index, i) => {
      const t = targets[i];
      if (t !== undefined) w.pins.set(`${job.id}/${index}`, t);
    });
    job.shards += indices.length;
    dispatch(w);
  }
  toString = (): string => `addShards(${this.pick},${JSON.stringify(this.pins)})`;
}

/** The open job's owner gives a shard up (its round closed). */
class DropShard implements Cmd {
  constructor(readonly pick: number, readonly index: number) {}
  check = (w: World): boolean => w.jobs.some((j) => j.open && j.shards > 0);
  run(w: World): void {
    const open = w.jobs.filter((j) => j.open && j.shards > 0);
    const job = open[this.pick % open.length] as World['jobs'][number];
    const key = `${job.id}/${this.index % job.shards}`;
    const live = (w.doneCount.get(key) ?? 0) === 0 && !w.gone.has(key) && ['queued', 'running'].includes(w.h.s.progress(job.id)?.state ?? '');
    w.h.s.dropShard(job.id, this.index % job.shards);
    if (live) w.gone.set(key, 'dropped');
    dispatch(w);
  }
  toString = (): string => `dropShard(${this.pick},${this.index})`;
}

/** The job keys of the model-based test: any worker, and two kinds of inference-server worker. */
const KEYS = ['', 'reward:x', 'logprobs:y'];

class AddWorker implements Cmd {
  constructor(readonly offers: readonly string[]) {}
  check = (): boolean => true;
  run(w: World): void {
    const id = `w${w.nextWorker++}`;
    w.h.s.addWorker(id, this.offers);
    w.offers.set(id, new Set(this.offers));
    w.workers.push(id);
    w.held.set(id, new Map());
    w.credit.set(id, 0);
  }
  toString = (): string => `addWorker(${JSON.stringify(this.offers)})`;
}

class Pull implements Cmd {
  constructor(readonly pick: number, readonly credit: number) {}
  check = (w: World): boolean => w.workers.length > 0;
  run(w: World): void {
    const id = w.workers[this.pick % w.workers.length] as string;
    w.h.s.setCredit(id, this.credit);
    w.credit.set(id, this.credit);
    dispatch(w);
  }
  toString = (): string => `pull(${this.pick},${this.credit})`;
}

class Disconnect implements Cmd {
  constructor(readonly pick: number) {}
  check = (w: World): boolean => w.workers.length > 0;
  run(w: World): void {
    const id = w.workers.splice(this.pick % w.workers.length, 1)[0] as string;
    w.h.s.removeWorker(id);
    w.held.delete(id);
    w.credit.delete(id);
    dispatch(w);
  }
  toString = (): string => `disconnect(${this.pick})`;
}

class Answer implements Cmd {
  constructor(readonly pick: number, readonly how: 'result' | 'retry' | 'bad-length' | 'release') {}
  check = (w: World): boolean => [...w.held.values()].some((m) => m.size > 0);
  run(w: World): void {
    const all = [...w.held.values()].flatMap((m) => [...m.values()]);
    const g = all[this.pick % all.length] as Grant;
    w.held.get(g.workerId)?.delete(g.leaseId);
    const s = w.h.s;
    if (this.how === 'result') s.complete(g.workerId, g.leaseId, ones(g.count));
    else if (this.how === 'retry') s.fail(g.workerId, g.leaseId, true, 'retry');
    else if (this.how === 'bad-length') s.complete(g.workerId, g.leaseId, ones(g.count + 1));
    else {
      s.release(g.workerId, [g.leaseId]);
      w.credit.set(g.workerId, 0);
    }
    dispatch(w);
  }
  toString = (): string => `${this.how}(${this.pick})`;
}

class LateResult implements Cmd {
  constructor(readonly pick: number) {}
  check = (w: World): boolean => w.issued.length > 0;
  run(w: World): void {
    const g = w.issued[this.pick % w.issued.length] as Grant;
    if (w.held.get(g.workerId)?.has(g.leaseId) === true) return; // still current: not a late result
    const before = w.h.s.stats.ignored;
    const out = w.h.s.complete(g.workerId, g.leaseId, ones(g.count));
    if (out.kind !== 'ignored' || w.h.s.stats.ignored !== before + 1) w.failures.push(`late result for ${g.leaseId} was ${JSON.stringify(out)}`);
    checkAgreement(w);
  }
  toString = (): string => `late(${this.pick})`;
}

class Tick implements Cmd {
  constructor(readonly ms: number) {}
  check = (): boolean => true;
  run(w: World): void {
    w.h.clock.t += this.ms;
    w.h.s.expire();
    for (const m of w.held.values()) for (const [id, g] of m) if (g.deadline <= w.h.clock.t) m.delete(id);
    dispatch(w);
  }
  toString = (): string => `tick(${this.ms})`;
}

class Cancel implements Cmd {
  constructor(readonly pick: number) {}
  check = (w: World): boolean => w.jobs.length > 0;
  run(w: World): void {
    w.h.s.cancel((w.jobs[this.pick % w.jobs.length] as { id: string }).id);
    dispatch(w);
  }
  toString = (): string => `cancel(${this.pick})`;
}

const addJob = fc
  .tuple(fc.integer({ min: 1, max: 12 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 1, max: 3 }), fc.constantFrom(...KEYS))
  .map(([n, s, r, k]) => new AddJob(n, s, r, k));
const pull = fc.tuple(fc.nat(), fc.oneof({ arbitrary: fc.integer({ min: 1, max: 4 }), weight: 5 }, { arbitrary: fc.constant(0), weight: 1 })).map(([p, c]) => new Pull(p, c));
const answerCmd = fc.tuple(fc.nat(), fc.constantFrom('result', 'result', 'result', 'result', 'retry', 'bad-length', 'release' as const)).map(([p, h]) => new Answer(p, h));
// Repeats weight the mix towards the common events.
const commands = [
  addJob,
  fc.subarray(KEYS).map((offers) => new AddWorker(offers)),
  pull,
  pull,
  fc.nat().map((p) => new Disconnect(p)),
  answerCmd,
  answerCmd,
  answerCmd,
  answerCmd,
  fc.nat().map((p) => new LateResult(p)),
  fc.integer({ min: 1, max: 150 }).map((ms) => new Tick(ms)),
  fc.integer({ min: 1, max: 150 }).map((ms) => new Tick(ms)),
  fc.nat().map((p) => new Cancel(p)),
  fc.constantFrom(...KEYS).map((k) => new AddOpenJob(k)),
  fc.tuple(fc.nat(), fc.array(fc.option(fc.nat(), { nil: null }), { minLength: 1, maxLength: 4 })).map(([p, pins]) => new AddShards(p, pins)),
  fc.tuple(fc.nat(), fc.nat()).map(([p, i]) => new DropShard(p, i)),
];

function modelRun(speculative: boolean) {
  return fc.property(fc.commands(commands, { maxCommands: 80, size: 'large' }), (cmds) => {
    const w = newWorld(speculative);
    fc.modelRun(() => ({ model: w, real: w }), cmds);
    if (w.failures.length > 0) throw new Error(w.failures.join('; '));

    // Drain: the random workers leave; 3 reliable workers finish everything still running.
    while (w.workers.length > 0) new Disconnect(0).run(w);
    const reliable = ['r0', 'r1', 'r2'];
    for (const id of reliable) {
      w.h.s.addWorker(id, KEYS);
      w.offers.set(id, new Set(KEYS));
      w.workers.push(id);
      w.held.set(id, new Map());
      w.h.s.setCredit(id, 3);
      w.credit.set(id, 3);
    }
    dispatch(w);
    for (let round = 0; round < 10_000; round++) {
      const all = [...w.held.values()].flatMap((m) => [...m.values()]);
      if (all.length === 0) break;
      for (const g of all) {
        w.held.get(g.workerId)?.delete(g.leaseId);
        w.h.s.complete(g.workerId, g.leaseId, ones(g.count));
      }
      dispatch(w);
      checkAgreement(w);
    }
    if (w.failures.length > 0) throw new Error(w.failures.join('; '));
    for (const job of w.jobs) {
      const p = w.h.s.progress(job.id);
      if (p === undefined) throw new Error(`lost job ${job.id}`);
      if (job.open && (p.state === 'queued' || p.state === 'running')) {
        // An open job stays until its owner ends it; every shard it was given is done, given up or dropped, once.
        for (let i = 0; i < job.shards; i++) {
          const key = `${job.id}/${i}`;
          const n = (w.doneCount.get(key) ?? 0) + (w.gone.has(key) ? 1 : 0);
          if (n !== 1) throw new Error(`${key} accounted ${n} times (done ${w.doneCount.get(key) ?? 0}, ${w.gone.get(key) ?? 'not gone'})`);
        }
        if (p.leases !== 0 || p.doneShards !== job.shards) throw new Error(`${job.id} after the drain: ${JSON.stringify(p)}`);
        if (!w.h.s.finishJob(job.id) || w.h.s.progress(job.id)?.state !== 'done') throw new Error(`${job.id} did not finish when told`);
        continue;
      }
      if (p.state === 'queued' || p.state === 'running') throw new Error(`job ${job.id} still ${p.state} after the drain: shards lost`);
      if (p.state === 'done') {
        for (let i = 0; i < job.shards; i++) {
          const n = w.doneCount.get(`${job.id}/${i}`) ?? 0;
          if (n !== 1) throw new Error(`${job.id}/${i} completed ${n} times`);
        }
        if (p.doneItems !== p.totalItems || p.prefixShards !== job.shards) throw new Error(`${job.id} done with progress ${JSON.stringify(p)}`);
      }
    }
  });
}

test('model-based: random event sequences never over-lease, complete each shard exactly once, and lose nothing', (t) => {
  fc.assert(modelRun(true), { numRuns: 400 });
  fc.assert(modelRun(false), { numRuns: 200 });
  t.pass();
});

test('a job that needs a kind of worker goes only to workers offering it, and never hides other jobs behind it', (t) => {
  const { s } = harness({ speculative: false, scanLimit: 4 });
  s.addJob({ id: 'S', items: 20, shardSize: 1, redundancy: 1, needs: 'reward:m' });
  s.addJob({ id: 'B', items: 2, shardSize: 1, redundancy: 1 });
  t.false(s.servable('reward:m'));
  s.addWorker('plain');
  s.setCredit('plain', 5);
  // 20 shards nobody here can serve sit ahead of B's, further than the scan limit: B is still found.
  t.deepEqual(s.dispatch().map((g) => g.shardId), ['B/0', 'B/1']);
  s.addWorker('server', ['', 'reward:m']);
  t.true(s.servable('reward:m'));
  t.false(s.servable('reward:other'));
  s.setCredit('server', 3);
  t.deepEqual(s.dispatch().map((g) => [g.workerId, g.shardId]), [['server', 'S/0'], ['server', 'S/1'], ['server', 'S/2']]);
  s.removeWorker('server');
  t.false(s.servable('reward:m'), 'its leases went back and nobody left can serve them');
  t.deepEqual(s.dispatch(), []);
});

test('across kinds of work, a worker takes the oldest queued shard it can serve; re-queued work first', (t) => {
  const { s } = harness({ speculative: false });
  s.addJob({ id: 'A', items: 1, shardSize: 1, redundancy: 1 });
  s.addJob({ id: 'S', items: 2, shardSize: 1, redundancy: 1, needs: 'reward:m' });
  s.addJob({ id: 'B', items: 1, shardSize: 1, redundancy: 1 });
  s.addWorker('w', ['', 'reward:m']);
  s.setCredit('w', 4);
  const grants = s.dispatch();
  t.deepEqual(grants.map((g) => g.shardId), ['A/0', 'S/0', 'S/1', 'B/0']);
  // S/1 fails and goes back to the front of its deque: it comes before fresh work of any kind.
  s.fail('w', (grants[2] as Grant).leaseId, true, 'server busy');
  s.addJob({ id: 'C', items: 1, shardSize: 1, redundancy: 1 });
  s.complete('w', (grants[0] as Grant).leaseId, ones(1));
  t.deepEqual(s.dispatch().map((g) => g.shardId), ['S/1', 'C/0']);
});

test('a job of width k takes k values per item; another length counts as a loss', (t) => {
  const { s, done } = harness({ speculative: false });
  s.addJob({ id: 'L', items: 2, shardSize: 2, redundancy: 1, needs: 'logprobs:g', width: 3 });
  s.addWorker('w', ['logprobs:g']);
  s.setCredit('w', 1);
  const [g] = s.dispatch();
  t.is(s.complete('w', (g as Grant).leaseId, ones(2)).kind, 'ignored', 'one value per item is not enough');
  t.is(s.stats.requeued.failed, 1);
  const [again] = s.dispatch();
  t.is(s.complete('w', (again as Grant).leaseId, ones(6)).kind, 'accepted');
  t.is(done[0]?.result.length, 6);
  t.throws(() => s.addJob({ id: 'bad', items: 1, shardSize: 1, redundancy: 1, width: 0 }), { instanceOf: RangeError });
});

test('one table for every kind of work: an open job takes shards as it goes, shares the credit, ends when told', (t) => {
  const { s, done, states } = harness({ speculative: false });
  s.addJob({ id: 'J', items: 6, shardSize: 1, redundancy: 1 });
  s.addJob({ id: 'T', items: 0, shardSize: 1, redundancy: 1, open: true, needs: 'train' });
  s.addWorker('a', ['', 'train']);
  s.setCredit('a', 3);
  t.deepEqual(s.addShards('T', [undefined, undefined]), [0, 1]);
  const first = s.dispatch();
  t.deepEqual(first.map((g) => g.shardId), ['J/0', 'J/1', 'J/2'], 'submission order across jobs: J came first');
  t.deepEqual(s.workerLoad('a'), { credit: 3, inFlight: 3 });
  for (const g of first) answer(s, g);
  t.deepEqual(s.dispatch().map((g) => g.shardId), ['J/3', 'J/4', 'J/5']);
  t.is(s.progress('T')?.state, 'queued');
  const train = s.dispatch();
  t.deepEqual(train, [], 'no credit left');
  s.setCredit('a', 5);
  const t01 = s.dispatch();
  t.deepEqual(t01.map((g) => g.shardId), ['T/0', 'T/1']);
  t.is(answer(s, t01[0] as Grant).kind, 'accepted');
  t.deepEqual(done.at(-1)?.jobId, 'T');
  t.is(s.progress('T')?.state, 'running', 'an open job does not end with its last shard');
  s.dropShard('T', 1); // its round closed: the lease still out holds credit until answered
  t.deepEqual(answer(s, t01[1] as Grant), { kind: 'ignored', reason: 'duplicate' });
  t.deepEqual(s.addShards('T', [undefined]), [2]);
  t.true(s.finishJob('T'));
  t.is(states.at(-1)?.state, 'done');
  t.deepEqual(s.addShards('T', [undefined]), [], 'an ended job takes no shards');
  t.throws(() => s.addShards('J', [undefined]), { message: /not an open job/ });
});

test("a job's retry hook gives a lost shard up instead of re-queueing it, and its owner hears of it", (t) => {
  const lost: Array<[number, string]> = [];
  const { s, clock } = harness({ speculative: false, listener: { shardLost: (e) => lost.push([e.index, e.reason]) } });
  s.addJob({ id: 'T', items: 0, shardSize: 1, redundancy: 1, open: true, hooks: { retry: (_i, reason, attempt) => reason !== 'expired' && attempt < 2 } });
  s.addWorker('a');
  s.addWorker('b');
  s.setCredit('a', 2);
  s.addShards('T', [undefined, undefined]);
  const [g0, g1] = s.dispatch();
  s.removeWorker('a');
  t.deepEqual(lost, [], 'a disconnect on the first attempt: leased again');
  s.setCredit('b', 2);
  const again = s.dispatch();
  t.deepEqual(again.map((g) => [g.shardIndex, g.attempt]).sort(), [[g0?.shardIndex, 2], [g1?.shardIndex, 2]]);
  const [r, x] = again as [Grant, Grant];
  s.release('b', [r.leaseId]);
  t.deepEqual(lost, [[r.shardIndex, 'released']], 'the second attempt is the last');
  clock.t += 2_000;
  s.expire();
  t.deepEqual(lost, [[r.shardIndex, 'released'], [x.shardIndex, 'expired']]);
  t.is(s.progress('T')?.leases, 0);
});

test('a shard pinned to a worker goes to that worker only, and is given up when the worker leaves', (t) => {
  const lost: number[] = [];
  const { s } = harness({ speculative: false, listener: { shardLost: (e) => lost.push(e.index) } });
  s.addJob({ id: 'T', items: 0, shardSize: 1, redundancy: 1, open: true });
  s.addWorker('a');
  s.addWorker('b');
  s.setCredit('a', 4);
  s.setCredit('b', 4);
  s.addShards('T', [pinned('b'), pinned('b'), pinned('gone')]);
  t.deepEqual(lost, [2], 'pinned to a worker that is not connected: given up at once');
  s.setCredit('b', 1);
  const grants = s.dispatch();
  t.deepEqual(grants.map((g) => [g.workerId, g.shardIndex]), [['b', 0]], "a has credit but the shards are b's");
  s.removeWorker('b');
  t.deepEqual(lost.sort(), [0, 1, 2], 'its leased shard and its queued one are both given up');
  t.like(s.progress('T'), { state: 'running', leases: 0, doneShards: 3 });
});

test('per-job hooks: what fits, what agrees, how a failure is worded', (t) => {
  const { s, done, states } = harness({ speculative: false });
  s.addJob({
    id: 'H', items: 2, shardSize: 1, redundancy: 2,
    hooks: { fits: (r, count) => r.length === count + 1, tally: (replies, quorum) => firstValueTally(replies, quorum), failure: (i, w, why) => `unit ${i} broke on ${w}: ${why}`, voteOnFailure: false },
  });
  s.addWorker('a');
  s.addWorker('b');
  s.setCredit('a', 1);
  s.setCredit('b', 1);
  const [ga, gb] = s.dispatch();
  t.is(s.complete('a', (ga as Grant).leaseId, ones(1)).kind, 'ignored', 'one value does not fit');
  t.is(s.complete('b', (gb as Grant).leaseId, Float32Array.of(1, 5)).kind, 'accepted');
  const [again] = s.dispatch().filter((g) => g.workerId === 'a');
  t.is(s.complete('a', (again as Grant).leaseId, Float32Array.of(1, 9)).kind, 'accepted');
  t.true(done[0]?.agreed, 'the hook compares first values only');
  t.deepEqual(done[0]?.disputed, []);
  const next = s.dispatch();
  s.fail((next[0] as Grant).workerId, (next[0] as Grant).leaseId, false, 'bad model');
  t.regex(states.at(-1)?.error ?? '', /^unit 1 broke on [ab]: bad model$/);
});

// ---- redundancy that verifies -----------------------------------------------------------------

/** A harness that also records each identity's verdicts. */
function voting(options: Partial<SchedulerOptions> = {}) {
  const verdicts: string[] = [];
  const h = harness({ speculative: false, ...options });
  const s = new Scheduler({
    leaseMs: 1_000, now: () => h.clock.t, speculative: false, ...options,
    listener: { shardDone: (e) => h.done.push(e), jobState: (e) => h.states.push(e), workerVerdict: (who, v) => verdicts.push(`${who}:${v}`) },
  });
  const workers = (...ids: string[]): void => {
    for (const id of ids) {
      s.addWorker(id);
      s.setCredit(id, 8);
    }
  };
  return { ...h, s, verdicts, workers };
}

test('R = 3: two honest results outvote a liar; the accepted scores are theirs', (t) => {
  const { s, done, verdicts, workers } = voting();
  s.addJob({ id: 'J', items: 2, shardSize: 2, redundancy: 3 });
  workers('liar', 'h1', 'h2');
  const grants = s.dispatch();
  t.deepEqual(grants.map((g) => g.workerId).sort(), ['h1', 'h2', 'liar'], 'three replicas on three workers');
  const by = (w: string): Grant => grants.find((g) => g.workerId === w) as Grant;
  s.complete('liar', by('liar').leaseId, Float32Array.of(42, 42));
  s.complete('h1', by('h1').leaseId, Float32Array.of(0.5, 0.25));
  t.is(done.length, 0, 'one honest result and a lie: no quorum yet');
  s.complete('h2', by('h2').leaseId, Float32Array.of(0.5 + 1e-6, 0.25));
  t.deepEqual(done.map((d) => [[...d.result], d.agreed, d.disputed, d.replies]), [[[0.5, 0.25], false, [], 3]]);
  t.deepEqual(verdicts, ['liar:outvoted', 'h1:verified', 'h2:verified']);
  t.like(s.progress('J'), { state: 'done', disagreements: 1, disputed: 0, replies: 3 });
});

test('R = 3: a quorum that agrees first ends the shard; the third replica is not waited for', (t) => {
  const { s, done, workers } = voting();
  s.addJob({ id: 'J', items: 2, shardSize: 1, redundancy: 3 });
  workers('a', 'b', 'c');
  const [ga, gb, gc] = s.dispatch().filter((g) => g.shardIndex === 0);
  answer(s, ga as Grant, 2);
  answer(s, gb as Grant, 2);
  t.is(done.length, 1);
  t.deepEqual(answer(s, gc as Grant, 9), { kind: 'ignored', reason: 'duplicate' }, 'the late third result is a duplicate');
});

test('R = 2: a split asks a third worker, which settles it; items are tallied one by one', (t) => {
  const { s, done, verdicts, workers } = voting();
  s.addJob({ id: 'J', items: 3, shardSize: 3, redundancy: 2 });
  workers('a', 'b');
  s.addWorker('c'); // connected, no credit yet
  const [ga, gb] = s.dispatch();
  s.complete('a', (ga as Grant).leaseId, Float32Array.of(1, 2, 3));
  s.complete('b', (gb as Grant).leaseId, Float32Array.of(1, 7, 3));
  t.is(done.length, 0, 'item 1 is split one to one: a third opinion is needed');
  t.deepEqual(s.dispatch(), [], 'a and b have answered it');
  s.setCredit('c', 1);
  const [gc] = s.dispatch();
  t.like(gc, { workerId: 'c', shardIndex: 0, attempt: 3 });
  s.complete('c', (gc as Grant).leaseId, Float32Array.of(1, 2, 3));
  t.deepEqual(done.map((d) => [[...d.result], d.disputed, d.replies]), [[[1, 2, 3], [], 3]]);
  t.deepEqual(verdicts, ['a:verified', 'b:outvoted', 'c:verified']);
});

test('a split with nobody left to ask, or past 2R + 1 replies, leaves the unsettled items disputed', (t) => {
  const { s, done, verdicts, workers } = voting();
  s.addJob({ id: 'J', items: 2, shardSize: 2, redundancy: 2 });
  workers('a', 'b', 'c', 'd', 'e', 'f');
  const issued: Grant[] = s.dispatch();
  t.is(issued.length, 2);
  // Five distinct answers to item 0; everyone agrees on item 1.
  let v = 0;
  while (done.length === 0) {
    const g = issued.shift() ?? (s.dispatch()[0] as Grant);
    t.truthy(g, 'a further replica is issued while the limit allows');
    s.complete(g.workerId, g.leaseId, Float32Array.of(++v, 5));
  }
  t.is(v, 5, 'no more than 2R + 1 = 5 replies');
  t.deepEqual(done.map((d) => [d.result[0], d.result[1], d.disputed, d.agreed]), [[1, 5, [0], false]], 'item 0 disputed (its first group stands), item 1 settled');
  t.false(verdicts.some((x) => x.endsWith('outvoted')), 'nobody is outvoted on a disputed item');
  t.like(s.progress('J'), { state: 'done', disputed: 1 });
});

test('a split whose last possible replica is lost is disputed, not left waiting', (t) => {
  const { s, done, workers } = voting();
  s.addJob({ id: 'J', items: 1, shardSize: 1, redundancy: 2 });
  workers('a', 'b', 'c');
  const [ga, gb] = s.dispatch();
  answer(s, ga as Grant, 1);
  answer(s, gb as Grant, 2);
  const [gc] = s.dispatch();
  t.is((gc as Grant).workerId, 'c');
  s.removeWorker('c');
  t.deepEqual(done.map((d) => d.disputed), [[0]]);
});

test('adaptive: a result is replicated only when the spot check says so, and a split goes to a third worker', (t) => {
  const checks: string[] = [];
  let check = false;
  const { s, done, verdicts, workers } = voting({ spotCheck: (who) => (checks.push(who), check) });
  s.addJob({ id: 'A', items: 3, shardSize: 1, redundancy: 1, adaptive: true });
  workers('a', 'b', 'c');
  const first = s.dispatch();
  t.is(first.length, 3, 'one lease per shard');
  answer(s, first[0] as Grant, 1);
  t.deepEqual(done.map((d) => [d.index, d.replies]), [[0, 1]], 'not checked: accepted alone');
  check = true;
  answer(s, first[1] as Grant, 1);
  const [second] = s.dispatch();
  t.like(second, { shardIndex: 1 });
  t.not((second as Grant).workerId, (first[1] as Grant).workerId);
  answer(s, second as Grant, 4);
  const [third] = s.dispatch();
  t.like(third, { shardIndex: 1 });
  answer(s, third as Grant, 1);
  t.deepEqual(done.map((d) => [d.index, d.result[0], d.replies]), [[0, 1, 1], [1, 1, 3]]);
  t.deepEqual(checks, [(first[0] as Grant).workerId, (first[1] as Grant).workerId], 'asked once per shard, of its first worker');
  t.is(verdicts.filter((x) => x.endsWith('outvoted')).length, 1);
});

test('one vote per identity: two connections under one name never both answer a shard', (t) => {
  const { s, done } = voting();
  s.addJob({ id: 'J', items: 1, shardSize: 1, redundancy: 2 });
  s.addWorker('s1', [''], 'sybil');
  s.addWorker('s2', [''], 'sybil');
  s.setCredit('s1', 4);
  s.setCredit('s2', 4);
  const grants = s.dispatch();
  t.is(grants.length, 1, 'the second replica waits for another identity');
  answer(s, grants[0] as Grant, 1);
  t.deepEqual(s.dispatch(), []);
  s.addWorker('h', [''], 'honest');
  s.setCredit('h', 1);
  const [gh] = s.dispatch();
  answer(s, gh as Grant, 1);
  t.deepEqual(done.map((d) => d.workers), [['sybil', 'honest']]);
});
