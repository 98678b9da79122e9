// The fake inference servers speak the shapes of docs/scorers.md (and, where it is silent,
// the servers' own): every route's answer, error and fault, checked with plain fetch calls against values computed
// here from the exported fake models.
import test, { type ExecutionContext } from 'ava';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import {
  FAKE_BOS,
  FAKE_MAX_MODEL_LEN,
  embeddingOf,
  rewardOf,
  rewardOfText,
  sigmoid,
  startInferenceServer,
  tokenLogprobs,
  tokenize,
  type FakeServer,
  type FakeServerOptions,
} from './inference-servers.js';
import { run, start, tsxLoader } from './processes.js';

const mainEntry = fileURLToPath(new URL('./inference-server-main.ts', import.meta.url));

async function serve(t: ExecutionContext, options: FakeServerOptions): Promise<FakeServer> {
  const server = await startInferenceServer(options);
  t.teardown(() => server.close());
  return server;
}

interface Answer {
  status: number;
  /** The parsed body; undefined when it is not JSON. */
  json: unknown;
  text: string;
  headers: Headers;
}

async function answer(response: Response): Promise<Answer> {
  const text = await response.text();
  let json: unknown;
  try {
    json = JSON.parse(text) as unknown;
  } catch {
    json = undefined;
  }
  return { status: response.status, json, text, headers: response.headers };
}

async function post(url: string, body: unknown): Promise<Answer> {
  return answer(await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }));
}

async function postRaw(url: string, raw: string, contentType = 'application/json'): Promise<Answer> {
  return answer(await fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body: raw }));
}

async function get(url: string): Promise<Answer> {
  return answer(await fetch(url));
}

/** The connection error of a request that never got an answer (its code, else its message); undefined if answered. */
async function connectionError(request: Promise<unknown>): Promise<string | undefined> {
  try {
    await request;
    return undefined;
  } catch (err) {
    const cause = (err as { cause?: { code?: unknown; message?: unknown } }).cause;
    return typeof cause?.code === 'string' ? cause.code : String(cause?.message ?? err);
  }
}

