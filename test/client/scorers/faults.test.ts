// Server scorers under the fake servers' faults: 429 with Retry-After on every n-th request, a server that dies
// mid-run and comes back, inputs the model refuses (each API's error shape), and the concurrency bound.
import test from 'ava';
import { ScorerError, createServerScorer, type ScorerApi } from '../../../client/scorers/index.js';
import { rewardOf, rewardOfText, type FakeApi, type FakeServer } from '../../helpers/inference-servers.js';
import { fake, instantRetry, items, nearAll, posts } from './fake.js';
import { countingProxy } from './own-server.js';

const MODEL = 'rm';

/** How many answered-200 requests each item got (keyed by its user message). */
function okPerItem(server: FakeServer, path: string): Map<string, number> {
  const counts = new Map<string, number>();
  for (const r of server.requests) {
    if (r.path !== path || r.status !== 200) continue;
    const prompt = ((r.body as { messages: { content: string }[] }).messages[0] as { content: string }).content;
    counts.set(prompt, (counts.get(prompt) ?? 0) + 1);
  }
  return counts;
}

test('429 with Retry-After on every 3rd request: every value, each item answered once, the waits are the server\'s', async (t) => {
  const server = await fake(t, { api: 'vllm', model: MODEL, faults: { every429: 3, retryAfterS: 2 } });
  const { waits, retry } = instantRetry();
  const scorer = createServerScorer({ url: server.url, api: 'vllm-classify', model: MODEL, retry });
  const list = items(30);
  nearAll(t, await scorer.score(list), list.map((i) => rewardOf(MODEL, i.prompt, i.response)));
  const refused = server.requests.filter((r) => r.status === 429).length;
  t.true(refused >= 10, `${refused} refusals`);
  t.is(waits.length, refused);
  t.true(waits.every((w) => w === 2000), waits.join(' '));
  t.is(scorer.stats.retries, refused);
  const counts = okPerItem(server, '/classify');
  t.is(counts.size, 30);
  t.true([...counts.values()].every((n) => n === 1));
});

test('429 on every 3rd request for TEI and OpenRLHF batches too', async (t) => {
  for (const [api, fakeApi] of [['tei', 'tei'], ['openrlhf', 'openrlhf']] as const) {
    const server = await fake(t, { api: fakeApi, model: MODEL, faults: { every429: 3 } });
    const scorer = createServerScorer({ url: server.url, api, model: MODEL, batch: 4, retry: instantRetry().retry });
    const list = items(37);
    const want = api === 'tei' ? list.map((i) => rewardOf(MODEL, i.prompt, i.response)) : list.map((i) => rewardOfText(MODEL, i.prompt + i.response));
    nearAll(t, await scorer.score(list), want, api);
    t.true(server.requests.some((r) => r.status === 429));
  }
});

test('a server that dies mid-run and comes back on the same port: every value exactly once', async (t) => {
  const server = await fake(t, { api: 'vllm', model: MODEL, delayMs: 2, faults: { dieAfter: 6, downMs: 300 } });
  const lines: string[] = [];
  // Real sleeps (the server is down for real time): 100, 200, 400, 800 ms with random() = 1 — past the 300 ms.
  const scorer = createServerScorer({ url: server.url, api: 'vllm-classify', model: MODEL, retry: { baseMs: 100, random: () => 1 }, log: (l) => lines.push(l) });
  const list = items(24);
  const scores = await scorer.score(list);
  nearAll(t, scores, list.map((i) => rewardOf(MODEL, i.prompt, i.response)));
  t.true(scorer.stats.retries >= 1, lines.join('\n'));
  t.true(lines.some((l) => /ECONNREFUSED|ECONNRESET|closed|socket/i.test(l)), lines.join('\n'));
  const counts = okPerItem(server, '/classify');
  t.is(counts.size, 24, 'every item was answered');
});

test('logprobs and embeddings survive a server that dies once, too', async (t) => {
  const server = await fake(t, { api: 'openai', model: MODEL, faults: { dieAfter: 2, downMs: 200 } });
  const retry = { baseMs: 100, random: () => 1 };
  const lp = createServerScorer({ url: server.url, api: 'openai-logprobs', model: MODEL, retry });
  const scores = await lp.score(items(8));
  t.is(scores.length, 24);
  t.true(scores.every(Number.isFinite));
  const emb = createServerScorer({ url: server.url, api: 'openai-embeddings', model: MODEL, batch: 2, retry });
  const { dim, data } = await emb.embed(['a', 'b', 'c', 'd', 'e']);
  t.is(data.length, 5 * dim);
});

