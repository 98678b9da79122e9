// fedpool score refuses bad input locally, before anything reaches the coordinator, with one line naming the problem.
import test from 'ava';
import { readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runFedpool } from '../helpers/processes.js';
import { CLIENT_TOKEN, startCoordinatorProcess, tempDir, type CoordinatorProcess } from '../server/helpers.js';

let c: CoordinatorProcess;
let dir: string;
let cleanup: () => void;

const cli = (...args: string[]) => runFedpool(args);

test.before(async () => {
  ({ dir, cleanup } = tempDir());
  c = await startCoordinatorProcess(['--state', ':memory:', '--client-token', CLIENT_TOKEN]);
  for (const [name, input] of [['text', 'text:32'], ['feat', 'features:3']]) {
    const r = await cli('model', 'init', '--out', path.join(dir, name), '--input', input, '--output', 'reward', '--hidden', '4');
    if (r.status !== 0) throw new Error(r.stderr);
  }
});

test.after.always(async () => {
  await c?.stop();
  cleanup?.();
});

async function score(model: string, lines: string[], ...extra: string[]) {
  const input = path.join(dir, `in-${Math.random().toString(36).slice(2)}.jsonl`);
  writeFileSync(input, lines.join('\n') + '\n');
  const r = await cli('score', '--url', c.url, '--token', CLIENT_TOKEN, '--model', path.join(dir, model), '--input', input, '--output', path.join(dir, 'out.jsonl'), ...extra);
  return { ...r, input };
}

async function jobCount(): Promise<number> {
  const res = await fetch(`${c.url}/api/jobs`, { headers: { authorization: `Bearer ${CLIENT_TOKEN}` } });
  return ((await res.json()) as unknown[]).length;
}

