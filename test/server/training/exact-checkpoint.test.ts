// Exact checkpoints of the training drivers (issue 12): a driver snapshot taken at any point, stored the way
// training-job.ts stores a checkpoint (outlineVectors → packState → bytes → unpackState → inlineVectors) or as JSON,
// restores into a driver that goes on bit for bit like the original — server Adam / SGD momentum moments, the cclip
// centre, FedAU counters, and for async the partly filled buffer and the shards in flight. Old snapshots without the
// new fields still restore (fresh optimizer, as before); malformed ones are a RangeError.
import test from 'ava';
import { AsyncDriver, type AsyncDriverConfig, type AsyncDriverSnapshot } from '../../../shared/training/async-driver.js';
import { inlineVectors, outlineVectors, packState, unpackState } from '../../../server/training/persist.js';
import { SyncDriver, type SyncDriverConfig, type SyncDriverSnapshot } from '../../../shared/training/sync-driver.js';
import type { DispatchOrder } from '../../../shared/training/types.js';
import type { PipelineSpec } from '../../../shared/aggregation/pipeline.js';
import { gaussianCenters, quadratic, type Quadratic } from '../../shared/training/quadratic.js';

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** What training-job.ts does to a driver snapshot on checkpoint and on resume, through the packed bytes. */
function throughCheckpoint<S extends { weights: Float32Array; momenta: Array<[number, Float32Array]> }>(snap: S): S {
  const { weights, momenta, ...rest } = snap;
  const vectors = [weights, ...momenta.map(([, v]) => v)];
  const doubles: Float64Array[] = [];
  const header = { snapshot: outlineVectors(rest, vectors, doubles), momentumClients: momenta.map(([c]) => c) };
  const bytes = packState({ header, vectors, doubles });
  const u = unpackState(bytes) as { header: typeof header; vectors: Float32Array[]; doubles?: Float64Array[] };
  const [w, ...m] = u.vectors;
  const back = inlineVectors(u.header.snapshot, u.vectors, u.doubles ?? []) as Record<string, unknown>;
  return { ...back, weights: w, momenta: u.header.momentumClients.map((c, i) => [c, m[i]]) } as unknown as S;
}

const pipelines: Array<[string, PipelineSpec]> = [
  ['fedau, nnm+cclip, adam', { weighting: 'fedau', robust: { mix: 'nnm', rule: 'cclip', f: 1, tau: 0.3 }, server: { optimizer: 'adam', lr: 0.05 } }],
  ['samples, nnm+cclip, sgd momentum', { weighting: 'samples', robust: { mix: 'nnm', rule: 'cclip', f: 1, tau: 0.5, iters: 2 }, server: { optimizer: 'sgd', lr: 0.5, momentum: 0.9 } }],
];

/** Quadratic clients that also return a worker momentum (−update), so momenta travel as in MoNNA. */
function clients(): Quadratic {
  const q = quadratic(gaussianCenters(8, 4, 1, 3), { eta: 0.4, noise: 0, seed: 1 });
  return { ...q, train: (o: DispatchOrder) => ({ ...q.train(o), momentum: q.train(o).update.map((v) => -v) }) };
}

for (const [name, pipeline] of pipelines) {
  test(`sync (${name}): restored from a checkpoint after any round, even with one open, the run ends bit-identical`, (t) => {
    const cfg: SyncDriverConfig = { numClients: 8, clientsPerRound: 4, rounds: 12, participation: { kind: 'bernoulli', p: 0.8 }, seed: 3, pipeline };
    const q = clients();
    const round = (d: SyncDriver) => {
      for (const o of d.startRound(0)) d.accept(q.train(o), 0);
      return d.closeRound(0).weights;
    };
    const full = new SyncDriver(cfg, new Float32Array(4));
    const want: Float32Array[] = [];
    while (!full.done) want.push(round(full));
    for (let k = 0; k < cfg.rounds; k++) {
      for (const open of [false, true]) {
        const a = new SyncDriver(cfg, new Float32Array(4));
        for (let r = 0; r < k; r++) round(a);
        if (open) a.startRound(0);
        for (const snap of [throughCheckpoint(a.binarySnapshot()), JSON.parse(JSON.stringify(a.snapshot())) as SyncDriverSnapshot]) {
          const b = SyncDriver.restore(cfg, snap);
          const got: Float32Array[] = [];
          while (!b.done) got.push(round(b));
          t.true(got.every((w, i) => sameBits(w, want[k + i]!)), `round ${k}${open ? ' (open)' : ''}`);
        }
      }
    }
  });
}