const refusals: { api: ScorerApi; fakeApi: FakeApi; errorStyle?: 'nested' | 'flat'; status: number; path: string }[] = [
  { api: 'vllm-classify', fakeApi: 'vllm', errorStyle: 'nested', status: 400, path: '/classify' },
  { api: 'vllm-classify', fakeApi: 'vllm', errorStyle: 'flat', status: 400, path: '/classify' },
  { api: 'vllm-classify', fakeApi: 'sglang', status: 400, path: '/v1/classify' },
  { api: 'tei', fakeApi: 'tei', status: 422, path: '/predict' },
  { api: 'openai-logprobs', fakeApi: 'openai', status: 400, path: '/v1/completions' },
  { api: 'openai-embeddings', fakeApi: 'tei', status: 422, path: '/v1/embeddings' },
  { api: 'ollama-embed', fakeApi: 'ollama', status: 400, path: '/api/embed' },
];

for (const { api, fakeApi, errorStyle, status, path } of refusals) {
  test(`a refused input (${api} via ${fakeApi}${errorStyle === undefined ? '' : ` ${errorStyle}`} ${status}): not retryable, one line naming the server, the server's message, never the key`, async (t) => {
    const message = "This model's maximum context length is 32 tokens. However, you requested 99 tokens.";
    const server = await fake(t, { api: fakeApi, model: MODEL, ...(errorStyle === undefined ? {} : { errorStyle }), faults: { badText: 'TOO-LONG' } });
    const key = 'sk-secret-0123456789';
    const scorer = createServerScorer({ url: server.url, api, model: MODEL, key, batch: 1, retry: instantRetry().retry });
    const list = items(4);
    list[2] = { prompt: 'TOO-LONG prompt', response: ' and response' };
    const run = scorer.output === 'embedding' ? scorer.embed(list.map((i) => i.prompt)) : scorer.score(list);
    const err = await t.throwsAsync(run, { instanceOf: ScorerError });
    t.false(err.retryable);
    t.is(err.status, status);
    t.is(err.message, `${api} server ${server.url}: ${status} ${message} (item 2)`);
    t.false(err.message.includes(key));
    t.is(scorer.stats.retries, 0);
    t.true(posts(server, path).length <= 4);
  });
}

test('OpenRLHF\'s plain-text 500 is retryable at once, without local retries', async (t) => {
  const server = await fake(t, { api: 'openrlhf', model: MODEL, faults: { badText: 'BAD' } });
  const scorer = createServerScorer({ url: server.url, api: 'openrlhf', model: MODEL, retry: instantRetry().retry });
  const err = await t.throwsAsync(scorer.score([{ prompt: 'BAD', response: '' }]), { instanceOf: ScorerError });
  t.true(err.retryable);
  t.is(err.message, `openrlhf server ${server.url}: 500 Internal Server Error`);
  t.is(server.requests.length, 1);
});

test('at most --scorer-concurrency requests in flight, across concurrent score() calls', async (t) => {
  const server = await fake(t, { api: 'vllm', model: MODEL, delayMs: 15 });
  const proxy = await countingProxy(t, server.url);
  const scorer = createServerScorer({ url: proxy.url, api: 'vllm-classify', model: MODEL, concurrency: 3 });
  const a = items(20, 'a');
  const b = items(20, 'b');
  const [sa, sb] = await Promise.all([scorer.score(a), scorer.score(b)]);
  nearAll(t, sa, a.map((i) => rewardOf(MODEL, i.prompt, i.response)));
  nearAll(t, sb, b.map((i) => rewardOf(MODEL, i.prompt, i.response)));
  t.true(proxy.maxInFlight() <= 3, `max in flight ${proxy.maxInFlight()}`);
  t.true(proxy.maxInFlight() >= 2, `max in flight ${proxy.maxInFlight()}: the requests did overlap`);
  t.is(proxy.headers.length, 40);
});

test('TEI answering its Validation errors with 413 (as its source does): the batch is halved until the refused input is alone and named', async (t) => {
  const server = await fake(t, { api: 'tei', model: MODEL, teiValidationStatus: 413, faults: { badText: 'TOO-LONG' } });
  const scorer = createServerScorer({ url: server.url, api: 'tei', model: MODEL, concurrency: 1 });
  const list = items(8);
  list[5] = { prompt: 'TOO-LONG prompt', response: ' and response' };
  const err = await t.throwsAsync(scorer.score(list), { instanceOf: ScorerError });
  t.false(err.retryable);
  t.is(err.status, 413);
  t.is(err.message, `tei server ${server.url}: 413 This model's maximum context length is 32 tokens. However, you requested 99 tokens. (item 5)`);
  // 0–7 refused; 0–3 fine, 4–7 refused; 4–5 refused, 6–7 fine; 4 fine, 5 refused.
  t.deepEqual(posts(server, '/predict').map((b) => (b.inputs as unknown[]).length).sort((x, y) => y - x), [8, 4, 4, 2, 2, 1, 1]);
});