/** Polls `attempt` until it returns a value, or fails after `ms` (never a fixed sleep standing in for a wait). */
async function until<T>(what: string, ms: number, attempt: () => Promise<T | undefined>): Promise<T> {
  const deadline = performance.now() + ms;
  for (;;) {
    const value = await attempt();
    if (value !== undefined) return value;
    if (performance.now() > deadline) throw new Error(`${what}: not within ${ms / 1000} s`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Whether something accepts TCP connections on 127.0.0.1:port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const field = (value: unknown, ...keys: (string | number)[]): unknown => {
  let v = value;
  for (const k of keys) v = (v as Record<string | number, unknown> | undefined)?.[k];
  return v;
};

const conversation = (prompt: string, response: string) => [
  { role: 'user', content: prompt },
  { role: 'assistant', content: response },
];

// ----------------------------------------------------------------------------------------------------------------
// The fake models.

test('rewardOf and rewardOfText: deterministic, in [-5, 5), depending on model, prompt and response', (t) => {
  const r = rewardOf('m', 'What is 2+2?', '4');
  t.is(rewardOf('m', 'What is 2+2?', '4'), r);
  t.true(r >= -5 && r < 5);
  t.not(rewardOf('m', 'What is 2+2?', '5'), r);
  t.not(rewardOf('m', 'What is 3+3?', '4'), r);
  t.not(rewardOf('other', 'What is 2+2?', '4'), r);
  t.not(rewardOfText('m', 'What is 2+2?4'), r);
  const values = Array.from({ length: 300 }, (_, i) => rewardOf('m', `prompt ${i}`, `response ${i % 7}`));
  t.true(values.every((v) => v >= -5 && v < 5));
  t.true(Math.min(...values) < -4 && Math.max(...values) > 4, 'the rewards spread over the range');
  t.true(values.some((v, i) => Math.sign(v) !== Math.sign(rewardOf('m2', `prompt ${i}`, `response ${i % 7}`))), 'two models disagree on some items');
  t.true(new Set(values.map((v) => v.toFixed(6))).size === values.length, 'several decimals: no two of 300 alike to 1e-6');
});

test('tokenize: a word with the one space before it, runs cut into pieces of 6, lone whitespace, code-point offsets', (t) => {
  t.deepEqual(tokenize('Hello  big wonderfully'), [
    { token: 'Hello', offset: 0 },
    { token: ' ', offset: 5 },
    { token: ' big', offset: 6 },
    { token: ' wonder', offset: 10 },
    { token: 'fully', offset: 17 },
  ]);
  t.deepEqual(tokenize('a\nb \n'), [
    { token: 'a', offset: 0 },
    { token: '\nb', offset: 1 },
    { token: ' ', offset: 3 },
    { token: '\n', offset: 4 },
  ]);
  // Offsets count code points (as Python's len in vLLM), not UTF-16 units: the emoji is one.
  t.deepEqual(tokenize('x 😀y z'), [
    { token: 'x', offset: 0 },
    { token: ' 😀y', offset: 1 },
    { token: ' z', offset: 4 },
  ]);
  t.deepEqual(tokenize(''), []);
  for (const text of ['Q: what is 7 plus 3?\nA: 10, because  reasons', '  lead', 'abcdefghijklmnopqrstuvwxyz']) {
    t.is(tokenize(text).map((x) => x.token).join(''), text, 'the tokens concatenate to the text');
  }
});

test('tokenLogprobs: first null, chosen in [-8, -0.01], top-k valid, sorted, k + the actual token, prefix-consistent', (t) => {
  const text = 'The quick brown fox jumps over the lazy dog, twice.';
  const lp = tokenLogprobs('lm', text, 4, 200);
  t.deepEqual(lp.tokens, tokenize(text).map((x) => x.token));
  t.deepEqual(lp.offsets, tokenize(text).map((x) => x.offset));
  t.is(lp.tokenLogprobs[0], null);
  t.is(lp.top[0], null);
  for (let i = 1; i < lp.tokens.length; i++) {
    const chosen = lp.tokenLogprobs[i] as number;
    const top = lp.top[i] as Record<string, number>;
    const tok = lp.tokens[i] as string;
    t.true(chosen >= -8 && chosen <= -0.01, `token ${i}: ${chosen}`);
    t.is(top[tok], chosen, 'the actual token is listed with its own log-prob');
    const entries = Object.entries(top);
    const inTopK = entries.slice(0, 4).some(([name]) => name === tok);
    t.is(entries.length, inTopK ? 4 : 5);
    const values = entries.map(([, v]) => v);
    t.deepEqual(values, [...values].sort((a, b) => b - a), 'sorted, highest first');
    t.true(values.every((v) => v <= 0));
    t.true(values.reduce((sum, v) => sum + Math.exp(v), 0) < 1, 'probabilities sum to less than 1');
    t.true(entries.every(([name]) => name === tok || (/^tok(\d+)$/.test(name) && Number(name.slice(3)) < 200)));
  }
  const small = tokenLogprobs('lm', text, 2, 200);
  const large = tokenLogprobs('lm', text, 6, 200);
  t.deepEqual(small.tokenLogprobs, lp.tokenLogprobs);
  for (let i = 1; i < lp.tokens.length; i++) {
    t.deepEqual(Object.entries(small.top[i] as object).slice(0, 2), Object.entries(large.top[i] as object).slice(0, 2), 'top-2 is a prefix of top-6');
  }
  t.notDeepEqual(tokenLogprobs('other', text, 4, 200).tokenLogprobs, lp.tokenLogprobs);
  // k = 0: only the actual token; a vocabulary smaller than k: as many distinct fakes as it has.
  t.deepEqual(Object.keys(tokenLogprobs('lm', text, 0, 200).top[1] as object), [lp.tokens[1]]);
  t.is(Object.keys(tokenLogprobs('lm', text, 10, 3).top[1] as object).length, 4);
  // With a BOS: one more token, every offset shifted by its length, the first text token now has a log-prob.
  const bos = tokenLogprobs('lm', text, 4, 200, { bos: true });
  t.deepEqual(bos.tokens, [FAKE_BOS, ...lp.tokens]);
  t.deepEqual(bos.offsets, [0, ...lp.offsets.map((o) => o + FAKE_BOS.length)]);
  t.is(typeof bos.tokenLogprobs[1], 'number');
});

test('embeddingOf: dim numbers of unit norm, deterministic, per model and text', (t) => {
  const e = embeddingOf('emb', 'hello', 16);
  t.is(e.length, 16);
  t.true(Math.abs(Math.hypot(...e) - 1) < 1e-12);
  t.deepEqual(embeddingOf('emb', 'hello', 16), e);
  t.notDeepEqual(embeddingOf('emb', 'hullo', 16), e);
  t.notDeepEqual(embeddingOf('emb2', 'hello', 16), e);
  const empty = embeddingOf('emb', '', 16);
  t.true(Math.abs(Math.hypot(...empty) - 1) < 1e-12, 'a text without words has an embedding too');
});

test('embeddingOf: a hashed bag of lower-cased words — word order, case and punctuation do not matter; shared words make texts close', (t) => {
  const dot = (a: number[], b: number[]): number => a.reduce((s, x, i) => s + x * (b[i] as number), 0);
  const e = (text: string, model = 'emb') => embeddingOf(model, text, 64);
  t.deepEqual(e('the answer is clear'), e('Clear, the ANSWER is!'));
  // A sum of per-word vectors, normalised: a repeated word scales its vector, which normalising undoes.
  e('alpha alpha').forEach((x, i) => t.true(Math.abs(x - (e('alpha')[i] as number)) < 1e-12));
  t.true(dot(e('clear correct answer'), e('clear correct reply')) > dot(e('clear correct answer'), e('wrong vague reply')));
  // Another model hashes the same words elsewhere: its space is unrelated.
  t.true(Math.abs(dot(e('clear correct answer'), e('clear correct answer', 'other'))) < 0.6);
});

// ----------------------------------------------------------------------------------------------------------------
// vLLM.

test('vllm /classify: one conversation, raw with use_activation:false, sigmoid otherwise; input strings with and without a BOS', async (t) => {
  const s = await serve(t, { api: 'vllm', model: 'rm' });
  const raw = rewardOf('rm', 'What is 2+2?', '4');
  const messages = conversation('What is 2+2?', '4');

  const a = await post(`${s.url}/classify`, { model: 'rm', messages, use_activation: false });
  t.is(a.status, 200);
  t.is(a.headers.get('content-type'), 'application/json');
  t.like(a.json, { object: 'list', model: 'rm' });
  t.regex(String(field(a.json, 'id')), /^classify-\d+$/);
  t.true(Number.isInteger(field(a.json, 'created')));
  t.deepEqual(field(a.json, 'data'), [{ index: 0, label: 'LABEL_0', probs: [raw], num_classes: 1 }]);
  t.like(field(a.json, 'usage'), { completion_tokens: 0 });
  t.is(field(a.json, 'usage', 'prompt_tokens'), field(a.json, 'usage', 'total_tokens'));

  // A client that forgets use_activation:false (or sends true) gets sigmoid(raw), as the real server answers.
  t.deepEqual(field((await post(`${s.url}/classify`, { model: 'rm', messages })).json, 'data', 0, 'probs'), [sigmoid(raw)]);
  t.deepEqual(field((await post(`${s.url}/classify`, { messages, use_activation: true })).json, 'data', 0, 'probs'), [sigmoid(raw)]);

  const texts = ['<|user|>Q<|assistant|>A', 'another templated text'];
  const b = await post(`${s.url}/classify`, { model: 'rm', input: texts, add_special_tokens: false, use_activation: false });
  t.deepEqual(field(b.json, 'data'), texts.map((x, index) => ({ index, label: 'LABEL_0', probs: [rewardOfText('rm', x)], num_classes: 1 })));
  // add_special_tokens defaults to true for `input`: a second BOS, another reward.
  const c = await post(`${s.url}/classify`, { input: texts, use_activation: false });
  t.deepEqual(field(c.json, 'data', 1, 'probs'), [rewardOfText('rm', FAKE_BOS + (texts[1] as string))]);
  t.not(rewardOfText('rm', FAKE_BOS + (texts[1] as string)), rewardOfText('rm', texts[1] as string));
});

test('vllm: with classifyRoute false, /classify is 404 and /pooling answers the same bodies with task "classify"', async (t) => {
  const s = await serve(t, { api: 'vllm', model: 'rm', classifyRoute: false });
  const messages = conversation('Name a colour.', 'Blue.');
  const missing = await post(`${s.url}/classify`, { model: 'rm', messages, use_activation: false });
  t.is(missing.status, 404);
  t.deepEqual(missing.json, { detail: 'Not Found' });
  t.is((await post(`${s.url}/v1/classify`, { messages })).status, 404);

  const p = await post(`${s.url}/pooling`, { model: 'rm', messages, use_activation: false, task: 'classify' });
  t.is(p.status, 200);
  t.regex(String(field(p.json, 'id')), /^pool-\d+$/);
  t.like(p.json, { object: 'list', model: 'rm' });
  t.deepEqual(field(p.json, 'data'), [{ index: 0, object: 'pooling', data: [rewardOf('rm', 'Name a colour.', 'Blue.')] }]);
  t.deepEqual(field((await post(`${s.url}/pooling`, { messages, task: 'classify' })).json, 'data', 0, 'data'), [sigmoid(rewardOf('rm', 'Name a colour.', 'Blue.'))]);
  const wrongTask = await post(`${s.url}/pooling`, { messages, task: 'embed' });
  t.is(wrongTask.status, 400);
  t.regex(String(field(wrongTask.json, 'error', 'message')), /Unsupported task/);
});

test('vllm errors: nested by default, flat on request; unknown model 404, bad JSON, bad shapes, wrong content type', async (t) => {
  const nested = await serve(t, { api: 'vllm', model: 'rm' });
  const flat = await serve(t, { api: 'vllm', model: 'rm', errorStyle: 'flat' });
  const messages = conversation('Q', 'A');

  const n404 = await post(`${nested.url}/classify`, { model: 'other', messages, use_activation: false });
  t.is(n404.status, 404);
  t.deepEqual(n404.json, { error: { message: 'The model `other` does not exist.', type: 'NotFoundError', param: 'model', code: 404 } });
  const f404 = await post(`${flat.url}/classify`, { model: 'other', messages, use_activation: false });
  t.is(f404.status, 404);
  t.deepEqual(f404.json, { object: 'error', message: 'The model `other` does not exist.', type: 'NotFoundError', param: 'model', code: 404 });

  const badJson = await postRaw(`${nested.url}/classify`, '{"messages": [');
  t.is(badJson.status, 400);
  t.like(badJson.json, { error: { type: 'Bad Request', code: 400 } });
  t.regex(String(field(badJson.json, 'error', 'message')), /JSON decode error/);
  const flatBad = await postRaw(`${flat.url}/pooling`, 'not json');
  t.is(flatBad.status, 400);
  t.like(flatBad.json, { object: 'error', code: 400 });

  for (const body of [{ messages: 'nope' }, [1, 2], { model: 'rm' }, { messages, input: ['x'] }, { input: [] }, { messages, use_activation: 'no' }]) {
    const r = await post(`${nested.url}/classify`, body);
    t.is(r.status, 400, JSON.stringify(body));
    t.is(typeof field(r.json, 'error', 'message'), 'string');
    t.is(field(r.json, 'error', 'code'), 400);
  }
  const threeTurns = await post(`${nested.url}/classify`, { messages: [...messages, { role: 'user', content: 'more?' }] });
  t.is(threeTurns.status, 400);
  t.like(threeTurns.json, { error: { type: 'BadRequestError', code: 400 } });

  const plain = await postRaw(`${nested.url}/classify`, JSON.stringify({ messages }), 'text/plain;charset=UTF-8');
  t.is(plain.status, 400);
  t.is(field(plain.json, 'error', 'message'), "Unsupported Media Type: Only 'application/json' is allowed");

  const models = await get(`${nested.url}/v1/models`);
  t.is(models.status, 200);
  t.like(models.json, { object: 'list', data: [{ id: 'rm', object: 'model', max_model_len: FAKE_MAX_MODEL_LEN }] });
  const health = await get(`${nested.url}/health`);
  t.is(health.status, 200);
  t.is(health.text, '');
  t.deepEqual((await get(`${nested.url}/classify`)).json, { detail: 'Method Not Allowed' });
  t.deepEqual((await get(`${nested.url}/nowhere`)).json, { detail: 'Not Found' });
  t.is((await get(`${nested.url}/nowhere`)).status, 404);
});

test('vllm /v1/completions: a BOS unless add_special_tokens is false, its max-logprobs message, and /tokenize', async (t) => {
  const s = await serve(t, { api: 'vllm', model: 'lm', vocab: 300 });
  const text = 'User: hi\nAssistant: hello there';
  const body = { model: 'lm', prompt: text, echo: true, max_tokens: 0, logprobs: 2, temperature: 0 };
  const without = await post(`${s.url}/v1/completions`, { ...body, add_special_tokens: false });
  const expected = tokenLogprobs('lm', text, 2, 300);
  t.deepEqual(field(without.json, 'choices', 0, 'logprobs'), { text_offset: expected.offsets, token_logprobs: expected.tokenLogprobs, tokens: expected.tokens, top_logprobs: expected.top });
  t.like(field(without.json, 'choices', 0), { index: 0, text, finish_reason: 'length', stop_reason: null });
  const withBos = await post(`${s.url}/v1/completions`, body);
  const bos = tokenLogprobs('lm', text, 2, 300, { bos: true });
  t.deepEqual(field(withBos.json, 'choices', 0, 'logprobs', 'tokens'), bos.tokens);
  t.deepEqual(field(withBos.json, 'choices', 0, 'logprobs', 'text_offset'), bos.offsets);
  t.is(field(withBos.json, 'choices', 0, 'text'), text, 'the echoed text has no BOS; the offsets do count it');
  t.is(field(withBos.json, 'usage', 'prompt_tokens'), expected.tokens.length + 1);

  const tooMany = await post(`${s.url}/v1/completions`, { ...body, logprobs: 21 });
  t.is(tooMany.status, 400);
  t.deepEqual(tooMany.json, { error: { message: 'Requested sample logprobs of 21, which is greater than max allowed: 20', type: 'BadRequestError', param: null, code: 400 } });

  const tok = await post(`${s.url}/tokenize`, { model: 'lm', prompt: 'Hi there', add_special_tokens: false });
  t.like(tok.json, { count: 2, max_model_len: FAKE_MAX_MODEL_LEN });
  t.is((field(tok.json, 'tokens') as number[]).length, 2);
  t.is(field((await post(`${s.url}/tokenize`, { prompt: 'Hi there' })).json, 'count'), 3);
});

// ----------------------------------------------------------------------------------------------------------------
// SGLang.

test('sglang (spec routes): /v1/classify like vLLM /classify, flat errors, no /pooling', async (t) => {
  const s = await serve(t, { api: 'sglang', model: 'rm-s' });
  const r = await post(`${s.url}/v1/classify`, { model: 'rm-s', messages: conversation('P', 'R'), use_activation: false });
  t.is(r.status, 200);
  t.deepEqual(field(r.json, 'data'), [{ index: 0, label: 'LABEL_0', probs: [rewardOf('rm-s', 'P', 'R')], num_classes: 1 }]);
  t.deepEqual(field((await post(`${s.url}/v1/classify`, { input: ['x'], add_special_tokens: false, use_activation: false })).json, 'data', 0, 'probs'), [rewardOfText('rm-s', 'x')]);
  const wrong = await post(`${s.url}/v1/classify`, { model: 'nope', messages: conversation('P', 'R') });
  t.is(wrong.status, 404);
  t.like(wrong.json, { object: 'error', message: 'The model `nope` does not exist.', code: 404 });
  t.is((await post(`${s.url}/pooling`, { messages: conversation('P', 'R'), task: 'classify' })).status, 404);
  t.is((await post(`${s.url}/classify`, { messages: conversation('P', 'R') })).status, 404);
  t.like((await get(`${s.url}/v1/models`)).json, { object: 'list', data: [{ id: 'rm-s', object: 'model' }] });
});

test('sglang (real routes): /v1/classify softmaxes one label to 1; the native /classify answers the raw reward', async (t) => {
  const s = await serve(t, { api: 'sglang', model: 'rm-s', sglangRoutes: 'real' });
  const v1 = await post(`${s.url}/v1/classify`, { model: 'rm-s', input: ['a text', 'another'] });
  t.deepEqual(field(v1.json, 'data'), [
    { index: 0, label: 'LABEL_0', probs: [1], num_classes: 1 },
    { index: 1, label: 'LABEL_0', probs: [1], num_classes: 1 },
  ]);
  const messagesOnly = await post(`${s.url}/v1/classify`, { messages: conversation('P', 'R') });
  t.is(messagesOnly.status, 400);
  t.like(messagesOnly.json, { object: 'error', code: 400 });

  const one = await post(`${s.url}/classify`, { model: 'rm-s', text: 'a text' });
  t.is(one.status, 200);
  t.deepEqual(field(one.json, 'embedding'), [rewardOfText('rm-s', 'a text')]);
  t.is(typeof field(one.json, 'meta_info', 'prompt_tokens'), 'number');
  const many = await post(`${s.url}/classify`, { text: ['a text', 'another'] });
  t.deepEqual((many.json as { embedding: number[] }[]).map((x) => x.embedding), [[rewardOfText('rm-s', 'a text')], [rewardOfText('rm-s', 'another')]]);
  const none = await post(`${s.url}/classify`, { messages: conversation('P', 'R') });
  t.is(none.status, 400);
  t.deepEqual(none.json, { error: { message: 'Either text, input_ids or input_embeds should be provided.' } });
});

// ----------------------------------------------------------------------------------------------------------------
// TEI.

test('tei /predict: batch cap 422 with the exact message, 32 fine, one pair flat, raw_scores, single strings, empty', async (t) => {
  const s = await serve(t, { api: 'tei', model: 'rm-tei' });
  const info = await get(`${s.url}/info`);
  t.like(info.json, { model_id: 'rm-tei', max_client_batch_size: 32 });
  t.is((await get(`${s.url}/health`)).status, 200);

  const pairs = (n: number): [string, string][] => Array.from({ length: n }, (_, i) => [`question ${i}`, `answer ${i}`]);
  const big = await post(`${s.url}/predict`, { inputs: pairs(40), raw_scores: true });
  t.is(big.status, 422);
  t.deepEqual(big.json, { error: 'batch size 40 > maximum allowed batch size 32', error_type: 'Validation' });

  const full = await post(`${s.url}/predict`, { inputs: pairs(32), raw_scores: true });
  t.is(full.status, 200);
  t.deepEqual(full.json, pairs(32).map(([q, a]) => [{ score: rewardOf('rm-tei', q, a), label: 'LABEL_0' }]));
  const squashed = await post(`${s.url}/predict`, { inputs: pairs(3) });
  t.deepEqual(squashed.json, pairs(3).map(([q, a]) => [{ score: sigmoid(rewardOf('rm-tei', q, a)), label: 'LABEL_0' }]));

  // ["Q", "A"] is ONE pair: a flat list of predictions, not a batch of two.
  const single = await post(`${s.url}/predict`, { inputs: ['Q', 'A'], raw_scores: true });
  t.deepEqual(single.json, [{ score: rewardOf('rm-tei', 'Q', 'A'), label: 'LABEL_0' }]);
  const text = await post(`${s.url}/predict`, { inputs: 'one whole text', raw_scores: true });
  t.deepEqual(text.json, [{ score: rewardOfText('rm-tei', 'one whole text'), label: 'LABEL_0' }]);
  const texts = await post(`${s.url}/predict`, { inputs: ['a', 'b', 'c'], raw_scores: true });
  t.deepEqual(texts.json, ['a', 'b', 'c'].map((x) => [{ score: rewardOfText('rm-tei', x), label: 'LABEL_0' }]));

  const empty = await post(`${s.url}/predict`, { inputs: [] });
  t.is(empty.status, 400);
  t.deepEqual(empty.json, { error: 'Input cannot be empty', error_type: 'Empty' });
});

test('tei: axum rejections in plain text, empty 404/405, /embed and /v1/embeddings, and a 413 validation status on request', async (t) => {
  const s = await serve(t, { api: 'tei', model: 'emb', embedDim: 8 });
  const badJson = await postRaw(`${s.url}/predict`, '{"inputs": ');
  t.is(badJson.status, 400);
  t.regex(badJson.text, /^Failed to parse the request body as JSON: /);
  t.regex(badJson.headers.get('content-type') ?? '', /^text\/plain/);
  const badShape = await post(`${s.url}/predict`, { inputs: 5 });
  t.is(badShape.status, 422);
  t.regex(badShape.text, /^Failed to deserialize the JSON body into the target type: /);
  t.is((await postRaw(`${s.url}/predict`, '{"inputs":["Q","A"]}', 'text/plain')).status, 415);
  const nowhere = await post(`${s.url}/get_reward`, { query: ['x'] });
  t.is(nowhere.status, 404);
  t.is(nowhere.text, '');
  t.is((await get(`${s.url}/predict`)).status, 405);

  const embed = await post(`${s.url}/embed`, { inputs: ['a', 'b'], normalize: true, truncate: true });
  t.deepEqual(embed.json, [embeddingOf('emb', 'a', 8), embeddingOf('emb', 'b', 8)]);
  t.deepEqual((await post(`${s.url}/embed`, { inputs: 'a' })).json, [embeddingOf('emb', 'a', 8)]);
  const v1 = await post(`${s.url}/v1/embeddings`, { model: 'anything', input: ['a'], encoding_format: 'float' });
  t.like(v1.json, { object: 'list', model: 'emb', data: [{ object: 'embedding', index: 0 }] });
  t.deepEqual(field(v1.json, 'data', 0, 'embedding'), embeddingOf('emb', 'a', 8));

  const strict = await serve(t, { api: 'tei', model: 'rm', maxBatch: 4, teiValidationStatus: 413 });
  const over = await post(`${strict.url}/predict`, { inputs: Array.from({ length: 5 }, () => ['q', 'a']) });
  t.is(over.status, 413);
  t.deepEqual(over.json, { error: 'batch size 5 > maximum allowed batch size 4', error_type: 'Validation' });
  t.like((await get(`${strict.url}/info`)).json, { max_client_batch_size: 4 });
  const v1Over = await post(`${strict.url}/v1/embeddings`, { input: ['a', 'b', 'c', 'd', 'e'] });
  t.deepEqual(v1Over.json, { message: 'batch size 5 > maximum allowed batch size 4', code: 413, type: 'Validation' });
});

// ----------------------------------------------------------------------------------------------------------------
// OpenRLHF.

test('openrlhf /get_reward: rewards = scores per query; any bad body is a plain-text 500; FastAPI 404/405', async (t) => {
  const s = await serve(t, { api: 'openrlhf', model: 'rm-r' });
  const queries = ['Q: hi\nA: hello', 'Q: hi\nA: go away'];
  const r = await post(`${s.url}/get_reward`, { query: queries });
  t.is(r.status, 200);
  const rewards = queries.map((q) => rewardOfText('rm-r', q));
  t.deepEqual(r.json, { rewards, scores: rewards, extra_logs: { dummy_scores: rewards } });
  for (const raw of ['not json', '{"query": "one string"}', '{"query": []}', '{}']) {
    const bad = await postRaw(`${s.url}/get_reward`, raw);
    t.is(bad.status, 500, raw);
    t.is(bad.text, 'Internal Server Error');
  }
  t.deepEqual((await get(`${s.url}/get_reward`)).json, { detail: 'Method Not Allowed' });
  t.deepEqual((await post(`${s.url}/predict`, {})).json, { detail: 'Not Found' });
});

// ----------------------------------------------------------------------------------------------------------------
// OpenAI-compatible completions and embeddings, Ollama.

test('openai /v1/completions: echo log-probs with offsets, top-k and a null first token; array prompts; refusals', async (t) => {
  const s = await serve(t, { api: 'openai', model: 'lm', vocab: 500 });
  const text = 'The answer is forty-two, obviously.';
  const r = await post(`${s.url}/v1/completions`, { model: 'lm', prompt: text, echo: true, max_tokens: 0, logprobs: 3, temperature: 0 });
  t.is(r.status, 200);
  t.like(r.json, { object: 'text_completion', model: 'lm' });
  const lp = field(r.json, 'choices', 0, 'logprobs') as { tokens: string[]; token_logprobs: (number | null)[]; top_logprobs: (Record<string, number> | null)[]; text_offset: number[] };
  const expected = tokenLogprobs('lm', text, 3, 500);
  t.is(field(r.json, 'choices', 0, 'text'), text);
  t.deepEqual(lp.tokens, expected.tokens);
  t.is(lp.tokens.join(''), text);
  t.deepEqual(lp.text_offset, expected.offsets);
  lp.tokens.forEach((tok, i) => t.is(text.slice(lp.text_offset[i], lp.text_offset[i] as number + tok.length), tok));
  t.is(lp.token_logprobs[0], null);
  t.is(lp.top_logprobs[0], null);
  t.deepEqual(lp.token_logprobs, expected.tokenLogprobs);
  t.deepEqual(lp.top_logprobs, expected.top);
  t.true(lp.top_logprobs.slice(1).every((top) => [3, 4].includes(Object.keys(top ?? {}).length)));
  t.is(field(r.json, 'usage', 'prompt_tokens'), expected.tokens.length);

  const prompts = ['first prompt here', 'second one'];
  const many = await post(`${s.url}/v1/completions`, { prompt: prompts, echo: true, max_tokens: 0, logprobs: 1 });
  const choices = field(many.json, 'choices') as { index: number; text: string; logprobs: { tokens: string[]; token_logprobs: unknown[] } }[];
  t.deepEqual(choices.map((c) => c.index), [0, 1]);
  t.deepEqual(choices.map((c) => c.text), prompts);
  prompts.forEach((p, i) => t.deepEqual(choices[i]?.logprobs.token_logprobs, tokenLogprobs('lm', p, 1, 500).tokenLogprobs));
  t.is(field((await post(`${s.url}/v1/completions`, { prompt: text, echo: true, max_tokens: 0 })).json, 'choices', 0, 'logprobs'), null);

  for (const body of [{ prompt: text, max_tokens: 0, logprobs: 1 }, { prompt: text, echo: true, logprobs: 1 }, { prompt: text, echo: true, max_tokens: 5, logprobs: 1 }]) {
    const refused = await post(`${s.url}/v1/completions`, body);
    t.is(refused.status, 400);
    t.regex(String(field(refused.json, 'error', 'message')), /only scores prompts/);
  }
  const tooMany = await post(`${s.url}/v1/completions`, { prompt: text, echo: true, max_tokens: 0, logprobs: 21 });
  t.is(tooMany.status, 400);
  t.like(tooMany.json, { error: { message: "Invalid value for 'logprobs': must be less than or equal to 20.", param: 'logprobs' } });
  const wrong = await post(`${s.url}/v1/completions`, { model: 'gpt-x', prompt: text, echo: true, max_tokens: 0 });
  t.is(wrong.status, 404);
  t.like(wrong.json, { error: { code: 'model_not_found', type: 'invalid_request_error' } });
  const route = await post(`${s.url}/v1/chat/completions`, {});
  t.is(route.status, 404);
  t.like(route.json, { error: { message: 'Invalid URL (POST /v1/chat/completions)' } });
});

test('embeddings: OpenAI /v1/embeddings (float and base64) and Ollama /api/embed, with their errors', async (t) => {
  const o = await serve(t, { api: 'openai', model: 'emb', embedDim: 8 });
  const r = await post(`${o.url}/v1/embeddings`, { model: 'emb', input: ['a', 'b'], encoding_format: 'float' });
  t.is(r.status, 200);
  t.like(r.json, { object: 'list', model: 'emb', data: [{ object: 'embedding', index: 0 }, { object: 'embedding', index: 1 }] });
  t.deepEqual((field(r.json, 'data') as { embedding: number[] }[]).map((d) => d.embedding), [embeddingOf('emb', 'a', 8), embeddingOf('emb', 'b', 8)]);
  t.is(typeof field(r.json, 'usage', 'prompt_tokens'), 'number');
  const b64 = await post(`${o.url}/v1/embeddings`, { input: 'a', encoding_format: 'base64' });
  const bytes = Buffer.from(String(field(b64.json, 'data', 0, 'embedding')), 'base64');
  const floats = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
  t.deepEqual([...floats], embeddingOf('emb', 'a', 8).map((x) => Math.fround(x)));
  t.is((await post(`${o.url}/v1/embeddings`, { model: 'other', input: 'a' })).status, 404);
  t.is((await post(`${o.url}/v1/embeddings`, { input: [] })).status, 400);

  const ol = await serve(t, { api: 'ollama', model: 'nomic-embed-text', embedDim: 8 });
  const e = await post(`${ol.url}/api/embed`, { model: 'nomic-embed-text', input: ['a', 'b'] });
  t.is(e.status, 200);
  t.like(e.json, { model: 'nomic-embed-text' });
  t.deepEqual(field(e.json, 'embeddings'), [embeddingOf('nomic-embed-text', 'a', 8), embeddingOf('nomic-embed-text', 'b', 8)]);
  t.deepEqual(field((await post(`${ol.url}/api/embed`, { model: 'nomic-embed-text:latest', input: 'a' })).json, 'embeddings'), [embeddingOf('nomic-embed-text', 'a', 8)]);
  const unknown = await post(`${ol.url}/api/embed`, { model: 'llama3', input: 'a' });
  t.is(unknown.status, 404);
  t.deepEqual(unknown.json, { error: 'model "llama3" not found, try pulling it first' });
  const noModel = await post(`${ol.url}/api/embed`, { input: 'a' });
  t.is(noModel.status, 400);
  t.deepEqual(noModel.json, { error: 'model is required' });
  t.is((await postRaw(`${ol.url}/api/embed`, '{')).status, 400);
  t.like((await get(`${ol.url}/api/tags`)).json, { models: [{ name: 'nomic-embed-text:latest' }] });
  const nowhere = await post(`${ol.url}/v1/classify`, {});
  t.is(nowhere.status, 404);
  t.is(nowhere.text, '404 page not found');
});

// ----------------------------------------------------------------------------------------------------------------
// Faults.

test('every429: every n-th scoring POST (GETs not counted) is 429 in the API shape with Retry-After', async (t) => {
  const tei = await serve(t, { api: 'tei', model: 'm', faults: { every429: 3, retryAfterS: 2 } });
  const statuses: number[] = [];
  for (let i = 0; i < 7; i++) {
    await get(`${tei.url}/info`);
    const r = await post(`${tei.url}/predict`, { inputs: [['q', `a${i}`]], raw_scores: true });
    statuses.push(r.status);
    if (r.status === 429) {
      t.deepEqual(r.json, { error: 'Model is overloaded', error_type: 'Overloaded' });
      t.is(r.headers.get('retry-after'), '2');
    }
  }
  t.deepEqual(statuses, [200, 200, 429, 200, 200, 429, 200]);
  t.deepEqual(tei.requests.filter((q) => q.method === 'POST').map((q) => q.status), statuses);

  const vllm = await serve(t, { api: 'vllm', model: 'm', faults: { every429: 1 } });
  const r = await post(`${vllm.url}/classify`, { messages: conversation('q', 'a'), use_activation: false });
  t.is(r.status, 429);
  t.is(r.headers.get('retry-after'), '0');
  t.deepEqual(r.json, { error: { message: 'Too Many Requests', type: 'Too Many Requests', param: null, code: 429 } });
  const openai = await serve(t, { api: 'openai', model: 'm', faults: { every429: 1 } });
  t.like((await post(`${openai.url}/v1/embeddings`, { input: 'a' })).json, { error: { type: 'requests', code: 'rate_limit_exceeded' } });
});

test('dieAfter: after N answers the server refuses connections, then listens again on the same port, once', async (t) => {
  const s = await serve(t, { api: 'openrlhf', model: 'm', faults: { dieAfter: 2, downMs: 2000 } });
  const reward = () => fetch(`${s.url}/get_reward`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: ['q'] }) });
  t.is((await reward()).status, 200);
  t.is((await reward()).status, 200);
  const failure = await until('a connection error while the server is down', 10_000, () => connectionError(reward().then((r) => r.text())));
  t.regex(failure, /ECONNREFUSED|ECONNRESET|UND_ERR_SOCKET|other side closed/);
  const back = await until('an answer once the server is back', 20_000, async () => {
    try {
      const r = await reward();
      return r.status;
    } catch {
      return undefined;
    }
  });
  t.is(back, 200);
  t.true(await accepts(s.port), 'the same port');
  for (let i = 0; i < 4; i++) t.is((await reward()).status, 200, 'it dies only once');
  t.deepEqual(field(s.requests.at(-1), 'body'), { query: ['q'] });
});

