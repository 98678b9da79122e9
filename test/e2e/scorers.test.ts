// Real reward-model servers in the pool, end to end: a real coordinator, real worker processes that front
// test-owned HTTP servers speaking vLLM's, TEI's, OpenRLHF's and the OpenAI completions API's exact shapes, and the
// real `fedpool score --scorer`. Every value in the output is compared with what the server computes for that item.
import test, { type ExecutionContext } from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runFedpool as cli, scratch, startFedpool } from '../helpers/processes.js';
import { rewardOf, rewardOfText, startInferenceServer, tokenLogprobs, type FakeServer, type FakeServerOptions } from '../helpers/inference-servers.js';
import { CLIENT_TOKEN, api, startCoordinatorProcess, type CoordinatorProcess } from '../server/helpers.js';
import { startWorker, stop } from './processes.js';

interface InputLine {
  id: string;
  prompt: string;
  response?: string;
  chosen?: string;
  rejected?: string;
  group?: string;
}

/** Text items in groups of 4, and a preference pair every 10th line. */
function inputLines(n: number, tag: string): InputLine[] {
  const lines: InputLine[] = [];
  for (let i = 0; i < n; i++) {
    const prompt = `${tag} question ${i % 11}: what is ${i % 7} plus ${i % 5}?`;
    if (i % 10 === 9) lines.push({ id: `p${i}`, prompt, chosen: `the sum is ${(i % 7) + (i % 5)}`, rejected: `maybe ${i % 3}` });
    else lines.push({ id: `i${i}`, prompt, response: ` answer ${i} is ${(i * 7) % 13}, because reasons`, group: `g${Math.floor(i / 4)}` });
  }
  return lines;
}

function writeLines(file: string, lines: readonly object[]): void {
  writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
}

interface OutputLine {
  id: string;
  score?: number;
  chosen_score?: number;
  rejected_score?: number;
  correct?: boolean;
  logprob_mean?: number;
  perplexity?: number;
  self_certainty?: number;
}

function readOutput(file: string): OutputLine[] {
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as OutputLine);
}

/** Float32 on the wire: equal to the server's float64 value within float32 rounding. */
function close(t: ExecutionContext, actual: number | undefined, expected: number, what: string): void {
  if (actual === undefined || !(Math.abs(actual - expected) <= 1e-6 * Math.max(1, Math.abs(expected)))) t.fail(`${what}: got ${actual}, the server computed ${expected}`);
}

/** Every output value equals `expected(prompt, response)` for its item, in input order. */
function checkRewards(t: ExecutionContext, lines: readonly InputLine[], out: readonly OutputLine[], expected: (prompt: string, response: string) => number): void {
  t.deepEqual(out.map((l) => l.id), lines.map((l) => l.id), 'one output line per input line, in input order');
  lines.forEach((l, i) => {
    const o = out[i] as OutputLine;
    if (l.chosen !== undefined) {
      const c = expected(l.prompt, l.chosen);
      const r = expected(l.prompt, l.rejected ?? '');
      close(t, o.chosen_score, c, `${l.id} chosen`);
      close(t, o.rejected_score, r, `${l.id} rejected`);
      t.is(o.correct, Math.fround(c) > Math.fround(r), `${l.id} correct`);
    } else close(t, o.score, expected(l.prompt, l.response ?? ''), l.id);
  });
}

async function startServer(t: ExecutionContext, options: FakeServerOptions): Promise<FakeServer> {
  const server = await startInferenceServer(options);
  t.teardown(() => server.close());
  return server;
}

async function coordinator(t: ExecutionContext): Promise<CoordinatorProcess> {
  return startCoordinatorProcess(['--state', ':memory:', '--worker-token', 'w', '--client-token', CLIENT_TOKEN, '--lease-ms', '60000'], {}, t);
}

/** A worker process fronting `server`; stopped by the test's teardown. */
async function fronting(t: ExecutionContext, c: CoordinatorProcess, name: string, server: FakeServer, api: string, extra: string[] = []) {
  const w = startWorker(c.url, name, path.join(scratch(), `cache-${name}`), ['--scorer-url', server.url, '--scorer-api', api, ...extra]);
  t.teardown(() => stop(w));
  await w.connected;
  return w;
}

function score(c: CoordinatorProcess, scorer: string, input: string, output: string, extra: string[] = []) {
  return cli(['score', '--url', c.url, '--token', CLIENT_TOKEN, '--scorer', scorer, '--input', input, '--output', output, ...extra]);
}

