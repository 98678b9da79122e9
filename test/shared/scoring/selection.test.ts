import test from 'ava';
import { bordaVotes, pairAccuracy, selectPerGroup, SELECT_MODES, type Candidate } from '../../../shared/scoring/selection.js';

test('pair accuracy: ties count as wrong', (t) => {
  t.is(pairAccuracy([{ chosen: 2, rejected: 1 }, { chosen: 1, rejected: 1 }, { chosen: 0, rejected: 3 }, { chosen: 5, rejected: -1 }]), 0.5);
  t.true(Number.isNaN(pairAccuracy([])));
});

const items: Candidate[] = [
  { id: 'a1', group: 'q1', score: 0.2, answer: '4' },
  { id: 'a2', group: 'q1', score: 0.9, answer: '5' },
  { id: 'a3', group: 'q1', score: 0.3, answer: '4' },
  { id: 'b1', group: 'q2', score: 1.0, answer: 'x' },
  { id: 'b2', group: 'q2', score: 1.0, answer: 'y' },
];

test('best-of-n picks the highest score per group, first on ties', (t) => {
  t.deepEqual([...selectPerGroup(items, 'best-of-n')], [['q1', 'a2'], ['q2', 'b1']]);
});

test('majority counts answers; weighted-majority sums scores', (t) => {
  t.deepEqual([...selectPerGroup(items, 'majority')], [['q1', '4'], ['q2', 'x']]);
  // q1: "4" → 0.5, "5" → 0.9
  t.deepEqual([...selectPerGroup(items, 'weighted-majority')], [['q1', '5'], ['q2', 'x']]);
});

test('voting without answers is a clear error', (t) => {
  t.throws(() => selectPerGroup([{ id: 'z', group: 'g', score: 1 }], 'majority'), { instanceOf: RangeError, message: /"z" of group "g" has no answer/ });
});

test('SELECT_MODES lists every mode, the original three first', (t) => {
  t.deepEqual([...SELECT_MODES], ['best-of-n', 'majority', 'weighted-majority', 'mean-logprob', 'self-certainty', 'certainty-vote']);
});

// One group of four: self-certainty ranks c1 (0.9) > c3 (0.7) > c2 (0.5) > c4 (0.2).
const lp: Candidate[] = [
  { id: 'c1', group: 'q', score: 0, answer: 'A', logprobMean: -1.0, selfCertainty: 0.9 },
  { id: 'c2', group: 'q', score: 0, answer: 'B', logprobMean: -0.5, selfCertainty: 0.5 },
  { id: 'c3', group: 'q', score: 0, answer: 'B', logprobMean: -0.8, selfCertainty: 0.7 },
  { id: 'c4', group: 'q', score: 0, answer: 'A', logprobMean: -0.5, selfCertainty: 0.2 },
];

test('mean-logprob and self-certainty pick the highest value per group, first on ties', (t) => {
  // c2 and c4 tie at −0.5: c2 comes first.
  t.deepEqual([...selectPerGroup(lp, 'mean-logprob')], [['q', 'c2']]);
  t.deepEqual([...selectPerGroup(lp, 'self-certainty')], [['q', 'c1']]);
  const tied: Candidate[] = [
    { id: 'x', group: 'g', score: 0, selfCertainty: 1 },
    { id: 'y', group: 'g', score: 0, selfCertainty: 1 },
  ];
  t.deepEqual([...selectPerGroup(tied, 'self-certainty')], [['g', 'x']]);
});

