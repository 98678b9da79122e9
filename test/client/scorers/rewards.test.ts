// Reward scorers against the fake inference servers: vLLM /classify and its /pooling fallback, SGLang /v1/classify,
// TEI /predict with its batch cap, OpenRLHF /get_reward with templates; model resolution; the Authorization header.
import test from 'ava';
import { createServerScorer } from '../../../client/scorers/index.js';
import { rewardOf, rewardOfText } from '../../helpers/inference-servers.js';
import { fake, instantRetry, items, nearAll, posts } from './fake.js';
import { countingProxy } from './own-server.js';

const MODEL = 'Skywork/Skywork-Reward-Llama-3.1-8B-v0.2';

test('vllm-classify: /classify, one conversation per request, raw rewards; the model from /v1/models', async (t) => {
  const server = await fake(t, { api: 'vllm', model: MODEL });
  const scorer = createServerScorer({ url: server.url, api: 'vllm-classify' });
  await scorer.check();
  t.is(scorer.model, MODEL);
  const list = items(9);
  const scores = await scorer.score(list);
  nearAll(t, scores, list.map((i) => rewardOf(MODEL, i.prompt, i.response)));
  const bodies = posts(server, '/classify');
  t.is(bodies.length, 1 + list.length); // check()'s one, then one per item
  for (const body of bodies) {
    t.is(body.use_activation, false);
    t.is(body.model, MODEL);
    const messages = body.messages as { role: string; content: string }[];
    t.deepEqual(messages.map((m) => m.role), ['user', 'assistant']);
  }
  t.deepEqual(server.requests.filter((r) => r.path === '/pooling' || r.path === '/v1/classify'), []);
  t.deepEqual(scorer.stats.requests, server.requests.length);
  await scorer.close();
});

test('vllm-classify: where /classify is 404, /pooling with task classify, found once and remembered', async (t) => {
  const server = await fake(t, { api: 'vllm', model: MODEL, classifyRoute: false });
  const lines: string[] = [];
  const scorer = createServerScorer({ url: server.url, api: 'vllm-classify', log: (line) => lines.push(line) });
  await scorer.check();
  t.deepEqual(
    server.requests.map((r) => `${r.method} ${r.path} ${r.status}`),
    ['GET /v1/models 200', 'POST /classify 404', 'POST /v1/classify 404', 'POST /pooling 200'],
  );
  t.true(lines.some((line) => line.includes('using /pooling from now on')), lines.join('\n'));
  const list = items(12);
  nearAll(t, await scorer.score(list), list.map((i) => rewardOf(MODEL, i.prompt, i.response)));
  nearAll(t, await scorer.score(list.slice(0, 3)), list.slice(0, 3).map((i) => rewardOf(MODEL, i.prompt, i.response)));
  const after = server.requests.slice(4);
  t.is(after.length, 15);
  t.true(after.every((r) => r.path === '/pooling' && r.status === 200));
  for (const body of posts(server, '/pooling')) {
    t.is(body.task, 'classify');
    t.is(body.use_activation, false);
  }
});

test('vllm-classify without check(): the first score() finds the route once, even with many requests at once', async (t) => {
  const server = await fake(t, { api: 'vllm', model: MODEL, classifyRoute: false, delayMs: 5 });
  const scorer = createServerScorer({ url: server.url, api: 'vllm-classify', model: MODEL, concurrency: 8 });
  const list = items(24);
  const [a, b] = await Promise.all([scorer.score(list.slice(0, 12)), scorer.score(list.slice(12))]);
  nearAll(t, a, list.slice(0, 12).map((i) => rewardOf(MODEL, i.prompt, i.response)));
  nearAll(t, b, list.slice(12).map((i) => rewardOf(MODEL, i.prompt, i.response)));
  t.is(posts(server, '/classify').length, 1);
  t.is(posts(server, '/v1/classify').length, 1);
  t.is(posts(server, '/pooling').length, 24);
  t.false(server.requests.some((r) => r.path === '/v1/models'), 'the model was given');
});

test('vllm-classify serves SGLang: /classify is 404, /v1/classify answers', async (t) => {
  const server = await fake(t, { api: 'sglang', model: MODEL });
  const scorer = createServerScorer({ url: server.url, api: 'vllm-classify' });
  await scorer.check();
  t.is(scorer.model, MODEL);
  const list = items(6);
  nearAll(t, await scorer.score(list), list.map((i) => rewardOf(MODEL, i.prompt, i.response)));
  t.deepEqual(
    server.requests.filter((r) => r.method === 'POST').map((r) => `${r.path} ${r.status}`),
    ['/classify 404', '/v1/classify 200', ...list.map(() => '/v1/classify 200')],
  );
  t.true(posts(server, '/v1/classify').every((body) => body.use_activation === false));
});