/** Scoring requests a server answered (its check and model lookups excluded), by path. */
function scoringRequests(server: FakeServer): FakeServer['requests'] {
  return server.requests.filter((r) => r.method === 'POST');
}

/** The worker's log-prob statistics of one item, computed here from the server's own token log-probs. */
function logprobStats(model: string, prompt: string, response: string, k: number, vocab: number): { mean: number; perplexity: number; certainty: number } {
  const lp = tokenLogprobs(model, prompt + response, k, vocab);
  let sum = 0;
  let kl = 0;
  let n = 0;
  lp.offsets.forEach((offset, i) => {
    if (offset < [...prompt].length) return; // offsets count code points, as vLLM's do
    const chosen = lp.tokenLogprobs[i];
    const top = lp.top[i];
    if (chosen === null || chosen === undefined || top === null || top === undefined) return;
    sum += chosen;
    const known = Object.values(top);
    const rest = Math.max(1e-12, 1 - known.reduce((s, v) => s + Math.exp(v), 0));
    const others = vocab - known.length;
    kl += -Math.log(vocab) - (known.reduce((s, v) => s + v, 0) + others * Math.log(rest / others)) / vocab;
    n++;
  });
  const mean = sum / n;
  return { mean, perplexity: Math.exp(-mean), certainty: kl / n };
}

test('vLLM (falling back to /pooling), TEI (learning a batch cap of 8 from its 422), OpenRLHF and log-probs: every value equals the server’s', async (t) => {
  const c = await coordinator(t);
  const vllm = await startServer(t, { api: 'vllm', model: 'rm-vllm', classifyRoute: false });
  // Its /info does not report the cap: the worker learns it from the refused batch.
  const tei = await startServer(t, { api: 'tei', model: 'rm-tei', maxBatch: 8, reportBatch: false });
  const rlhf = await startServer(t, { api: 'openrlhf', model: 'rm-rlhf' });
  const lm = await startServer(t, { api: 'openai', model: 'lm-g', vocab: 5000 });
  await Promise.all([
    fronting(t, c, 'vllm', vllm, 'vllm-classify'),
    fronting(t, c, 'tei', tei, 'tei'),
    fronting(t, c, 'rlhf', rlhf, 'openrlhf', ['--scorer-model', 'rm-rlhf', '--scorer-template', 'Q: {prompt}\nA: {response}']),
    fronting(t, c, 'lm', lm, 'openai-logprobs', ['--scorer-vocab', '5000', '--scorer-logprobs', '4']),
  ]);

  const dir = scratch();
  const lines = inputLines(120, 'mixed');
  const input = path.join(dir, 'mixed.jsonl');
  writeLines(input, lines);

  const outV = path.join(dir, 'vllm.jsonl');
  const r1 = await score(c, 'rm-vllm', input, outV, ['--shard-size', '16']);
  t.is(r1.status, 0, r1.stderr);
  checkRewards(t, lines, readOutput(outV), (p, r) => rewardOf('rm-vllm', p, r));
  const paths = scoringRequests(vllm).map((r) => r.path);
  t.true(paths.filter((p) => p === '/pooling').length >= 132, 'every conversation went to /pooling');
  t.is(paths.filter((p) => p === '/classify').length, 1, '/classify was tried once (404) and the fallback remembered');
  t.true(scoringRequests(vllm).every((r) => r.path !== '/pooling' || (r.body as { use_activation?: unknown }).use_activation === false), 'raw rewards asked for');

  const outT = path.join(dir, 'tei.jsonl');
  const r2 = await score(c, 'rm-tei', input, outT, ['--shard-size', '64']);
  t.is(r2.status, 0, r2.stderr);
  checkRewards(t, lines, readOutput(outT), (p, r) => rewardOf('rm-tei', p, r));
  const teiPosts = scoringRequests(tei).filter((r) => r.path === '/predict');
  // Only requests already in flight when the first 422 came back (at most --scorer-concurrency, 4) can be refused.
  const refused = teiPosts.filter((r) => r.status === 422).length;
  t.true(refused >= 1 && refused <= 4, `${refused} batches refused, then the cap is remembered`);
  t.true(teiPosts.filter((r) => r.status === 200).every((r) => ((r.body as { inputs: unknown[] }).inputs.length) <= 8));

  const outR = path.join(dir, 'rlhf.jsonl');
  const r3 = await score(c, 'rm-rlhf', input, outR);
  t.is(r3.status, 0, r3.stderr);
  checkRewards(t, lines, readOutput(outR), (p, r) => rewardOfText('rm-rlhf', `Q: ${p}\nA: ${r}`));

  // Log-probs: items only (pairs score both sides the same way, covered above).
  const items = lines.filter((l) => l.response !== undefined);
  const itemsFile = path.join(dir, 'items.jsonl');
  writeLines(itemsFile, items);
  const outL = path.join(dir, 'lm.jsonl');
  const r4 = await score(c, 'lm-g', itemsFile, outL, ['--logprobs', '--select', 'self-certainty']);
  t.is(r4.status, 0, r4.stderr);
  const out = readOutput(outL);
  t.deepEqual(out.map((o) => o.id), items.map((l) => l.id));
  // Per group, the item of highest self-certainty (first on ties), from the server's own log-probs.
  const best = new Map<string, { id: string; certainty: number }>();
  for (const l of items) {
    const certainty = Math.fround(logprobStats('lm-g', l.prompt, l.response ?? '', 4, 5000).certainty);
    const now = best.get(l.group ?? '');
    if (now === undefined || certainty > now.certainty) best.set(l.group ?? '', { id: l.id, certainty });
  }
  const summary = JSON.parse(r4.stdout.trim().split('\n').at(-1) ?? '{}') as { selected: { mode: string; groups: number; file: string } };
  t.deepEqual(summary.selected, { mode: 'self-certainty', groups: best.size, file: path.join(dir, 'lm.selected.jsonl') });
  const selected = readFileSync(summary.selected.file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { group: string; selected: string });
  t.deepEqual(Object.fromEntries(selected.map((s) => [s.group, s.selected])), Object.fromEntries([...best].map(([g, b]) => [g, b.id])));
  items.forEach((l, i) => {
    const o = out[i] as OutputLine;
    const e = logprobStats('lm-g', l.prompt, l.response ?? '', 4, 5000);
    close(t, o.logprob_mean, e.mean, `${l.id} logprob_mean`);
    close(t, o.score, e.mean, `${l.id} score`);
    close(t, o.perplexity, e.perplexity, `${l.id} perplexity`);
    close(t, o.self_certainty, e.certainty, `${l.id} self_certainty`);
  });
  // No job reached a worker that does not serve its model.
  t.true(scoringRequests(lm).every((r) => r.path === '/v1/completions'));
});

