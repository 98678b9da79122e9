// fedpool score's input lines → job items → output lines and summary, without a coordinator: best-of-k rows,
// subsets, RewardBench reports, log-prob fields, and the new selections.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { readScoreInput } from '../../cli/score/input.js';
import { OutputAssembler, planItems, scoredItems, type LineMeta, type OutputLine } from '../../cli/score/plan.js';
import { UserError } from '../../cli/errors.js';
import { scratch } from '../helpers/processes.js';

function inputFile(lines: readonly unknown[]): string {
  const file = path.join(scratch(), `in-${Math.random().toString(36).slice(2)}.jsonl`);
  writeFileSync(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return file;
}

function assemble(meta: readonly LineMeta[], pushes: readonly (number | [number, { logprob_mean: number; perplexity: number; self_certainty: number }])[]): { lines: OutputLine[]; a: OutputAssembler } {
  const lines: OutputLine[] = [];
  const a = new OutputAssembler(meta, (l) => lines.push(l));
  for (const p of pushes) {
    if (typeof p === 'number') a.push(p);
    else a.push(p[0], p[1]);
  }
  return { lines, a };
}

test('best-of-k rows and subsets are read; a best-of row needs at least one rejected answer', async (t) => {
  const lines = await readScoreInput(inputFile([
    { id: 'p', prompt: 'q', chosen: 'c', rejected: 'r', subset: 'hep-go' },
    { id: 'b', prompt: 'q', chosen: 'c', rejected: ['r1', 'r2', 'r3'], subset: 'Math' },
    { id: 'i', prompt: 'q', response: 'x', group: 'g', subset: 's' },
  ]));
  t.deepEqual(lines.map((l) => l.kind), ['pair', 'bestof', 'text']);
  t.deepEqual(lines[1], { kind: 'bestof', line: 2, id: 'b', prompt: 'q', chosen: 'c', rejected: ['r1', 'r2', 'r3'], subset: 'Math' });
  await t.throwsAsync(readScoreInput(inputFile([{ id: 'b', prompt: 'q', chosen: 'c', rejected: [] }])), { instanceOf: UserError, message: /:1: "rejected": must list at least one rejected answer/ });
  await t.throwsAsync(readScoreInput(inputFile([{ id: 'b', prompt: 'q', chosen: 'c', rejected: ['x', 2] }])), { instanceOf: UserError, message: /:1: "rejected\.1": / });
  await t.throwsAsync(readScoreInput(inputFile([{ id: 'b', prompt: 'q', chosen: 'c', rejected: 'r', subset: 3 }])), { instanceOf: UserError, message: /:1: "subset": / });
});

test('a best-of-k row is 1 + k job items, ids by position; meta remembers k and the subset', async (t) => {
  const lines = await readScoreInput(inputFile([
    { id: 'i', prompt: 'q', response: 'x' },
    { id: 'b', prompt: 'q', chosen: 'c', rejected: ['r1', 'r2', 'r3'], subset: 'Math' },
    { id: 'p', prompt: 'q', chosen: 'c', rejected: 'r' },
  ]));
  const { items, meta, scored } = planItems(lines);
  t.is(scored, 7);
  t.deepEqual(items, { ids: ['0', '1c', '1r0', '1r1', '1r2', '2c', '2r'], prompts: ['q', 'q', 'q', 'q', 'q', 'q', 'q'], responses: ['x', 'c', 'r1', 'r2', 'r3', 'c', 'r'] });
  t.deepEqual(meta, [{ id: 'i' }, { id: 'b', rejected: 3, subset: 'Math' }, { id: 'p', pair: true }]);
  t.is(scoredItems(meta), 7);
});

test('output lines: pairs exactly as before (+ subset), best-of rows with row_score, items with log-prob fields, group and subset', (t) => {
  const meta: LineMeta[] = [
    { id: 'p1', pair: true },
    { id: 'p2', pair: true, subset: 'hep-go' },
    { id: 'b1', rejected: 3, subset: 'Math' },
    { id: 'i1', group: 'g', subset: 's' },
    { id: 'i2' },
  ];
  const extra = { logprob_mean: -0.5, perplexity: Math.exp(0.5), self_certainty: 2.5 };
  const { lines } = assemble(meta, [2, 1, 1, 1, 2, 2, 1, 0, [0.3, extra], 0.7]);
  t.deepEqual(lines.map((l) => JSON.stringify(l)), [
    '{"id":"p1","chosen_score":2,"rejected_score":1,"correct":true}',
    '{"id":"p2","chosen_score":1,"rejected_score":1,"correct":false,"subset":"hep-go"}',
    '{"id":"b1","chosen_score":2,"rejected_scores":[2,1,0],"correct":false,"row_score":0.5,"subset":"Math"}',
    `{"id":"i1","score":0.3,"logprob_mean":-0.5,"perplexity":${Math.exp(0.5)},"self_certainty":2.5,"group":"g","subset":"s"}`,
    '{"id":"i2","score":0.7}',
  ]);
});

test('pairs ignore the log-prob fields; a row emits only once all its 1 + k scores came', (t) => {
  const extra = { logprob_mean: -1, perplexity: Math.E, self_certainty: 1 };
  const lines: OutputLine[] = [];
  const a = new OutputAssembler([{ id: 'p', pair: true }, { id: 'b', rejected: 2 }], (l) => lines.push(l));
  a.push(1, extra);
  t.is(lines.length, 0);
  a.push(0, extra);
  t.deepEqual(lines, [{ id: 'p', chosen_score: 1, rejected_score: 0, correct: true }]);
  a.push(5);
  a.push(1);
  t.is(lines.length, 1);
  t.is(a.linesDone, 1);
  a.push(2);
  t.deepEqual(lines[1], { id: 'b', chosen_score: 5, rejected_scores: [1, 2], correct: true, row_score: 1 });
  t.is(a.linesDone, 2);
  t.throws(() => a.push(0), { message: /more results than input lines/ });
});

test('summary: pair accuracy, per-subset accuracy, the RewardBench v1 report, best-of accuracy', (t) => {
  const meta: LineMeta[] = [
    { id: 'a', pair: true, subset: 'alpacaeval-easy' }, // right
    { id: 'b', pair: true, subset: 'alpacaeval-easy' }, // tie: wrong
    { id: 'c', pair: true, subset: 'math-prm' }, // right
    { id: 'd', pair: true }, // wrong, no subset
    { id: 'r1', rejected: 3, subset: 'Math' }, // 1
    { id: 'r2', rejected: 3 }, // 1/3
  ];
  const { a } = assemble(meta, [1, 0, 1, 1, 2, 1, 0, 1, 3, 0, 1, 2, 1, 1, 1, 0]);
  t.deepEqual(a.summary('none'), {
    accuracy: 0.5,
    pairs: 4,
    subsets: { 'alpacaeval-easy': { accuracy: 0.5, pairs: 2 }, 'math-prm': { accuracy: 1, pairs: 1 } },
    rewardbench: { sections: { Chat: 0.5, Reasoning: 1 }, missing: ['Chat Hard', 'Safety'] },
    bestof: { accuracy: (1 + 1 / 3) / 2, rows: 2, subsets: { Math: { accuracy: 1, rows: 1 } } },
  });
  // Subsets that are not RewardBench's: per-subset accuracy only.
  const { a: b } = assemble([{ id: 'x', pair: true, subset: 'mine' }], [1, 0]);
  t.deepEqual(b.summary('none'), { accuracy: 1, pairs: 1, subsets: { mine: { accuracy: 1, pairs: 1 } } });
  // No subsets, no pairs: as before.
  const { a: c } = assemble([{ id: 'x', pair: true }], [0, 1]);
  t.deepEqual(c.summary('none'), { accuracy: 0, pairs: 1 });
  t.deepEqual(assemble([{ id: 'x' }], [1]).a.summary('none'), {});
});

test('summary: the log-prob selections read the fields the scorer sent; bordaP reaches certainty-vote', (t) => {
  const sc = (lp: number, c: number) => ({ logprob_mean: lp, perplexity: Math.exp(-lp), self_certainty: c });
  const meta: LineMeta[] = [
    { id: 'c1', group: 'q', answer: 'A' },
    { id: 'c2', group: 'q', answer: 'B' },
    { id: 'c3', group: 'q', answer: 'B' },
    { id: 'c4', group: 'q', answer: 'A' },
  ];
  const { a } = assemble(meta, [[-1, sc(-1, 0.9)], [-0.4, sc(-0.4, 0.5)], [-0.8, sc(-0.8, 0.7)], [-2, sc(-2, 0.2)]]);
  t.deepEqual(a.summary('mean-logprob').selected, { q: 'c2' });
  t.deepEqual(a.summary('self-certainty').selected, { q: 'c1' });
  // Votes by rank c1, c3, c2, c4: p = 0.5 → A 2 + 1 = 3 < B √3 + √2; p = 2 → A 16 + 1 > B 9 + 4.
  t.deepEqual(a.summary('certainty-vote').selected, { q: 'B' });
  t.deepEqual(a.summary('certainty-vote', { bordaP: 0.5 }).selected, { q: 'B' });
  t.deepEqual(a.summary('certainty-vote', { bordaP: 2 }).selected, { q: 'A' });
  t.deepEqual(a.summary('best-of-n').selected, { q: 'c2' });
});

test('meta stored by an older fedpool (no subset, no rejected) rebuilds the same output', (t) => {
  const old = JSON.parse('[{"id":"p","pair":true},{"id":"i","group":"g","answer":"4"},{"id":"j"}]') as LineMeta[];
  t.is(scoredItems(old), 4);
  const { lines, a } = assemble(old, [1, 2, 0.5, 0.25]);
  t.deepEqual(lines, [
    { id: 'p', chosen_score: 1, rejected_score: 2, correct: false },
    { id: 'i', score: 0.5, group: 'g' },
    { id: 'j', score: 0.25 },
  ]);
  t.deepEqual(a.summary('majority'), { accuracy: 0, pairs: 1, selected: { g: '4' } });
});