/** FIFO delivery (one worker running one shard at a time): every fill's orders queue up, the oldest arrives next. */
function fifo(d: AsyncDriver, q: Quadratic, queue: DispatchOrder[], stopAfter = Infinity): Float32Array[] {
  const steps: Float32Array[] = [];
  queue.push(...d.fill(0));
  for (let n = 0; n < stopAfter && !d.done && queue.length > 0; n++) {
    const r = d.accept(q.train(queue.shift()!), 0);
    if (r.stepped) steps.push(r.weights);
    queue.push(...d.fill(0));
  }
  return steps;
}

for (const [name, pipeline] of pipelines) {
  test(`async (${name}): restored at any arrival (mid-buffer, shards in flight on older versions), the run ends bit-identical`, (t) => {
    const cfg: AsyncDriverConfig = {
      numClients: 8, concurrency: 5, buffer: 3, staleness: { kind: 'poly', exponent: 0.5 }, maxStaleness: 3, steps: 10, seed: 4,
      participation: { kind: 'bernoulli', p: 0.9 }, pipeline,
    };
    const q = clients();
    const want = fifo(new AsyncDriver(cfg, new Float32Array(4)), q, []);
    t.is(want.length, 10);
    let sawOld = false;
    for (let k = 0; k < 40; k++) {
      const a = new AsyncDriver(cfg, new Float32Array(4));
      const queue: DispatchOrder[] = [];
      const before = fifo(a, q, queue, k);
      if (a.done) break;
      const binary = a.binarySnapshot();
      sawOld ||= (binary.versions?.length ?? 0) > 0 && (binary.buffer?.updates.length ?? 0) > 0;
      for (const snap of [throughCheckpoint(binary), JSON.parse(JSON.stringify(a.snapshot())) as AsyncDriverSnapshot]) {
        const b = AsyncDriver.restore(cfg, snap);
        t.is(b.bufferedCount, a.bufferedCount);
        t.deepEqual(b.stats, a.stats);
        // The restored driver's first fill sends exactly the shards the original has in flight, in order.
        const again: DispatchOrder[] = [];
        const after = fifo(b, q, again, 0);
        t.deepEqual(after, []);
        t.deepEqual(again.map((o) => [o.client, o.version]), queue.map((o) => [o.client, o.version]), `arrival ${k}`);
        t.true(again.every((o, i) => sameBits(o.weights, queue[i]!.weights) && sameBits(o.momentum ?? new Float32Array(0), queue[i]!.momentum ?? new Float32Array(0))));
        const rest = fifo(b, q, again);
        const got = [...before, ...rest];
        t.is(got.length, want.length, `arrival ${k}`);
        t.true(got.every((w, i) => sameBits(w, want[i]!)), `arrival ${k}: the model sequence differs`);
      }
    }
    t.true(sawOld, 'some snapshot had both a partly filled buffer and shards in flight on an older version');
  });
}

test('a snapshot from before exact checkpoints (no server, buffer or in-flight state) restores as before: fresh optimizer, nothing in flight', (t) => {
  const pipeline = pipelines[0]![1];
  const scfg: SyncDriverConfig = { numClients: 8, clientsPerRound: 4, rounds: 6, participation: null, seed: 3, pipeline };
  const q = clients();
  const s = new SyncDriver(scfg, new Float32Array(4));
  for (let r = 0; r < 3; r++) {
    for (const o of s.startRound(0)) s.accept(q.train(o), 0);
    s.closeRound(0);
  }
  const { server: _s, ...oldSync } = s.snapshot();
  const rs = SyncDriver.restore(scfg, oldSync);
  t.is(rs.aggregator.optimizer.steps, 0);
  t.is(rs.aggregator.robust.clippingCenter, null);
  t.is(rs.version, 3);
  const acfg: AsyncDriverConfig = { numClients: 8, concurrency: 4, buffer: 3, staleness: { kind: 'constant' }, maxStaleness: null, steps: 6, seed: 1, participation: null, pipeline };
  const a = new AsyncDriver(acfg, new Float32Array(4));
  fifo(a, q, [], 7);
  const { server: _a, buffer: _b, inFlight: _i, versions: _v, stats: _t, ...oldAsync } = a.snapshot();
  const ra = AsyncDriver.restore(acfg, oldAsync);
  t.deepEqual(ra.inFlightClients, []);
  t.is(ra.bufferedCount, 0);
  t.is(ra.aggregator.optimizer.steps, 0);
  const from = ra.version;
  t.true(from > 0);
  t.is(fifo(ra, q, []).length, 6 - from);
});