test('a server that answers 429 to every third request and dies once mid-job still yields every line exactly once', async (t) => {
  const c = await coordinator(t);
  const flaky = await startServer(t, { api: 'vllm', model: 'rm-flaky', faults: { every429: 3, retryAfterS: 0, dieAfter: 150, downMs: 1500 } });
  await fronting(t, c, 'flaky', flaky, 'vllm-classify', ['--scorer-concurrency', '3']);
  const lines = inputLines(300, 'flaky');
  const input = path.join(scratch(), 'flaky.jsonl');
  const output = path.join(scratch(), 'flaky-out.jsonl');
  writeLines(input, lines);
  const r = await score(c, 'rm-flaky', input, output, ['--shard-size', '25']);
  t.is(r.status, 0, r.stderr);
  checkRewards(t, lines, readOutput(output), (p, resp) => rewardOf('rm-flaky', p, resp));
  t.true(flaky.requests.some((q) => q.status === 429), 'the server did answer 429');
});

test('a 400 from the server fails the job with the server’s own message and the worker’s name', async (t) => {
  const c = await coordinator(t);
  const strict = await startServer(t, { api: 'vllm', model: 'rm-strict', faults: { badText: 'VERY-LONG', badTextMessage: "This model's maximum context length is 32 tokens. However, you requested 99 tokens." } });
  await fronting(t, c, 'strict', strict, 'vllm-classify');
  const lines = inputLines(40, 'strict');
  (lines[17] as InputLine).response = 'VERY-LONG answer';
  const input = path.join(scratch(), 'strict.jsonl');
  writeLines(input, lines);
  const r = await score(c, 'rm-strict', input, path.join(scratch(), 'strict-out.jsonl'), ['--shard-size', '8']);
  t.not(r.status, 0);
  t.regex(r.stderr, /could not be done by any connected worker that serves it: strict \(failed: vllm-classify server http:\/\/127\.0\.0\.1:\d+: 400 This model's maximum context length is 32 tokens\. However, you requested 99 tokens\./);
  t.is(r.stderr.trim().split('\n').filter((l) => !/^fedpool job \S+ submitted$/.test(l)).length, 1, `one line: ${r.stderr}`);
});

test('two workers fronting servers of different models: a job goes only to the worker serving its model; an unserved one waits and says so', async (t) => {
  const c = await coordinator(t);
  const a = await startServer(t, { api: 'vllm', model: 'rm-a' });
  const b = await startServer(t, { api: 'sglang', model: 'rm-b' });
  await Promise.all([fronting(t, c, 'a', a, 'vllm-classify'), fronting(t, c, 'b', b, 'vllm-classify')]);
  const workers = (await (await api(c.url, '/api/workers')).json()) as { name: string; scorer: { api: string; model: string } | null }[];
  t.deepEqual(workers.map((w) => [w.name, w.scorer]).sort(), [['a', { api: 'vllm-classify', model: 'rm-a' }], ['b', { api: 'vllm-classify', model: 'rm-b' }]]);

  const beforeB = scoringRequests(b).length;
  const lines = inputLines(80, 'split');
  const input = path.join(scratch(), 'split.jsonl');
  const output = path.join(scratch(), 'split-out.jsonl');
  writeLines(input, lines);
  const r = await score(c, 'rm-a', input, output, ['--shard-size', '4']);
  t.is(r.status, 0, r.stderr);
  checkRewards(t, lines, readOutput(output), (p, resp) => rewardOf('rm-a', p, resp));
  // --resume rebuilds the same output from the coordinator alone, as for bundle jobs.
  const [, jobId] = /^fedpool job (\S+) submitted$/m.exec(r.stderr) ?? [];
  const again = path.join(scratch(), 'split-resumed.jsonl');
  const resumed = await cli(['score', '--url', c.url, '--token', CLIENT_TOKEN, '--resume', jobId ?? '', '--output', again]);
  t.is(resumed.status, 0, resumed.stderr);
  t.is(readFileSync(again, 'utf8'), readFileSync(output, 'utf8'));
  t.is(scoringRequests(b).length, beforeB, 'the rm-b server saw none of the rm-a job');
  const after = (await (await api(c.url, '/api/workers')).json()) as { name: string; shardsDone: number }[];
  const done = Object.fromEntries(after.map((w) => [w.name, w.shardsDone]));
  t.true((done['a'] ?? 0) >= 20, 'a scored every shard (and perhaps speculative duplicates of slow ones)');
  t.is(done['b'], 0);

  // A job for a model nobody serves waits, and the submitter is told once.
  const waiting = startFedpool(t, ['score', '--url', c.url, '--token', CLIENT_TOKEN, '--scorer', 'rm-nobody', '--input', input, '--output', path.join(scratch(), 'nobody.jsonl')]);
  await waiting.line(/^fedpool score: job \S+ waits: no connected worker serves scorer rm-nobody$/m, { stream: 'stderr', what: 'the waiting line' });
  await waiting.stop();
});

test('a worker refuses to join, in one line, when its scorer is unreachable or is not the API it claims', async (t) => {
  const c = await coordinator(t);
  const gone = await startInferenceServer({ api: 'vllm', model: 'x' });
  const deadUrl = gone.url;
  await gone.close();
  const r1 = await cli(['worker', '--url', c.url, '--token', 'w', '--threads', '1', '--backend', 'wasm', '--scorer-url', deadUrl, '--scorer-api', 'vllm-classify']);
  t.not(r1.status, 0);
  t.regex(r1.stderr.trim(), /^fedpool worker: cannot reach vllm-classify server http:\/\/127\.0\.0\.1:\d+: .+$/);
  t.is(r1.stderr.trim().split('\n').length, 1, r1.stderr);

  const tei = await startServer(t, { api: 'tei', model: 'rm-tei' });
  const r2 = await cli(['worker', '--url', c.url, '--token', 'w', '--threads', '1', '--backend', 'wasm', '--scorer-url', tei.url, '--scorer-api', 'openrlhf', '--scorer-model', 'm']);
  t.not(r2.status, 0);
  t.regex(r2.stderr.trim(), /^fedpool worker: .*openrlhf.*$/);
  t.is(r2.stderr.trim().split('\n').length, 1, r2.stderr);

  const r3 = await cli(['worker', '--url', c.url, '--token', 'w', '--scorer-url', tei.url, '--scorer-api', 'tei', '--scorer-key-env', 'FEDPOOL_TEST_UNSET_KEY']);
  t.is(r3.status, 1);
  t.is(r3.stderr.trim(), 'fedpool worker: --scorer-key-env FEDPOOL_TEST_UNSET_KEY: that environment variable is not set');
});

test('a RewardBench-format file through a vLLM scorer: per-subset accuracy, the four sections and the headline as RewardBench computes them; best-of-4 rows', async (t) => {
  const c = await coordinator(t);
  const vllm = await startServer(t, { api: 'vllm', model: 'rm-bench' });
  await fronting(t, c, 'bench', vllm, 'vllm-classify');
  // Two subsets per section, with different counts, so example-count weighting matters (and math-prm's 984).
  const subsets: [string, number][] = [
    ['alpacaeval-easy', 7], ['mt-bench-easy', 4], ['llmbar-natural', 6], ['mt-bench-hard', 5],
    ['refusals-dangerous', 5], ['donotanswer', 8], ['math-prm', 9], ['hep-python', 6],
  ];
  const rows: { id: string; prompt: string; chosen: string; rejected: string; subset: string }[] = [];
  for (const [subset, n] of subsets) {
    for (let i = 0; i < n; i++) rows.push({ id: `${subset}-${i}`, prompt: `${subset} prompt ${i}`, chosen: `good answer ${i} to ${subset}`, rejected: `poor answer ${i}`, subset });
  }
  const bestOf = Array.from({ length: 6 }, (_, i) => ({ id: `v2-${i}`, prompt: `v2 prompt ${i}`, chosen: `v2 chosen ${i}`, rejected: [`v2 a ${i}`, `v2 b ${i}`, `v2 c ${i}`], subset: i < 3 ? 'Math' : 'Focus' }));
  const input = path.join(scratch(), 'rewardbench.jsonl');
  writeLines(input, [...rows, ...bestOf]);
  const r = await score(c, 'rm-bench', input, path.join(scratch(), 'rewardbench-out.jsonl'), ['--shard-size', '16']);
  t.is(r.status, 0, r.stderr);
  const summary = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as {
    subsets: Record<string, { accuracy: number; pairs: number }>;
    rewardbench: { sections: Record<string, number>; score: number; missing: string[] };
    bestof: { accuracy: number; rows: number };
  };

  // By hand: a pair is right iff the float32 reward of chosen is strictly above rejected's.
  const reward = (p: string, resp: string): number => Math.fround(rewardOf('rm-bench', p, resp));
  const accuracy = new Map<string, number>();
  for (const [subset, n] of subsets) {
    const mine = rows.filter((row) => row.subset === subset);
    accuracy.set(subset, mine.filter((row) => reward(row.prompt, row.chosen) > reward(row.prompt, row.rejected)).length / n);
    t.deepEqual(summary.subsets[subset], { accuracy: accuracy.get(subset), pairs: n }, subset);
  }
  const weight = (subset: string, n: number): number => (subset === 'math-prm' ? 984 : n);
  const section = (names: string[]): number => {
    const parts = subsets.filter(([s]) => names.includes(s));
    return parts.reduce((sum, [s, n]) => sum + (accuracy.get(s) ?? 0) * weight(s, n), 0) / parts.reduce((sum, [s, n]) => sum + weight(s, n), 0);
  };
  const expected = {
    Chat: section(['alpacaeval-easy', 'mt-bench-easy']),
    'Chat Hard': section(['llmbar-natural', 'mt-bench-hard']),
    Safety: section(['refusals-dangerous', 'donotanswer']),
    Reasoning: section(['math-prm', 'hep-python']),
  };
  for (const [name, value] of Object.entries(expected)) close(t, summary.rewardbench.sections[name], value, name);
  close(t, summary.rewardbench.score, (expected.Chat + expected['Chat Hard'] + expected.Safety + expected.Reasoning) / 4, 'headline');
  t.deepEqual(summary.rewardbench.missing, []);

  // Best-of-4: 1 when chosen is strictly highest, 1/k when k share the top with it, else 0.
  const rowScores = bestOf.map((row) => {
    const c0 = reward(row.prompt, row.chosen);
    const others = row.rejected.map((x) => reward(row.prompt, x));
    const top = Math.max(c0, ...others);
    return c0 < top ? 0 : 1 / (1 + others.filter((x) => x === top).length);
  });
  t.is(summary.bestof.rows, 6);
  close(t, summary.bestof.accuracy, rowScores.reduce((a, b) => a + b, 0) / 6, 'best-of-4 accuracy');
});
