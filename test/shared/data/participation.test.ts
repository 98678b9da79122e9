import test from 'ava';
import { createParticipation, cyclicPhases, markovTransitions, participationRates, type ParticipationSpec } from '../../../shared/data/participation.js';

const N = 200;
const ROUNDS = 4000;

function rates(spec: ParticipationSpec, seed = 3): { perClient: Float64Array; perRound: Float64Array; expected: Float64Array } {
  const part = createParticipation(spec, N, seed);
  const perClient = new Float64Array(N);
  const perRound = new Float64Array(ROUNDS);
  for (let r = 0; r < ROUNDS; r++) {
    const a = part.available(r);
    let on = 0;
    for (let i = 0; i < N; i++) {
      perClient[i] += a[i];
      on += a[i];
    }
    perRound[r] = on / N;
  }
  for (let i = 0; i < N; i++) perClient[i] /= ROUNDS;
  return { perClient, perRound, expected: part.rates };
}

const mean = (xs: ArrayLike<number>) => Array.from(xs).reduce((a, b) => a + b, 0) / xs.length;

test('participationRates: number, array and spread', (t) => {
  t.deepEqual(Array.from(participationRates(0.2, 3)), [0.2, 0.2, 0.2]);
  t.deepEqual(Array.from(participationRates([0.1, 1], 2)), [0.1, 1]);
  t.deepEqual(Array.from(participationRates({ min: 0.1, max: 0.5 }, 5)).map((x) => +x.toFixed(12)), [0.1, 0.2, 0.3, 0.4, 0.5]);
  t.deepEqual(Array.from(participationRates({ min: 0.1, max: 0.5 }, 1)), [0.1]);
  t.throws(() => participationRates(0, 2), { instanceOf: RangeError });
  t.throws(() => participationRates([0.1], 2), { instanceOf: RangeError });
  t.throws(() => participationRates({ min: 0.5, max: 0.1 }, 2), { instanceOf: RangeError });
});

for (const spec of [
  { kind: 'bernoulli', p: { min: 0.02, max: 0.9 } },
  { kind: 'markov', p: { min: 0.02, max: 0.9 }, q: 0.05 },
  { kind: 'markov', p: 0.2, q: 0.9 }, // down would exceed 1: capped and q rescaled
  { kind: 'cyclic', p: { min: 0.05, max: 0.9 }, period: 20 },
] as const satisfies readonly ParticipationSpec[]) {
  test(`${spec.kind} ${JSON.stringify(spec)}: long-run rate ≈ p, overall and per client`, (t) => {
    const { perClient, expected } = rates(spec);
    t.true(Math.abs(mean(perClient) - mean(expected)) < 0.02, `overall ${mean(perClient)} vs ${mean(expected)}`);
    let worst = 0;
    for (let i = 0; i < N; i++) {
      let target = expected[i];
      if (spec.kind === 'cyclic') {
        const ph = cyclicPhases(target, spec.period);
        target = ph.active / (ph.active + ph.inactive);
        t.true(Math.abs(target - expected[i]) <= 0.5 / spec.period + 1e-12 || ph.active === 1 || ph.inactive === 1);
      }
      worst = Math.max(worst, Math.abs(perClient[i] - target));
    }
    // bernoulli sd at p=.5 over 4000 rounds ≈ .008; markov with q=.05 mixes slower (≈ .04 worst case over 200 clients)
    t.true(worst < (spec.kind === 'markov' && spec.q === 0.05 ? 0.1 : 0.04), `worst per-client deviation ${worst}`);
  });
}

test('markov is stationary from round 0: the active fraction hovers at mean p every round', (t) => {
  const n = 4000;
  const part = createParticipation({ kind: 'markov', p: 0.3, q: 0.05 }, n, 11);
  for (const r of [0, 1, 5, 50, 500]) {
    const a = part.available(r);
    const frac = a.reduce((s, v) => s + v, 0) / n;
    t.true(Math.abs(frac - 0.3) < 0.03, `round ${r}: ${frac}`);
  }
});

test('markov transitions follow §1.3 (cap at 1, q rescaled, stationary p kept)', (t) => {
  t.deepEqual(markovTransitions(0.5, 0.1), { up: 0.1, down: 0.1 });
  const c = markovTransitions(0.2, 0.5); // 0.5·(1/0.2 − 1) = 2 > 1
  t.is(c.down, 1);
  t.true(Math.abs(c.up / (c.up + c.down) - 0.2) < 1e-12);
  const flips = rates({ kind: 'markov', p: 0.1, q: 0.02 });
  t.true(Math.abs(mean(flips.perClient) - 0.1) < 0.02);
});

test('cyclic: exact duty cycle, periodic, starts inactive with phase in the inactive part', (t) => {
  const L = 10;
  const part = createParticipation({ kind: 'cyclic', p: 0.3, period: L }, 50, 5);
  const rows: Uint8Array[] = [];
  for (let r = 0; r < 3 * L; r++) rows.push(part.available(r));
  const { active, inactive } = cyclicPhases(0.3, L);
  t.deepEqual({ active, inactive }, { active: 3, inactive: 7 });
  for (let i = 0; i < 50; i++) {
    const seq = rows.map((row) => row[i]);
    const firstOn = seq.indexOf(1);
    t.true(firstOn >= 0 && firstOn < inactive, `client ${i} first on at ${firstOn}`);
    for (let r = 0; r < firstOn; r++) t.is(seq[r], 0);
    for (let r = firstOn; r + active + inactive < seq.length; r++) t.is(seq[r], seq[r + active + inactive]);
    t.is(seq.slice(firstOn, firstOn + L).reduce((a, b) => a + b, 0), active);
  }
  // phases are spread: not every client switches on at the same round
  t.true(new Set(Array.from({ length: 50 }, (_, i) => rows.findIndex((row) => row[i] === 1))).size > 3);
});

test('deterministic per seed; rounds in order, skipping ahead equals stepping, going back throws', (t) => {
  const spec: ParticipationSpec = { kind: 'markov', p: 0.4, q: 0.1 };
  const a = createParticipation(spec, 30, 1);
  const b = createParticipation(spec, 30, 1);
  const c = createParticipation(spec, 30, 2);
  const seqA = Array.from({ length: 20 }, (_, r) => Array.from(a.available(r)).join(''));
  t.deepEqual(seqA, Array.from({ length: 20 }, (_, r) => Array.from(b.available(r)).join('')));
  t.notDeepEqual(seqA, Array.from({ length: 20 }, (_, r) => Array.from(c.available(r)).join('')));
  const d = createParticipation(spec, 30, 1);
  t.is(Array.from(d.available(19)).join(''), seqA[19]);
  t.is(Array.from(d.available(19)).join(''), seqA[19]);
  t.throws(() => d.available(3), { instanceOf: RangeError });
  const copy = d.available(19);
  copy.fill(7);
  t.is(Array.from(d.available(19)).join(''), seqA[19]);
  t.throws(() => createParticipation({ kind: 'markov', p: 0.4, q: 0 }, 3, 1), { instanceOf: RangeError });
  t.throws(() => createParticipation({ kind: 'cyclic', p: 0.4, period: 0 }, 3, 1), { instanceOf: RangeError });
});