test('malformed driver snapshots are a RangeError naming the problem', (t) => {
  const pipeline = pipelines[0]![1];
  const acfg: AsyncDriverConfig = { numClients: 8, concurrency: 4, buffer: 3, staleness: { kind: 'constant' }, maxStaleness: null, steps: 6, seed: 1, participation: null, pipeline };
  const q = clients();
  const a = new AsyncDriver(acfg, new Float32Array(4));
  fifo(a, q, [], 7);
  const good = a.snapshot();
  t.true((good.versions?.length ?? 0) > 0, 'a shard in flight on an older version');
  const cases: Array<[string, Partial<AsyncDriverSnapshot>, RegExp]> = [
    ['unknown client in flight', { inFlight: [{ client: 8, version: 0 }] }, /unknown client/],
    ['twice in flight', { inFlight: [{ client: 1, version: good.version }, { client: 1, version: good.version }] }, /two shards/],
    ['version ahead of the model', { inFlight: [{ client: 1, version: good.version + 1 }] }, /model is at/],
    ['weights of an older version missing', { versions: [] }, /no weights for version/],
    ['short weights of an older version', { versions: good.versions!.map(([v]) => [v, [1, 2]]) }, /have 2 values/],
    ['too many in flight', { inFlight: [0, 1, 2, 3, 4].map((c) => ({ client: c, version: good.version })) }, /concurrency/],
    ['buffer of the wrong length', { buffer: { ...good.buffer!, dim: 3, updates: good.buffer!.updates.map(() => [1, 2, 3]) } }, /has 4|model has 4/],
    ['buffer arrivals and updates disagree', { buffer: { ...good.buffer!, arrivals: [] } }, /arrivals/],
    ['cclip center of the wrong length', { server: { ...good.server!, robust: { rule: 'cclip', center: [1, 2] } } }, /model has 4/],
    ['another rule', { server: { ...good.server!, robust: { rule: 'mean', center: null } } }, /rule/],
    ['another optimizer', { server: { ...good.server!, optimizer: { optimizer: 'sgd', steps: 1, first: null, second: null } } }, /sgd optimizer/],
    ['moment of the wrong length', { server: { ...good.server!, optimizer: { ...good.server!.optimizer, first: [0] } } }, /model has 4/],
    ['a string where a moment goes', { server: { ...good.server!, optimizer: { ...good.server!.optimizer, first: 'x' as unknown as number[] } } }, /list of numbers/],
  ];
  for (const [what, patch, message] of cases) t.throws(() => AsyncDriver.restore(acfg, { ...good, ...patch }), { instanceOf: RangeError, message }, what);
  // Out-of-range vector references in a stored header are refused by inlineVectors.
  t.throws(() => inlineVectors({ center: { $f32: 3 } }, [new Float32Array(1)], []), { message: /\$f32 reference 3/ });
  t.throws(() => inlineVectors({ m: { $f64: 0 } }, [], []), { message: /\$f64 reference 0/ });
  t.throws(() => outlineVectors({ x: new Int32Array(1) }, [], []), { message: /Int32Array/ });
});

test('packState: float64 vectors round-trip bit for bit; a state without them packs byte for byte as before', (t) => {
  const doubles = [Float64Array.of(-0, 5e-324, 1 / 3, -1.7976931348623157e308), new Float64Array(0)];
  const vectors = [Float32Array.of(1.5, -0)];
  const u = unpackState(packState({ header: { a: 1 }, vectors, doubles }));
  t.is(u.doubles?.length, 2);
  t.true(Buffer.from(u.doubles![0]!.buffer).equals(Buffer.from(doubles[0]!.buffer)));
  t.is(u.doubles![1]!.length, 0);
  t.true(sameBits(u.vectors[0]!, vectors[0]!));
  // Without float64 vectors the header has no lengths64: old readers and old files see the same bytes.
  t.deepEqual(packState({ header: { a: 1 }, vectors, doubles: [] }), packState({ header: { a: 1 }, vectors }));
  t.is(unpackState(packState({ header: null, vectors })).doubles, undefined);
});
