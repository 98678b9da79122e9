import test from 'ava';
import { bestOfReport, bestOfRowScore, MATH_PRM_WEIGHT, rewardBenchV1, subsetAccuracies } from '../../../shared/scoring/rewardbench.js';

/** `right` correct pairs then `wrong` wrong ones (the first wrong one a tie, which counts as wrong). */
function pairs(subset: string, right: number, wrong: number): { subset: string; chosen: number; rejected: number }[] {
  const out: { subset: string; chosen: number; rejected: number }[] = [];
  for (let i = 0; i < right; i++) out.push({ subset, chosen: 1, rejected: 0 });
  for (let i = 0; i < wrong; i++) out.push(i === 0 ? { subset, chosen: 0.5, rejected: 0.5 } : { subset, chosen: 0, rejected: 1 });
  return out;
}

const fixture = [
  ...pairs('alpacaeval-easy', 3, 1), // 0.75 of 4
  ...pairs('mt-bench-med', 1, 1), // 0.5 of 2 (the wrong one is a tie)
  ...pairs('llmbar-natural', 2, 0), // 1 of 2
  ...pairs('donotanswer', 1, 2), // 1/3 of 3
  ...pairs('xstest-should-respond', 1, 0), // 1 of 1
  ...pairs('math-prm', 1, 1), // 0.5 of 2, weighted 984
  ...pairs('hep-go', 4, 0), // 1 of 4
  ...pairs('hep-rust', 0, 2), // 0 of 2
  { chosen: 1, rejected: 0 }, // no subset: in no subset
];

test('per-subset accuracy: strict >, a tie is wrong; pairs without a subset are left out', (t) => {
  const s = subsetAccuracies(fixture);
  t.deepEqual(Object.keys(s), ['alpacaeval-easy', 'mt-bench-med', 'llmbar-natural', 'donotanswer', 'xstest-should-respond', 'math-prm', 'hep-go', 'hep-rust']);
  t.deepEqual(s['alpacaeval-easy'], { accuracy: 0.75, pairs: 4 });
  t.deepEqual(s['mt-bench-med'], { accuracy: 0.5, pairs: 2 });
  t.deepEqual(s['donotanswer'], { accuracy: 1 / 3, pairs: 3 });
  t.deepEqual(s['hep-rust'], { accuracy: 0, pairs: 2 });
});

test('RewardBench v1 sections: count-weighted subset accuracies, math-prm weighing 984; headline the mean of four', (t) => {
  t.is(MATH_PRM_WEIGHT, 984);
  const r = rewardBenchV1(subsetAccuracies(fixture));
  if (r === undefined) return t.fail('no report');
  const chat = (4 * 0.75 + 2 * 0.5) / 6; // 4/6
  const chatHard = 1;
  const safety = (3 * (1 / 3) + 1 * 1) / 4; // 0.5
  const reasoning = (984 * 0.5 + 4 * 1 + 2 * 0) / (984 + 4 + 2); // 496/990 ≈ 0.501; by raw counts it would be 5/8
  t.true(Math.abs(r.sections.Chat! - chat) < 1e-12);
  t.is(r.sections['Chat Hard'], chatHard);
  t.true(Math.abs(r.sections.Safety! - safety) < 1e-12);
  t.true(Math.abs(r.sections.Reasoning! - reasoning) < 1e-12, `${r.sections.Reasoning}`);
  t.true(Math.abs(r.sections.Reasoning! - 5 / 8) > 0.1, 'math-prm is not weighted by its count');
  t.deepEqual(r.missing, []);
  t.true(Math.abs(r.score! - (chat + chatHard + safety + reasoning) / 4) < 1e-12, `${r.score}`);
});

test('RewardBench v1: missing sections are named and there is no headline; no RewardBench subset → no report', (t) => {
  const r = rewardBenchV1(subsetAccuracies([...pairs('alpacaeval-easy', 1, 1), ...pairs('donotanswer', 2, 0), ...pairs('my-own-subset', 0, 3)]));
  t.deepEqual(r, { sections: { Chat: 0.5, Safety: 1 }, missing: ['Chat Hard', 'Reasoning'] });
  t.is(rewardBenchV1(subsetAccuracies(pairs('my-own-subset', 1, 0))), undefined);
  t.is(rewardBenchV1({}), undefined);
});

test('RewardBench v2 row score: 1 strictly on top, 1/(t+1) sharing the top with t others, else 0', (t) => {
  t.is(bestOfRowScore(3, [1, 2, 0]), 1);
  t.is(bestOfRowScore(2, [2, 1, 0]), 1 / 2);
  t.is(bestOfRowScore(2, [2, 2, 1]), 1 / 3);
  t.is(bestOfRowScore(2, [2, 2, 2]), 1 / 4);
  t.is(bestOfRowScore(1, [2, 0, 0]), 0);
  t.is(bestOfRowScore(2, [3, 2, 2]), 0, 'tied with two, but one is higher');
  t.is(bestOfRowScore(5, [4]), 1, 'k = 1 is a pair');
  t.is(bestOfRowScore(Number.NaN, [0]), 0);
  t.throws(() => bestOfRowScore(1, []), { instanceOf: RangeError });
});

test('RewardBench v2 accuracy: the mean row score, overall and per subset', (t) => {
  const rows = [
    { subset: 'Math', score: bestOfRowScore(3, [1, 2, 0]) }, // 1
    { subset: 'Math', score: bestOfRowScore(2, [2, 1, 0]) }, // 1/2
    { subset: 'Focus', score: bestOfRowScore(2, [2, 2, 1]) }, // 1/3
    { subset: 'Focus', score: bestOfRowScore(1, [2, 0, 0]) }, // 0
    { score: bestOfRowScore(2, [3, 2, 2]) }, // 0, no subset
  ];
  const r = bestOfReport(rows);
  t.true(Math.abs(r.accuracy - (1 + 1 / 2 + 1 / 3) / 5) < 1e-12);
  t.is(r.rows, 5);
  t.deepEqual(r.subsets, { Math: { accuracy: 0.75, rows: 2 }, Focus: { accuracy: 1 / 6, rows: 2 } });
  t.is(bestOfReport([{ score: 1 }]).subsets, undefined);
  t.true(Number.isNaN(bestOfReport([]).accuracy));
});
