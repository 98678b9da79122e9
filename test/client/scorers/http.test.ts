// The HTTP layer of the server scorers against the test's own tiny servers: error-body parsing, Retry-After, the
// retry limits, 5xx and 4xx handling, timeouts, unreachable servers, answers of the wrong shape, the key's handling.
import test from 'ava';
import { SCORER_APIS, ScorerError, createServerScorer, outputOf, type ScorerApi, type ServerScorerOptions } from '../../../client/scorers/index.js';
import { parseRetryAfter, serverMessage } from '../../../client/scorers/http.js';
import { ByteLru } from '../../../shared/lru.js';
import { Limiter } from '../../../client/scorers/limiter.js';
import { parseTemplate } from '../../../client/scorers/template.js';
import { deadPort, json, ownServer } from './own-server.js';

/** Retry options whose sleeps return at once and are recorded. */
function recordedRetry(extra: Partial<NonNullable<ServerScorerOptions['retry']>> = {}) {
  const waits: number[] = [];
  return {
    waits,
    retry: { sleep: async (ms: number) => void waits.push(ms), random: () => 0.5, ...extra },
  };
}

function errorOf(t: { fail: (m: string) => void }, err: unknown): ScorerError {
  if (!(err instanceof ScorerError)) {
    t.fail(`expected a ScorerError, got ${String(err)}`);
    throw err;
  }
  return err;
}

test('serverMessage reads every error shape, else the body, else the status text', (t) => {
  t.is(serverMessage(JSON.stringify({ error: { message: 'nested one', type: 'BadRequestError', param: null, code: 400 } }), 'Bad Request'), 'nested one');
  t.is(serverMessage(JSON.stringify({ object: 'error', message: 'flat one', type: 'x', code: 400 }), 'Bad Request'), 'flat one');
  t.is(serverMessage(JSON.stringify({ message: 'tei flat', code: 422, type: 'validation' }), ''), 'tei flat');
  t.is(serverMessage(JSON.stringify({ error: 'batch size 40 > maximum allowed batch size 32', error_type: 'Validation' }), ''), 'batch size 40 > maximum allowed batch size 32');
  t.is(serverMessage(JSON.stringify({ detail: 'Not Found' }), ''), 'Not Found');
  t.is(serverMessage(JSON.stringify({ detail: [{ loc: ['body', 'query'], msg: 'field required', type: 'missing' }] }), ''), 'field required');
  t.is(serverMessage('x'.repeat(300), ''), 'x'.repeat(199) + '…');
  t.is(serverMessage('line one\nline two', ''), 'line one line two');
  t.is(serverMessage('', 'Internal Server Error'), 'Internal Server Error');
});

test('Retry-After as seconds or an HTTP-date', (t) => {
  t.is(parseRetryAfter('3'), 3000);
  t.is(parseRetryAfter(' 0 '), 0);
  const now = Date.parse('2026-01-01T00:00:00Z');
  t.is(parseRetryAfter('Thu, 01 Jan 2026 00:00:07 GMT', now), 7000);
  t.is(parseRetryAfter('Wed, 31 Dec 2025 00:00:00 GMT', now), 0);
  t.is(parseRetryAfter(null), undefined);
  t.is(parseRetryAfter('soon'), undefined);
});

test('templates need both placeholders and fill them in one pass', (t) => {
  const tpl = parseTemplate('<u>{prompt}</u><a>{response}</a>', 'openrlhf');
  t.is(tpl.apply('P {response}', 'R'), '<u>P {response}</u><a>R</a>');
  t.is(tpl.promptPart('P'), '<u>P</u><a>');
  for (const bad of ['{prompt}', '{response}', 'plain', '{prompt}{response}{response}']) {
    t.throws(() => parseTemplate(bad, 'openrlhf'), { instanceOf: ScorerError });
  }
  t.throws(() => createServerScorer({ url: 'http://127.0.0.1:1', api: 'openrlhf', model: 'm', template: '{prompt} only' }), { message: /must contain both \{prompt\} and \{response\}/ });
});

