import test from 'ava';
import { argmax, averageRanks, cohenKappa, groupAgreement, kendallTauB, preference, spearmanRho, type Preference } from '../../../shared/scoring/agreement.js';
import { mulberry32 } from '../../../shared/random.js';

const close = (a: number, b: number, eps = 1e-12): boolean => Math.abs(a - b) <= eps;

test('preference: chosen, rejected, or a tie of its own', (t) => {
  t.is(preference(2, 1), 'chosen');
  t.is(preference(1, 2), 'rejected');
  t.is(preference(1, 1), 'tie');
});

test("Cohen's κ, hand-computed: p_o = 4/6, p_e = 14/36, κ = 5/11", (t) => {
  const a: Preference[] = ['chosen', 'chosen', 'rejected', 'tie', 'chosen', 'rejected'];
  const b: Preference[] = ['chosen', 'rejected', 'rejected', 'tie', 'chosen', 'chosen'];
  const k = cohenKappa(a, b);
  t.is(k.n, 6);
  t.true(close(k.agreement, 4 / 6));
  // p_e = (3/6)(3/6) + (2/6)(2/6) + (1/6)(1/6) = 14/36; κ = (24/36 − 14/36) / (22/36) = 5/11.
  t.true(close(k.kappa, 5 / 11), `${k.kappa}`);
  t.true(close(cohenKappa(a, a).kappa, 1));
});

test("Cohen's κ degenerate cases: one shared constant label is κ = 1; no cases is NaN; chance-level is 0", (t) => {
  t.deepEqual(cohenKappa(['chosen', 'chosen'], ['chosen', 'chosen']), { n: 2, agreement: 1, kappa: 1 });
  // Each side constant but different: p_o = 0, p_e = 0, κ = 0.
  t.deepEqual(cohenKappa(['chosen', 'chosen'], ['rejected', 'rejected']), { n: 2, agreement: 0, kappa: 0 });
  // One side constant: p_e = p_b(chosen) = 1/2, p_o = 1/2 → κ = 0.
  t.deepEqual(cohenKappa(['chosen', 'chosen'], ['chosen', 'rejected']), { n: 2, agreement: 0.5, kappa: 0 });
  const empty = cohenKappa([], []);
  t.true(Number.isNaN(empty.kappa) && Number.isNaN(empty.agreement));
  t.throws(() => cohenKappa(['a'], []), { instanceOf: RangeError });
});

test('average ranks share ties', (t) => {
  t.deepEqual(averageRanks([10, 20, 20, 30]), [1, 2.5, 2.5, 4]);
  t.deepEqual(averageRanks([3, 1, 3, 3]), [3, 1, 3, 3]);
});

test('Kendall τ-b and Spearman ρ with ties, hand-computed', (t) => {
  // Pairs: (0,1) C, (0,2) C, (0,3) C, (1,2) tied in x, (1,3) D, (2,3) tied in y: n_c = 3, n_d = 1,
  // n_0 = 6, n_1 = 1, n_2 = 1 → τ-b = 2 / √(5 · 5) = 0.4.
  const x = [1, 2, 2, 3];
  const y = [1, 3, 2, 2];
  t.true(close(kendallTauB(x, y), 0.4), `${kendallTauB(x, y)}`);
  // Ranks x [1, 2.5, 2.5, 4], y [1, 4, 2.5, 2.5]: deviations [−1.5, 0, 0, 1.5] and [−1.5, 1.5, 0, 0] → 2.25 / 4.5.
  t.true(close(spearmanRho(x, y), 0.5), `${spearmanRho(x, y)}`);
  t.true(close(kendallTauB([1, 2, 3], [3, 2, 1]), -1));
  t.true(close(spearmanRho([1, 2, 3], [10, 20, 30]), 1));
});

test('τ-b and ρ are undefined (NaN) for a constant side or fewer than two items', (t) => {
  t.true(Number.isNaN(kendallTauB([1, 1, 1], [1, 2, 3])));
  t.true(Number.isNaN(spearmanRho([1, 2, 3], [4, 4, 4])));
  t.true(Number.isNaN(kendallTauB([1], [1])));
  t.true(Number.isNaN(spearmanRho([], [])));
});

/** τ-b by its definition, over all O(n²) pairs: the reference for the O(n log n) version. */
function tauBReference(x: readonly number[], y: readonly number[]): number {
  let c = 0;
  let d = 0;
  let tx = 0;
  let ty = 0;
  for (let i = 0; i < x.length; i++) {
    for (let j = i + 1; j < x.length; j++) {
      const s = Math.sign(x[i] - x[j]) * Math.sign(y[i] - y[j]);
      if (s > 0) c++;
      else if (s < 0) d++;
      else {
        if (x[i] === x[j]) tx++;
        if (y[i] === y[j]) ty++;
      }
    }
  }
  const n0 = (x.length * (x.length - 1)) / 2;
  // Pairs tied in both count in both tx and ty here, as n_1 and n_2 do.
  return (c - d) / Math.sqrt((n0 - tx) * (n0 - ty));
}

test('τ-b matches its O(n²) definition on random data full of ties', (t) => {
  const rand = mulberry32(7);
  for (let trial = 0; trial < 200; trial++) {
    const n = 2 + Math.floor(rand() * 60);
    const levels = 1 + Math.floor(rand() * 8);
    const x = Array.from({ length: n }, () => Math.floor(rand() * levels));
    const y = Array.from({ length: n }, (_, i) => (rand() < 0.5 ? x[i] : Math.floor(rand() * levels)));
    const want = tauBReference(x, y);
    const got = kendallTauB(x, y);
    if (Number.isNaN(want)) t.true(Number.isNaN(got), `trial ${trial}`);
    else t.true(close(got, want, 1e-9), `trial ${trial}: ${got} vs ${want}`);
  }
});

test('argmax: first on ties', (t) => {
  t.is(argmax([1, 3, 3, 2]), 1);
  t.is(argmax([5]), 0);
});

test('group agreement: mean τ-b and ρ over groups where defined, top-1 over groups of two or more', (t) => {
  const g = groupAgreement([
    // Both pick index 1 (b's tie 5, 5 → the first). τ-b: 2 concordant, 1 tied in y → 2/√(3·2); ρ = 1.5/√3.
    { a: [1, 3, 2], b: [0, 5, 5] },
    // a is constant: τ-b and ρ undefined, left out of their means; picks 0 vs 1 differ.
    { a: [2, 2], b: [1, 3] },
    // One item: not counted at all.
    { a: [1], b: [2] },
  ]);
  t.is(g.groups, 2);
  t.is(g.tauGroups, 1);
  t.is(g.rhoGroups, 1);
  t.true(close(g.tau, 2 / Math.sqrt(6)), `${g.tau}`);
  t.true(close(g.rho, 1.5 / Math.sqrt(3)), `${g.rho}`);
  t.is(g.top1, 0.5);
  const none = groupAgreement([{ a: [1], b: [1] }]);
  t.is(none.groups, 0);
  t.true(Number.isNaN(none.top1) && Number.isNaN(none.tau));
});