test('certainty-vote: Borda votes (N − r + 1)^p by self-certainty rank, hand-computed for p = 0.5, 1, 2', (t) => {
  // Ranks: c1 → 4^p for A, c3 → 3^p for B, c2 → 2^p for B, c4 → 1 for A.
  t.deepEqual(bordaVotes(lp, 'q', 1), [['A', 4], ['B', 3], ['B', 2], ['A', 1]]);
  // p = 0.5: A = 2 + 1 = 3, B = √3 + √2 ≈ 3.146 → B.
  t.deepEqual([...selectPerGroup(lp, 'certainty-vote')], [['q', 'B']]);
  t.deepEqual([...selectPerGroup(lp, 'certainty-vote', { bordaP: 0.5 })], [['q', 'B']]);
  // p = 1: A = 4 + 1 = 5, B = 3 + 2 = 5, a tie → A, the answer seen first in input order.
  t.deepEqual([...selectPerGroup(lp, 'certainty-vote', { bordaP: 1 })], [['q', 'A']]);
  // p = 2: A = 16 + 1 = 17, B = 9 + 4 = 13 → A.
  t.deepEqual([...selectPerGroup(lp, 'certainty-vote', { bordaP: 2 })], [['q', 'A']]);
});

test('certainty-vote: ties between answers go to the one first in input order, not in rank order', (t) => {
  // p = 0: every vote is 1, X and Y tie; Y ranks first (higher self-certainty) but X comes first in the input.
  const g: Candidate[] = [
    { id: 'd1', group: 'g', score: 0, answer: 'X', selfCertainty: 0.1 },
    { id: 'd2', group: 'g', score: 0, answer: 'Y', selfCertainty: 0.9 },
  ];
  t.deepEqual([...selectPerGroup(g, 'certainty-vote', { bordaP: 0 })], [['g', 'X']]);
});

test('certainty-vote: equal self-certainty keeps input order in the ranking (a stable sort)', (t) => {
  // e1 and e2 tie at 0.5. Stable: e1 rank 1 (3 votes for P), e2 rank 2 (2 for Q), e3 rank 3 (1 for Q) → P 3, Q 3 → P.
  // Were e2 ranked first, Q would get 3 + 1 = 4 against P's 2.
  const g: Candidate[] = [
    { id: 'e1', group: 'g', score: 0, answer: 'P', selfCertainty: 0.5 },
    { id: 'e2', group: 'g', score: 0, answer: 'Q', selfCertainty: 0.5 },
    { id: 'e3', group: 'g', score: 0, answer: 'Q', selfCertainty: 0.1 },
  ];
  t.deepEqual(bordaVotes(g, 'g', 1), [['P', 3], ['Q', 2], ['Q', 1]]);
  t.deepEqual([...selectPerGroup(g, 'certainty-vote', { bordaP: 1 })], [['g', 'P']]);
});

test('groups are selected independently, in first-seen order', (t) => {
  const two: Candidate[] = [
    { id: 'a', group: 'g2', score: 0, answer: 'u', selfCertainty: 1, logprobMean: -3 },
    { id: 'b', group: 'g1', score: 0, answer: 'v', selfCertainty: 2, logprobMean: -1 },
    { id: 'c', group: 'g2', score: 0, answer: 'w', selfCertainty: 3, logprobMean: -2 },
  ];
  t.deepEqual([...selectPerGroup(two, 'mean-logprob')], [['g2', 'c'], ['g1', 'b']]);
  t.deepEqual([...selectPerGroup(two, 'certainty-vote')], [['g2', 'w'], ['g1', 'v']]);
});

test('the log-prob modes need their field, certainty-vote an answer, and a sane exponent', (t) => {
  t.throws(() => selectPerGroup([{ id: 'z', group: 'g', score: 1 }], 'mean-logprob'), { instanceOf: RangeError, message: /"z" of group "g" has no mean log-prob/ });
  t.throws(() => selectPerGroup([{ id: 'z', group: 'g', score: 1, answer: 'a' }], 'certainty-vote'), { instanceOf: RangeError, message: /"z" of group "g" has no self-certainty/ });
  t.throws(() => selectPerGroup([{ id: 'z', group: 'g', score: 1, selfCertainty: 1 }], 'certainty-vote'), { instanceOf: RangeError, message: /"z" of group "g" has no answer/ });
  t.throws(() => selectPerGroup(lp, 'certainty-vote', { bordaP: Number.NaN }), { instanceOf: RangeError, message: /exponent/ });
});
