import test from 'ava';
import { pairAccuracy, selectPerGroup, type Candidate } from '../../../shared/scoring/selection.js';

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
