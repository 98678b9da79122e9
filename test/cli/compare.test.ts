// fedpool compare on score files with known disagreements: κ and τ in compare.json, a self-contained compare.html,
// the stdout table, and one-line errors.
import test from 'ava';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runFedpool, scratch } from '../helpers/processes.js';

const dir = path.join(scratch(), 'compare');
mkdirSync(dir, { recursive: true });

function write(name: string, lines: readonly unknown[]): string {
  const file = path.join(dir, name);
  writeFileSync(file, lines.map((l) => (typeof l === 'string' ? l : JSON.stringify(l))).join('\n') + '\n');
  return file;
}

const pair = (id: string, c: number, r: number, subset?: string) => ({ id, chosen_score: c, rejected_score: r, correct: c > r, ...(subset ? { subset } : {}) });
const item = (id: string, score: number, group: string) => ({ id, score, group });

// Pair outcomes, A: chosen, chosen, rejected, tie, chosen, rejected; B: chosen, rejected, rejected, tie, chosen,
// chosen → p_o = 4/6, p_e = 14/36, κ = 5/11.
const pairsA = [pair('p0', 2, 1, 's1'), pair('p1', 2, 1, 's1'), pair('p2', 1, 2, 's1'), pair('p3', 1, 1, 's2'), pair('p4', 3, 0, 's2'), pair('p5', 0, 1, 's2')];
const pairsB = [pair('p0', 5, 1, 's1'), pair('p1', 1, 2, 's1'), pair('p2', 0, 2, 's1'), pair('p3', 2, 2, 's2'), pair('p4', 1, 0, 's2'), pair('p5', 1, 0, 's2')];
// Items of one group: A [1, 2, 2, 3], B [1, 3, 2, 2] → τ-b = 0.4, ρ = 0.5; A picks i3, B picks i1.
const itemsA = [item('i0', 1, 'g'), item('i1', 2, 'g'), item('i2', 2, 'g'), item('i3', 3, 'g')];
const itemsB = [item('i0', 1, 'g'), item('i1', 3, 'g'), item('i2', 2, 'g'), item('i3', 2, 'g')];

interface Report {
  common: number;
  dropped: number;
  models: { name: string; pairs?: { n: number; accuracy: number } }[];
  comparisons: {
    a: string;
    b: string;
    pairs?: { n: number; agreement: number; kappa: number | null };
    items?: { n: number; tau: number | null; rho: number | null; groups?: { n: number; tau: number | null; top1: number | null } };
    subsets?: Record<string, { pairs?: { n: number; agreement: number; kappa: number | null } }>;
  }[];
}