test('badText: a text containing it is refused in each API’s own way; other texts are scored', async (t) => {
  const msg = "This model's maximum context length is 32 tokens. However, you requested 99 tokens.";
  const faults = { badText: 'VERY-LONG' };
  const vllm = await serve(t, { api: 'vllm', model: 'm', faults });
  const v = await post(`${vllm.url}/classify`, { messages: conversation('q', 'a VERY-LONG answer'), use_activation: false });
  t.is(v.status, 400);
  t.deepEqual(v.json, { error: { message: msg, type: 'BadRequestError', param: null, code: 400 } });
  t.is((await post(`${vllm.url}/classify`, { messages: conversation('q', 'a short answer'), use_activation: false })).status, 200);
  t.is((await post(`${vllm.url}/v1/completions`, { prompt: 'VERY-LONG', echo: true, max_tokens: 0 })).status, 400);

  const sglang = await serve(t, { api: 'sglang', model: 'm', faults: { badText: 'X', badTextMessage: 'too long' } });
  t.deepEqual((await post(`${sglang.url}/v1/classify`, { messages: conversation('X', 'a') })).json, { object: 'error', message: 'too long', type: 'BadRequestError', param: null, code: 400 });

  const tei = await serve(t, { api: 'tei', model: 'm', faults });
  const te = await post(`${tei.url}/predict`, { inputs: [['q', 'a'], ['VERY-LONG q', 'a']] });
  t.is(te.status, 422);
  t.deepEqual(te.json, { error: msg, error_type: 'Validation' });

  const rlhf = await serve(t, { api: 'openrlhf', model: 'm', faults });
  const rr = await post(`${rlhf.url}/get_reward`, { query: ['ok', 'VERY-LONG'] });
  t.is(rr.status, 500);
  t.is(rr.text, 'Internal Server Error');

  const ollama = await serve(t, { api: 'ollama', model: 'm', faults });
  const ol = await post(`${ollama.url}/api/embed`, { model: 'm', input: ['VERY-LONG'] });
  t.is(ol.status, 400);
  t.deepEqual(ol.json, { error: msg });
});