test('tei: inputs is always an array of pairs, raw_scores, no truncate; the model from /info', async (t) => {
  const server = await fake(t, { api: 'tei', model: 'OpenAssistant/reward-model-deberta-v3-large-v2' });
  const scorer = createServerScorer({ url: server.url, api: 'tei' });
  await scorer.check();
  t.is(scorer.model, 'OpenAssistant/reward-model-deberta-v3-large-v2');
  const one = items(1);
  nearAll(t, await scorer.score(one), [rewardOf(scorer.model, one[0]!.prompt, one[0]!.response)]);
  const list = items(40, 'b');
  nearAll(t, await scorer.score(list), list.map((i) => rewardOf(scorer.model, i.prompt, i.response)));
  const bodies = posts(server, '/predict');
  t.deepEqual(bodies[1]?.inputs, [[one[0]!.prompt, one[0]!.response]], 'one item is still an array of arrays');
  for (const body of bodies) {
    t.true(Array.isArray(body.inputs) && (body.inputs as unknown[]).every((pair) => Array.isArray(pair) && pair.length === 2));
    t.is(body.raw_scores, true);
    t.false('truncate' in body);
  }
  t.deepEqual(bodies.slice(2).map((b) => (b.inputs as unknown[]).length), [32, 8]);
});

for (const status of [422, 413] as const) {
  test(`tei: a ${status} "batch size N > maximum allowed batch size 8" is learned, the items re-sent, never an error`, async (t) => {
    const model = 'tei-rm';
    const server = await fake(t, { api: 'tei', model, maxBatch: 8, teiValidationStatus: status });
    const lines: string[] = [];
    // No check(): it would learn the cap from GET /info before any refusal.
    const scorer = createServerScorer({ url: server.url, api: 'tei', model, log: (line) => lines.push(line) });
    const list = items(20);
    nearAll(t, await scorer.score(list), list.map((i) => rewardOf(model, i.prompt, i.response)));
    const more = items(30, 'm');
    nearAll(t, await scorer.score(more), more.map((i) => rewardOf(model, i.prompt, i.response)));
    const sizes = server.requests.map((r) => `${((r.body as { inputs: unknown[] }).inputs).length}:${r.status}`);
    t.deepEqual(sizes.slice(0, 1), [`20:${status}`]);
    t.true(sizes.slice(1).every((s) => s.endsWith(':200') && Number(s.split(':')[0]) <= 8), sizes.join(' '));
    t.is(sizes.length, 1 + 3 + 4);
    t.deepEqual(lines.filter((l) => l.includes('learned TEI batch cap 8')).length, 1);
  });
}

test('tei: check() learns the cap from GET /info; --scorer-batch lowers it further', async (t) => {
  const model = 'tei-rm';
  const server = await fake(t, { api: 'tei', model, maxBatch: 8 });
  const scorer = createServerScorer({ url: server.url, api: 'tei' });
  await scorer.check();
  const list = items(20);
  nearAll(t, await scorer.score(list), list.map((i) => rewardOf(model, i.prompt, i.response)));
  t.deepEqual(posts(server, '/predict').slice(1).map((b) => (b.inputs as unknown[]).length), [8, 8, 4]);
  t.true(server.requests.every((r) => r.status === 200));

  const small = createServerScorer({ url: server.url, api: 'tei', model, batch: 3 });
  const before = posts(server, '/predict').length;
  nearAll(t, await small.score(list.slice(0, 7)), list.slice(0, 7).map((i) => rewardOf(model, i.prompt, i.response)));
  t.deepEqual(posts(server, '/predict').slice(before).map((b) => (b.inputs as unknown[]).length), [3, 3, 1]);
});

test('openrlhf: the default template {prompt}{response}, batches of --scorer-batch', async (t) => {
  const model = 'OpenRLHF/Llama-3-8b-rm-700k';
  const server = await fake(t, { api: 'openrlhf', model });
  const scorer = createServerScorer({ url: server.url, api: 'openrlhf', model, batch: 4 });
  await scorer.check();
  t.is(scorer.model, model);
  const list = items(10);
  nearAll(t, await scorer.score(list), list.map((i) => rewardOfText(model, i.prompt + i.response)));
  const bodies = posts(server, '/get_reward');
  t.deepEqual(bodies.slice(1).map((b) => (b.query as string[]).length), [4, 4, 2]);
  t.deepEqual(bodies[1]?.query, list.slice(0, 4).map((i) => i.prompt + i.response));
});

test('openrlhf: a custom template', async (t) => {
  const model = 'rm';
  const server = await fake(t, { api: 'openrlhf', model });
  const template = '<|user|>\n{prompt}<|end|>\n<|assistant|>\n{response}<|end|>';
  const scorer = createServerScorer({ url: server.url, api: 'openrlhf', model, template });
  const list = [...items(3), { prompt: 'a prompt with {response} in it', response: 'R' }];
  const text = (i: { prompt: string; response: string }) => `<|user|>\n${i.prompt}<|end|>\n<|assistant|>\n${i.response}<|end|>`;
  nearAll(t, await scorer.score(list), list.map((i) => rewardOfText(model, text(i))));
  t.deepEqual(posts(server, '/get_reward')[0]?.query, list.map(text));
});

test('the key goes as Authorization: Bearer on every request', async (t) => {
  const server = await fake(t, { api: 'vllm', model: MODEL });
  const proxy = await countingProxy(t, server.url);
  const scorer = createServerScorer({ url: proxy.url, api: 'vllm-classify', key: 'sk-test-123', retry: instantRetry().retry });
  await scorer.check();
  await scorer.score(items(3));
  t.is(proxy.headers.length, 5);
  t.true(proxy.headers.every((h) => h.authorization === 'Bearer sk-test-123'));
  const anonymous = createServerScorer({ url: proxy.url, api: 'vllm-classify', model: MODEL });
  await anonymous.score(items(1));
  t.is(proxy.headers.at(-1)?.authorization, undefined);
});