test('two models with known disagreements, and a third equal to the first: κ, τ, ρ, top-1, the table, the HTML', async (t) => {
  const a = write('model-a.jsonl', [...pairsA, ...itemsA]);
  const b = write('model-b.jsonl', [...itemsB.slice().reverse(), ...pairsB]); // order does not matter: joined by id
  const c = write('model-c.jsonl', [...pairsA, ...itemsA, { id: 'only-c', score: 1 }]);
  const out = path.join(dir, 'report');
  const r = await runFedpool(['compare', a, b, c, '--out', out]);
  t.is(r.status, 0, r.stderr);
  t.is(r.stderr, '');

  const report = JSON.parse(readFileSync(path.join(out, 'compare.json'), 'utf8')) as Report;
  t.is(report.common, 10);
  t.is(report.dropped, 1);
  t.deepEqual(report.models.map((m) => m.name), ['model-a', 'model-b', 'model-c']);
  t.deepEqual(report.models[0].pairs, { n: 6, accuracy: 3 / 6 });
  t.deepEqual(report.comparisons.map((x) => [x.a, x.b]), [['model-a', 'model-b'], ['model-a', 'model-c'], ['model-b', 'model-c']]);
  const [ab, ac] = report.comparisons;
  t.is(ab.pairs?.n, 6);
  t.true(Math.abs((ab.pairs?.agreement ?? NaN) - 4 / 6) < 1e-12);
  t.true(Math.abs((ab.pairs?.kappa ?? NaN) - 5 / 11) < 1e-12, `${ab.pairs?.kappa}`);
  t.is(ab.items?.n, 4);
  t.true(Math.abs((ab.items?.tau ?? NaN) - 0.4) < 1e-12, `${ab.items?.tau}`);
  t.true(Math.abs((ab.items?.rho ?? NaN) - 0.5) < 1e-12, `${ab.items?.rho}`);
  t.is(ab.items?.groups?.n, 1);
  t.true(Math.abs((ab.items?.groups?.tau ?? NaN) - 0.4) < 1e-12);
  t.is(ab.items?.groups?.top1, 0);
  // Per subset: s1 A c,c,r vs B c,r,r → p_o 2/3, p_e = (2/3)(1/3) + (1/3)(2/3) = 4/9, κ = (2/9)/(5/9) = 0.4.
  t.true(Math.abs((ab.subsets?.['s1']?.pairs?.kappa ?? NaN) - 0.4) < 1e-12, JSON.stringify(ab.subsets));
  t.is(ac.pairs?.kappa, 1);
  t.is(ac.items?.tau, 1);
  t.is(ac.items?.groups?.top1, 1);

  const lines = r.stdout.trim().split('\n');
  t.is(lines[0], 'fedpool compare: 3 models, 10 ids in every file (1 dropped: not in every file)');
  t.regex(lines[1], /^model_a\s+model_b\s+pairs\s+agree\s+kappa\s+items\s+tau\s+rho\s+groups\s+group_tau\s+group_rho\s+top1$/);
  t.is(lines.length, 5);
  t.regex(lines[2], /^model-a\s+model-b\s+6\s+0\.667\s+0\.455\s+4\s+0\.400\s+0\.500\s+1\s+0\.400\s+0\.500\s+0\.000$/);
  t.regex(lines[3], /^model-a\s+model-c\s+6\s+1\.000\s+1\.000\s+4\s+1\.000\s+1\.000\s+1\s+1\.000\s+1\.000\s+1\.000$/);

  const html = readFileSync(path.join(out, 'compare.html'), 'utf8');
  t.regex(html, /^<!doctype html>/);
  t.regex(html, /<svg[\s>]/);
  t.true((html.match(/<circle /g) ?? []).length >= 16, 'a circle per item and per pair side');
  t.regex(html, />model-a score</);
  t.regex(html, />model-b score</);
  t.notRegex(html, /(src|href)\s*=\s*["']?\s*(https?:)?\/\//i, 'nothing fetched from elsewhere');
  t.notRegex(html, /<script|<link|@import|url\(/i);
  t.regex(html, /0\.455/);
});

test('without --out only stdout is written', async (t) => {
  const a = write('solo-a.jsonl', pairsA);
  const b = write('solo-b.jsonl', pairsB);
  const r = await runFedpool(['compare', a, b], { cwd: dir });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^solo-a\s+solo-b\s+6\s+0\.667\s+0\.455$/m);
  t.false(existsSync(path.join(dir, 'compare.json')));
  t.false(existsSync(path.join(dir, 'compare.html')));
});

test('user errors: one line naming the problem, exit 1', async (t) => {
  const good = write('good.jsonl', pairsA);
  const other = write('other.jsonl', [pair('zz', 1, 0)]);
  const dup = write('dup.jsonl', [pair('p0', 1, 0), pair('p1', 1, 0), pair('p0', 0, 1)]);
  const bad = write('bad.jsonl', [pair('p0', 1, 0), '{"id": "p1", ']);
  const notScore = write('not-score.jsonl', [{ id: 'p0', prompt: 'q', response: 'r' }]);
  const kind = write('kind.jsonl', [{ id: 'p0', score: 1 }]);
  const empty = write('empty.jsonl', []);
  const cases: [string[], RegExp][] = [
    [[good], /^fedpool compare: give at least two fedpool score output files \(got 1\)$/],
    [[good, path.join(dir, 'missing.jsonl')], /^fedpool compare: cannot read .*missing\.jsonl: ENOENT$/],
    [[good, dup], /^.*dup\.jsonl:3: duplicate id "p0"$/],
    [[good, bad], /^.*bad\.jsonl:2: not valid JSON/],
    [[good, notScore], /^.*not-score\.jsonl:1: not a fedpool score output line/],
    [[good, kind], /^fedpool compare: id "p0" is a pair line in .*good\.jsonl:1 but an item line in .*kind\.jsonl:1$/],
    [[good, other], /^fedpool compare: no id is in every file/],
    [[good, empty], /empty\.jsonl: no score lines/],
  ];
  for (const [files, pattern] of cases) {
    const r = await runFedpool(['compare', ...files]);
    t.is(r.status, 1, `${files.join(' ')}: ${r.stderr}`);
    t.regex(r.stderr.trim(), pattern);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.is(r.stdout, '');
  }
});