test('creating a scorer checks its options', (t) => {
  t.throws(() => createServerScorer({ url: 'http://h:1', api: 'openrlhf' }), { message: '--scorer-api openrlhf needs --scorer-model NAME (the server does not report its model)' });
  t.throws(() => createServerScorer({ url: 'http://h:1', api: 'ollama-embed' }), { message: /ollama-embed needs --scorer-model NAME/ });
  t.throws(() => createServerScorer({ url: 'ftp://h:1', api: 'tei' }), { message: /http:\/\/ or https:\/\// });
  t.throws(() => createServerScorer({ url: 'http://u:secret@h:1', api: 'tei' }), { message: (m: string) => !m.includes('secret') && m.includes('--scorer-key-env') });
  t.throws(() => createServerScorer({ url: 'http://h:1', api: 'nope' as ScorerApi }), { message: /unknown --scorer-api "nope"/ });
  t.throws(() => createServerScorer({ url: 'http://h:1', api: 'tei', concurrency: 0 }), { message: /--scorer-concurrency must be a positive integer/ });
  t.throws(() => createServerScorer({ url: 'http://h:1', api: 'tei', template: '{prompt}{response}' }), { message: /applies to openrlhf and openai-logprobs only/ });
  t.throws(() => createServerScorer({ url: 'http://h:1', api: 'openai-logprobs', logprobs: 5, vocab: 5 }), { message: /--scorer-vocab \(5\) must be larger/ });
  const scorer = createServerScorer({ url: 'http://h:1/prefix/', api: 'tei', logprobs: 5, vocab: 32000 });
  t.is(scorer.url, 'http://h:1/prefix');
  t.is(scorer.output, 'reward');
  t.throws(() => scorer.model, { message: /not known before check\(\)/ });
  t.deepEqual(SCORER_APIS.map(outputOf), ['reward', 'reward', 'reward', 'logprobs', 'embedding', 'embedding']);
});

test('the LRU keeps the most recently used entries within its byte bound', (t) => {
  const lru = new ByteLru<string>(10, (_k, v) => v.length);
  lru.set('a', 'xxxx');
  lru.set('b', 'xxxx');
  t.is(lru.get('a'), 'xxxx'); // a is now the most recent
  lru.set('c', 'xxxx'); // over 10: b goes
  t.is(lru.get('b'), undefined);
  t.is(lru.get('a'), 'xxxx');
  t.is(lru.get('c'), 'xxxx');
  t.is(lru.bytes, 8);
  lru.set('big', 'x'.repeat(11));
  t.is(lru.get('big'), undefined);
  t.is(lru.size, 2);
});

test('the limiter never lets more than its limit hold a slot, and serves waiters in order', async (t) => {
  const limiter = new Limiter(2);
  let held = 0;
  let most = 0;
  const order: number[] = [];
  let releaseAll: () => void = () => undefined;
  const gate = new Promise<void>((resolve) => (releaseAll = resolve));
  const jobs = Array.from({ length: 6 }, async (_, i) => {
    const release = await limiter.acquire();
    order.push(i);
    held++;
    most = Math.max(most, held);
    if (i < 2) await gate;
    else await Promise.resolve();
    held--;
    release();
  });
  await Promise.resolve();
  t.is(limiter.inFlight, 2);
  releaseAll();
  await Promise.all(jobs);
  t.is(most, 2);
  t.deepEqual(order, [0, 1, 2, 3, 4, 5]);
  t.is(limiter.inFlight, 0);
});

test('check() of an unreachable server: one line, "cannot reach", retryable, at most 3 tries', async (t) => {
  const port = await deadPort();
  const { waits, retry } = recordedRetry();
  const scorer = createServerScorer({ url: `http://127.0.0.1:${port}`, api: 'tei', model: 'm', retry });
  const err = errorOf(t, await t.throwsAsync(scorer.check()));
  t.regex(err.message, new RegExp(`^cannot reach tei server http://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
  t.false(err.message.includes('\n'));
  t.true(err.retryable);
  t.is(scorer.stats.requests, 3);
  t.is(waits.length, 2);
});

test('check() of a server answering nonsense: "not a <api> response", for every API', async (t) => {
  const { url } = await ownServer(t, (_req, res) => json(res, 200, { hello: 1 }));
  for (const api of SCORER_APIS) {
    for (const model of ['M', undefined]) {
      if (model === undefined && (api === 'openrlhf' || api === 'ollama-embed')) continue;
      const scorer = createServerScorer({ url, api, ...(model === undefined ? {} : { model }) });
      const err = errorOf(t, await t.throwsAsync(scorer.check(), undefined, `${api} model ${String(model)}`));
      t.true(err.message.startsWith(`${api} server ${url} answered something that is not a ${api} response: `), err.message);
      t.false(err.message.includes('\n'));
      t.false(err.retryable);
      await scorer.close();
    }
  }
});

test('check() of a server that serves none of the API\'s routes (404): "not a <api> response"', async (t) => {
  const { url, seen } = await ownServer(t, (_req, res) => json(res, 404, { detail: 'Not Found' }));
  const scorer = createServerScorer({ url, api: 'vllm-classify', model: 'M' });
  await t.throwsAsync(scorer.check(), { message: `vllm-classify server ${url} answered something that is not a vllm-classify response: none of POST /classify, /v1/classify, /pooling is served (404)` });
  t.deepEqual(seen.map((r) => r.path), ['/classify', '/v1/classify', '/pooling']);
  const rlhf = createServerScorer({ url, api: 'openrlhf', model: 'M' });
  await t.throwsAsync(rlhf.check(), { message: /^openrlhf server .* not a openrlhf response: POST \/get_reward answered 404 Not Found$/ });
});

test('429 with Retry-After: the waits are the server\'s; the budget and the tries are limits; success after retries', async (t) => {
  let calls = 0;
  const { url } = await ownServer(t, (_req, res) => {
    calls++;
    if (calls <= 2) json(res, 429, { error: 'overloaded' }, { 'retry-after': '2' });
    else if (calls === 3) json(res, 503, { error: 'unhealthy' }, { 'retry-after': new Date(Date.now() + 30_000).toUTCString() });
    else json(res, 200, { rewards: [1.5] });
  });
  const { waits, retry } = recordedRetry();
  const lines: string[] = [];
  const scorer = createServerScorer({ url, api: 'openrlhf', model: 'M', retry, log: (line) => lines.push(line) });
  const scores = await scorer.score([{ prompt: 'a', response: 'b' }]);
  t.deepEqual(Array.from(scores), [1.5]);
  t.deepEqual(waits.slice(0, 2), [2000, 2000]);
  t.true((waits[2] ?? 0) > 25_000 && (waits[2] ?? 0) <= 30_000, `HTTP-date Retry-After: ${waits[2]}`);
  t.is(scorer.stats.retries, 3);
  t.is(scorer.stats.requests, 4);
  t.is(lines.length, 3);
  t.regex(lines[0] ?? '', /^openrlhf server .*: POST \/get_reward: 429 overloaded; try 2\/5 in 2\.00 s$/);

  // A Retry-After beyond what is left of the waiting budget ends the retries at once.
  calls = 0;
  const budget = recordedRetry({ maxWaitMs: 3000 });
  const tight = createServerScorer({ url, api: 'openrlhf', model: 'M', retry: budget.retry });
  const err = errorOf(t, await t.throwsAsync(tight.score([{ prompt: 'a', response: 'b' }])));
  t.true(err.retryable);
  t.is(err.status, 429);
  t.deepEqual(budget.waits, [2000]);
  t.regex(err.message, /^openrlhf server .*: 429 overloaded \(the server asked to retry after 2\.0 s, beyond the 3 s budget; gave up after 2 tries/);
});

test('503 without Retry-After: full-jitter backoff doubling from the base; 5 tries, then a retryable error', async (t) => {
  const { url, seen } = await ownServer(t, (_req, res) => json(res, 503, { message: 'loading', code: 503, type: 'unhealthy' }));
  const { waits, retry } = recordedRetry();
  const scorer = createServerScorer({ url, api: 'openrlhf', model: 'M', retry });
  const err = errorOf(t, await t.throwsAsync(scorer.score([{ prompt: 'a', response: 'b' }])));
  t.true(err.retryable);
  t.is(err.status, 503);
  t.regex(err.message, /: 503 loading \(gave up after 5 tries, 1\.5 s of waiting\)$/);
  t.deepEqual(waits, [100, 200, 400, 800]); // random() = 0.5 of 200, 400, 800, 1600
  t.is(seen.length, 5);
});

test('a 500 is retryable at once, without retries here; a 400 is not retryable and quotes the server', async (t) => {
  const key = 'sk-very-secret-key';
  const { url, seen } = await ownServer(t, (req, res) => {
    if (req.body.includes('boom')) json(res, 500, 'Internal Server Error');
    // A server that echoes the credentials it got: the key must not reach the message.
    else json(res, 400, { error: { message: `This model's maximum context length is 8192 tokens (auth ${req.headers.authorization})`, type: 'BadRequestError', param: null, code: 400 } });
  });
  const scorer = createServerScorer({ url, api: 'openrlhf', model: 'M', key, retry: recordedRetry().retry });
  const five = errorOf(t, await t.throwsAsync(scorer.score([{ prompt: 'boom', response: '' }])));
  t.true(five.retryable);
  t.is(five.status, 500);
  t.is(seen.length, 1);
  const four = errorOf(t, await t.throwsAsync(scorer.score([{ prompt: 'long', response: '' }])));
  t.false(four.retryable);
  t.is(four.status, 400);
  t.is(four.message, `openrlhf server ${url}: 400 This model's maximum context length is 8192 tokens (auth Bearer ***) (item 0)`);
  t.false(four.message.includes(key));
  t.is(seen[1]?.headers.authorization, `Bearer ${key}`);
  t.is(seen.length, 2);
});

test('a request with no answer within the timeout is retried, then a retryable error', async (t) => {
  const { url, seen } = await ownServer(t, () => undefined); // never answers
  const { waits, retry } = recordedRetry({ tries: 2 });
  const scorer = createServerScorer({ url, api: 'openrlhf', model: 'M', timeoutMs: 150, retry });
  const err = errorOf(t, await t.throwsAsync(scorer.score([{ prompt: 'a', response: 'b' }])));
  t.true(err.retryable);
  t.regex(err.message, /^cannot reach openrlhf server .*: no answer within 150 ms \(gave up after 2 tries/);
  t.is(waits.length, 1);
  t.is(seen.length, 2);
});

test('non-finite or missing values are non-retryable errors naming the item', async (t) => {
  const { url } = await ownServer(t, (_req, res) => json(res, 200, { rewards: [0.5, null, 'x'] }));
  const scorer = createServerScorer({ url, api: 'openrlhf', model: 'M' });
  const err = errorOf(t, await t.throwsAsync(scorer.score([1, 2, 3].map((i) => ({ prompt: `${i}`, response: '' })))));
  t.false(err.retryable);
  t.is(err.message, `openrlhf server ${url}: item 1: expected a reward (a finite number), the server returned null`);
  const short = await ownServer(t, (_req, res) => json(res, 200, { rewards: [0.5] }));
  const two = createServerScorer({ url: short.url, api: 'openrlhf', model: 'M' });
  await t.throwsAsync(two.score([{ prompt: 'a', response: '' }, { prompt: 'b', response: '' }]), { message: /not a openrlhf response: POST \/get_reward answered 1 rewards for 2 queries/ });
});

test('close() ends requests in flight and waiting ones with a retryable error', async (t) => {
  let arrived: () => void = () => undefined;
  const first = new Promise<void>((resolve) => (arrived = resolve));
  const { url, seen } = await ownServer(t, () => arrived()); // never answers
  const scorer = createServerScorer({ url, api: 'openrlhf', model: 'M', concurrency: 1, batch: 1 });
  const running = scorer.score([{ prompt: 'a', response: '' }, { prompt: 'b', response: '' }]);
  await first;
  await scorer.close();
  const err = errorOf(t, await t.throwsAsync(running));
  t.true(err.retryable);
  t.regex(err.message, /the scorer was closed/);
  await t.throwsAsync(scorer.score([{ prompt: 'c', response: '' }]), { message: /the scorer was closed/ });
  t.is(seen.length, 1, 'the waiting request was never sent');
});