test.serial('each kind of bad input is one line naming file and line, and nothing is submitted', async (t) => {
  const ok = JSON.stringify({ id: 'a', prompt: 'p', response: 'r' });
  const cases: [string, string[], RegExp, string[]?][] = [
    ['text', [ok, '{"id": "b", "prompt": "p", "response": "r"', ok], /:2: not valid JSON/],
    ['text', [ok, JSON.stringify({ id: 'b', prompt: 'p', response: 'r' }), JSON.stringify({ id: 3, prompt: 'p', response: 'r' })], /:3: "id": /],
    ['text', [ok, '', JSON.stringify({ id: 'b', prompt: 'p', response: 'r' })], /:2: blank line \(each input line is one output line: remove it\)\n$/],
    ['text', [ok, JSON.stringify({ id: 'b', prompt: 'p', response: 'r' }), ok], /:3: duplicate id "a" \(also on line 1\)\n$/],
    ['text', [JSON.stringify({ id: 'x', prompt: 'p' })], /:1: "response": /],
    ['text', [JSON.stringify({ id: 'x', prompt: 'p', chosen: 'c' })], /:1: "rejected": /],
    ['feat', [JSON.stringify({ id: 'x', features: [1, 2, 3] }), JSON.stringify({ id: 'y', features: [1, 2] })], /:2: "features" has 2 values, the model takes 3/],
    ['feat', [ok], /:1: the model takes features:3, but this line has text/],
    ['text', [JSON.stringify({ id: 'x', features: [1, 2, 3] })], /:1: the model takes text:32 .* but this line has features/],
    ['text', [ok], /--select majority needs item lines with a "group"/, ['--select', 'majority']],
  ];
  for (const [model, lines, pattern, extra] of cases) {
    const r = await score(model, lines, ...(extra ?? []));
    t.is(r.status, 1, `${pattern}: ${r.stderr}`);
    t.regex(r.stderr, pattern);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  t.is(await jobCount(), 0, 'nothing was submitted');
});

test.serial('labels need a classifier and must be its classes; a classifier of 3 classes scores items only, without --select', async (t) => {
  for (const [name, output] of [['c3', 'classes:3'], ['c2', 'classes:2']]) {
    const r = await cli('model', 'init', '--out', path.join(dir, name), '--input', 'features:3', '--output', output, '--hidden', '4');
    t.is(r.status, 0, r.stderr);
  }
  const item = (id: string, extra: object = {}) => JSON.stringify({ id, features: [1, 2, 3], ...extra });
  const cases: [string, string[], RegExp, string[]?][] = [
    ['feat', [item('a'), item('b', { label: 1 })], /:2: "label" needs a classifier model \(this one is a reward model\)\n$/],
    ['c3', [item('a', { label: 3 })], /:1: "label" 3 is not a class of this model \(0 to 2\)\n$/],
    ['c2', [item('a', { label: 2 })], /:1: "label" 2 is not a class of this model \(0 to 1\)\n$/],
    ['c3', [item('a', { label: -1 })], /:1: "label": must be a class id \(an integer ≥ 0\)\n$/],
    ['c3', [item('a', { group: 'g' })], /^fedpool score: --select best-of-n ranks one score per item; a classifier of 3 classes gives 3 probabilities\n$/, ['--select', 'best-of-n']],
  ];
  for (const [model, lines, pattern, extra] of cases) {
    const r = await score(model, lines, ...(extra ?? []));
    t.is(r.status, 1, `${pattern}: ${r.stderr}`);
    t.regex(r.stderr, pattern);
  }
  const pairs = path.join(dir, 'pairs-c3.jsonl');
  writeFileSync(pairs, `${JSON.stringify({ id: 'p', prompt: 'q', chosen: 'a', rejected: 'b' })}\n`);
  const textModel = await cli('model', 'init', '--out', path.join(dir, 't3'), '--input', 'text:16', '--output', 'classes:3', '--hidden', '4');
  t.is(textModel.status, 0, textModel.stderr);
  const r = await cli('score', '--url', c.url, '--token', CLIENT_TOKEN, '--model', path.join(dir, 't3'), '--input', pairs, '--output', path.join(dir, 'out.jsonl'));
  t.regex(r.stderr, /:1: a classifier of 3 classes scores items, not pairs \(pairs need a reward model or a binary classifier\)\n$/);
  const scorer = await cli('score', '--url', c.url, '--token', CLIENT_TOKEN, '--scorer', 'lm', '--input', await textLines([JSON.stringify({ id: 'a', prompt: 'p', response: 'r', label: 1 })]), '--output', path.join(dir, 'out.jsonl'));
  t.regex(scorer.stderr, /:1: "label" needs a classifier bundle \(--model DIR\), not a scorer\n$/);
  t.is(await jobCount(), 0, 'nothing was submitted');
});

async function textLines(lines: string[]): Promise<string> {
  const input = path.join(dir, `in-${Math.random().toString(36).slice(2)}.jsonl`);
  writeFileSync(input, lines.join('\n') + '\n');
  return input;
}

test.serial('the log-prob selections need grouped items (certainty-vote: with answers); a best-of row needs a rejected answer', async (t) => {
  const grouped = [JSON.stringify({ id: 'a', prompt: 'p', response: 'r', group: 'g', answer: '4' }), JSON.stringify({ id: 'b', prompt: 'p', response: 's', group: 'g' })];
  const pairs = [JSON.stringify({ id: 'a', prompt: 'p', chosen: 'c', rejected: ['r'], group: 'g' })];
  const cases: [string[], RegExp, string[]][] = [
    [grouped, /^fedpool score: --select certainty-vote needs an "answer" on every grouped line \(line 2 has none\)$/, ['--select', 'certainty-vote']],
    [pairs, /^fedpool score: --select self-certainty needs item lines with a "group"$/, ['--select', 'self-certainty']],
    [pairs, /^fedpool score: --select mean-logprob needs item lines with a "group"$/, ['--select', 'mean-logprob']],
    [[JSON.stringify({ id: 'x', prompt: 'p', chosen: 'c', rejected: [] })], /:1: "rejected": must list at least one rejected answer$/, []],
  ];
  for (const [lines, pattern, extra] of cases) {
    const input = path.join(dir, `in-${Math.random().toString(36).slice(2)}.jsonl`);
    writeFileSync(input, lines.join('\n') + '\n');
    const r = await cli('score', '--url', c.url, '--token', CLIENT_TOKEN, '--scorer', 'lm', '--input', input, '--output', path.join(dir, 'out.jsonl'), ...extra);
    t.is(r.status, 1, `${pattern}: ${r.stderr}`);
    t.regex(r.stderr.trim(), pattern);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  t.is(await jobCount(), 0, 'nothing was submitted');
});

test.serial('an output that cannot be written, or that is the input, is refused before anything is submitted', async (t) => {
  const ok = JSON.stringify({ id: 'a', prompt: 'p', response: 'r' });
  const input = path.join(dir, 'same.jsonl');
  writeFileSync(input, `${ok}\n`);
  const run = (output: string) => cli('score', '--url', c.url, '--token', CLIENT_TOKEN, '--model', path.join(dir, 'text'), '--input', input, '--output', output);
  const missing = path.join(dir, 'no-such-folder', 'out.jsonl');
  const link = path.join(dir, 'same-link.jsonl'); // another name of the input
  symlinkSync(input, link);
  const cases: Array<[string, string]> = [
    [missing, `fedpool score: --output ${missing}: cannot write in ${path.dirname(missing)} (ENOENT)`],
    [input, `fedpool score: --output ${input} is the input file; write the output somewhere else`],
    [link, `fedpool score: --output ${link} is the input file; write the output somewhere else`],
    [dir, `fedpool score: --output ${dir} is a directory; give a file name`],
  ];
  for (const [output, line] of cases) {
    const r = await run(output);
    t.is(r.status, 1, output);
    t.is(r.stderr, `${line}\n`);
  }
  t.is(readFileSync(input, 'utf8'), `${ok}\n`, 'the input is untouched');
  t.is(await jobCount(), 0, 'nothing was submitted');
  const resumed = await cli('score', '--url', c.url, '--token', CLIENT_TOKEN, '--resume', 'any', '--output', missing);
  t.is(resumed.stderr, `fedpool score: --output ${missing}: cannot write in ${path.dirname(missing)} (ENOENT)\n`);
});

test.serial('a broken model bundle is refused before any work is dispatched', async (t) => {
  rmSync(path.join(dir, 'feat', 'weights.bin'));
  const r = await score('feat', [JSON.stringify({ id: 'x', features: [1, 2, 3] })]);
  t.is(r.status, 1);
  t.regex(r.stderr, /weights\.bin/);
  writeFileSync(path.join(dir, 'text', 'fedpool.json'), '{"format": "something-else"}');
  const r2 = await score('text', [JSON.stringify({ id: 'a', prompt: 'p', response: 'r' })]);
  t.is(r2.status, 1);
  t.regex(r2.stderr, /fedpool\.json/);
  t.is(await jobCount(), 0);
});

test.serial('--model and --scorer: exactly one; log-prob selections need --scorer; a scorer takes text only — one line each, nothing submitted', async (t) => {
  const before = await jobCount();
  const input = path.join(dir, 'scorer-in.jsonl');
  writeFileSync(input, `${JSON.stringify({ id: 'a', prompt: 'p', response: 'r', group: 'g' })}\n`);
  const features = path.join(dir, 'scorer-features.jsonl');
  writeFileSync(features, `${JSON.stringify({ id: 'a', features: [1, 2, 3] })}\n`);
  const base = ['score', '--url', c.url, '--token', CLIENT_TOKEN, '--output', path.join(dir, 'scorer-out.jsonl')];
  const cases: [string[], string][] = [
    [['--model', path.join(dir, 'text'), '--scorer', 'm', '--input', input], 'fedpool score: give --model DIR or --scorer NAME, not both'],
    [['--input', input], "fedpool score: --model DIR (a bundle) or --scorer NAME (workers' inference servers) is required"],
    [['--model', path.join(dir, 'text'), '--logprobs', '--input', input], 'fedpool score: --logprobs needs --scorer NAME (log-probs come from openai-logprobs workers)'],
    [['--model', path.join(dir, 'text'), '--select', 'self-certainty', '--input', input], 'fedpool score: --select self-certainty needs log-probs: use --scorer NAME with openai-logprobs workers'],
    [['--scorer', 'm', '--input', features], `${features}:1: --scorer sends text to inference servers, but this line has features`],
  ];
  for (const [args, line] of cases) {
    const r = await cli(...base, ...args);
    t.is(r.status, 1, args.join(' '));
    t.is(r.stderr, `${line}\n`);
  }
  t.is(await jobCount(), before);
});