test('delayMs: no answer before the delay', async (t) => {
  const s = await serve(t, { api: 'openrlhf', model: 'm', delayMs: 150 });
  const started = performance.now();
  t.is((await post(`${s.url}/get_reward`, { query: ['q'] })).status, 200);
  t.true(performance.now() - started >= 149);
});

test('requests: every request in arrival order with its method, path, parsed (or raw) body and status', async (t) => {
  const s = await serve(t, { api: 'vllm', model: 'm' });
  await get(`${s.url}/v1/models?x=1`);
  await post(`${s.url}/classify`, { messages: conversation('q', 'a'), use_activation: false });
  await postRaw(`${s.url}/pooling`, 'oops');
  t.deepEqual(s.requests, [
    { method: 'GET', path: '/v1/models', body: undefined, status: 200 },
    { method: 'POST', path: '/classify', body: { messages: conversation('q', 'a'), use_activation: false }, status: 200 },
    { method: 'POST', path: '/pooling', body: 'oops', status: 400 },
  ]);
});

test('close(): nothing listens afterwards, it is idempotent, and it also works while the server is down', async (t) => {
  const s = await startInferenceServer({ api: 'tei', model: 'm' });
  t.true(await accepts(s.port));
  await s.close();
  await s.close();
  t.false(await accepts(s.port));

  const down = await startInferenceServer({ api: 'tei', model: 'm', faults: { dieAfter: 1, downMs: 60_000 } });
  t.teardown(() => down.close());
  t.is((await post(`${down.url}/predict`, { inputs: ['q', 'a'] })).status, 200);
  await until('the server to go down', 10_000, async () => ((await accepts(down.port)) ? undefined : true));
  await down.close();
  t.false(await accepts(down.port));
});

