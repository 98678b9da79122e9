// Peer-to-peer MoNNA / NNA (simulations/engine/p2p.ts, docs/algorithms.md §2.1) keeps §2.4's invariants 1 and 5, is
// deterministic per seed, and on the softmax Gaussian mixture resists the scaled sign flip that collapses D-SGD.
import test from 'ava';
import { runP2P, type P2PRunSpec } from '../../simulations/engine/p2p.js';
import { runSync } from '../../simulations/engine/sync.js';
import { createQuadraticTask } from '../../simulations/tasks/quadratic.js';
import { createSoftmaxTask } from '../../simulations/tasks/softmax.js';

const quad = () => createQuadraticTask({ numClients: 6, dim: 5, seed: 7 });
const base = { experiment: 'e', algorithm: 'a', seed: 2, batchSize: 1, logEvery: 5 };

test('§2.4 invariant 5: β = 0, f = 0, complete communication → all honest models identical after round 1', (t) => {
  const r = runP2P({ ...base, task: quad(), rounds: 1, lr: 0.3, momentum: 0 });
  t.is(r.models.length, 6);
  for (const m of r.models.slice(1)) t.deepEqual(m, r.models[0]);
  // And they moved: the local steps differed, the mixing made them equal.
  t.true(r.models[0]!.some((v) => v !== 0));
  // Also with Byzantine-free NNA over more rounds and momentum, f = 0 keeps them equal.
  const r2 = runP2P({ ...base, task: quad(), rounds: 7, lr: 0.3, momentum: 0.9 });
  for (const m of r2.models.slice(1)) t.deepEqual(m, r2.models[0]);
});

test('§2.4 invariant 1: f = 0 → NNA is the plain mean, so P2P equals sync D-SGD averaging (same seed)', (t) => {
  for (const momentum of [0, 0.5]) {
    const rounds = 20;
    const p2p = runP2P({ ...base, task: quad(), rounds, lr: 0.2, momentum });
    const sync = runSync({
      ...base, task: quad(), rounds, participation: null, clientMomentum: momentum > 0,
      local: { steps: 1, lr: 0.2, batchSize: 1, momentum },
      pipeline: { weighting: 'uniform', robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1 } },
    });
    t.is(p2p.rows.length, sync.rows.length);
    p2p.rows.forEach((row, k) => {
      const s = sync.rows[k]!;
      t.is(row.step, s.step);
      t.true(Math.abs(row.loss! - s.loss!) <= 1e-5 * Math.max(1, s.loss!), `β ${momentum} step ${row.step}: ${row.loss} vs ${s.loss}`);
    });
    t.is(p2p.updates, sync.updates);
  }
});

test('determinism per seed; different seeds differ', (t) => {
  const spec: P2PRunSpec = { ...base, task: quad(), rounds: 15, lr: 0.2, lrDecay: 50, momentum: 0.9, byzantine: { nodes: 2, attack: 'alie', z: 1 } };
  const a = runP2P(spec);
  const b = runP2P({ ...spec, task: quad() });
  t.deepEqual(a.rows, b.rows);
  t.deepEqual(a.models, b.models);
  const c = runP2P({ ...spec, seed: 3 });
  t.notDeepEqual(a.rows.map((r) => r.loss), c.rows.map((r) => r.loss));
});

test('rejects an NNA f the received set cannot tolerate and unknown attacks', (t) => {
  t.throws(() => runP2P({ ...base, task: quad(), rounds: 1, lr: 0.1, momentum: 0, f: 3 }), { message: /needs more than 6/ });
  t.throws(() => runP2P({ ...base, task: quad(), rounds: 1, lr: 0.1, momentum: 0, byzantine: { nodes: 1, attack: 'label-flip' as 'none' } }), { message: /unknown attack/ });
});

test('softmax, n = 10, f = 2: scaled sign flip collapses D-SGD averaging, MoNNA (β = 0.9) stays near attack-free', (t) => {
  const task = createSoftmaxTask({ numClients: 8, samplesPerClient: 100, alpha: 1, seed: 5, testSamples: 2000 });
  const common = { experiment: 'p2p', seed: 1, task, rounds: 100, lr: 0.75, lrDecay: 50, batchSize: 25, logEvery: 25 };
  const clean = runP2P({ ...common, algorithm: 'dsgd-clean', momentum: 0.9, f: 0 });
  const dsgd = runP2P({ ...common, algorithm: 'dsgd', momentum: 0.9, f: 0, byzantine: { nodes: 2, attack: 'scaled-sign-flip' } });
  const monna = runP2P({ ...common, algorithm: 'monna', momentum: 0.9, f: 2, byzantine: { nodes: 2, attack: 'scaled-sign-flip' } });
  const nnaClean = runP2P({ ...common, algorithm: 'monna-clean', momentum: 0.9, f: 2, byzantine: { nodes: 2, attack: 'none' } });
  t.log(`accuracy: clean ${clean.finalAccuracy}, D-SGD under scaled SF ${dsgd.finalAccuracy}, MoNNA under scaled SF ${monna.finalAccuracy}, MoNNA no attack ${nnaClean.finalAccuracy}`);
  t.true(clean.finalAccuracy! > 0.6, `clean ${clean.finalAccuracy}`);
  t.true(dsgd.finalAccuracy! < 0.25, `D-SGD ${dsgd.finalAccuracy}`);
  t.true(monna.finalAccuracy! > clean.finalAccuracy! - 0.05, `MoNNA ${monna.finalAccuracy} vs clean ${clean.finalAccuracy}`);
  t.true(nnaClean.finalAccuracy! > clean.finalAccuracy! - 0.05);
  // Rows evaluate honest node 0 at 0, 25, …, 100.
  t.deepEqual(monna.rows.map((r) => r.step), [0, 25, 50, 75, 100]);
  t.is(monna.updates, 8 * 100);
  // The mean-of-honest evaluation is available too.
  const mean = runP2P({ ...common, algorithm: 'monna', momentum: 0.9, f: 2, byzantine: { nodes: 2, attack: 'scaled-sign-flip' }, evaluate: 'mean' });
  t.true(mean.finalAccuracy! > clean.finalAccuracy! - 0.05);
});