// ----------------------------------------------------------------------------------------------------------------
// The runnable entry.

test('inference-server-main: one "listening on" line, serves the options given, exits 0 on SIGTERM and SIGINT', async (t) => {
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    const child = start(t, process.execPath, [`--import=${tsxLoader}`, mainEntry, '--api', 'tei', '--model', 'rm-x', '--max-batch', '4', '--delay-ms', '1']);
    const [, url] = await child.line(/^listening on (http:\/\/127\.0\.0\.1:\d+)$/m, { stream: 'stdout', what: 'the listening line' });
    t.like((await get(`${url}/info`)).json, { model_id: 'rm-x', max_client_batch_size: 4 });
    t.is((await post(`${url}/predict`, { inputs: Array.from({ length: 5 }, () => ['q', 'a']) })).status, 422);
    t.is(child.stdout(), `listening on ${url}\n`);
    t.is(await child.stop(signal), 0, signal);
  }
  const bad = await run(process.execPath, [`--import=${tsxLoader}`, mainEntry, '--api', 'nope', '--model', 'm'], { ms: 60_000 });
  t.is(bad.status, 2);
  t.regex(bad.stderr.trim(), /^inference-server-main: --api must be one of vllm, sglang, tei, openrlhf, openai, ollama, got "nope"$/);
});
