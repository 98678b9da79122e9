// openai-logprobs against the fake vLLM/OpenAI completions server: the response span, mean log-prob, perplexity and
// self-certainty computed here from the fake's own tokenLogprobs, the request's fields, the errors.
import test from 'ava';
import { ScorerError, createServerScorer } from '../../../client/scorers/index.js';
import { tokenLogprobs } from '../../helpers/inference-servers.js';
import { fake, near, posts } from './fake.js';

const MODEL = 'meta-llama/Llama-3.1-8B';

/**
 * The expected (mean log-prob, perplexity, self-certainty) of `response` after `promptPart` in `text`, from the
 * issue's definitions: response tokens start at a code-point offset in [P, P + R); KL(U ‖ p) from the top-k with
 * the rest of the mass spread evenly over V − k' tokens.
 */
function expected(text: string, promptPart: string, response: string, k: number, vocab: number): { values: [number, number, number]; tokens: string[] } {
  const lp = tokenLogprobs(MODEL, text, k, vocab);
  const p = Array.from(promptPart).length;
  const r = Array.from(response).length;
  const chosen: number[] = [];
  const certainty: number[] = [];
  const tokens: string[] = [];
  lp.offsets.forEach((offset, i) => {
    if (offset < p || offset >= p + r) return;
    tokens.push(lp.tokens[i] as string);
    chosen.push(lp.tokenLogprobs[i] as number);
    const top = Object.values(lp.top[i] as Record<string, number>);
    const rest = Math.max(1e-12, 1 - top.reduce((s, x) => s + Math.exp(x), 0));
    const others = vocab - top.length;
    certainty.push(-Math.log(vocab) - (top.reduce((s, x) => s + x, 0) + others * Math.log(rest / others)) / vocab);
  });
  const mean = chosen.reduce((s, x) => s + x, 0) / chosen.length;
  return { values: [mean, Math.exp(-mean), certainty.reduce((s, x) => s + x, 0) / certainty.length], tokens };
}

test('mean log-prob, perplexity and self-certainty of the response tokens; the request; the model from /v1/models', async (t) => {
  const server = await fake(t, { api: 'vllm', model: MODEL, vocab: 5000 });
  const scorer = createServerScorer({ url: server.url, api: 'openai-logprobs', logprobs: 7, vocab: 5000 });
  await scorer.check();
  t.is(scorer.model, MODEL);
  t.is(scorer.output, 'logprobs');
  const list = [
    // The prompt ends with a whole token ("\nAnswer:" is "\nAnswer" + ":"); the response starts a token (" Four,").
    { prompt: 'Question: what is two plus two?\nAnswer:', response: ' Four, of course.' },
    // The boundary inside a token: "Sayhello" is "Sayhel" + "lo"; only "lo" starts inside the response.
    { prompt: 'Say', response: 'hello' },
    // A character outside the BMP before the boundary: offsets count code points, not UTF-16 units.
    { prompt: '🙂 smile:', response: ' yes indeed, absolutely' },
  ];
  const scores = await scorer.score(list);
  t.is(scores.length, 9);
  const all = list.map((item) => expected(item.prompt + item.response, item.prompt, item.response, 7, 5000));
  t.deepEqual(all[0]?.tokens, [' Four,', ' of', ' course', '.']);
  t.deepEqual(all[1]?.tokens, ['lo']);
  t.deepEqual(all[2]?.tokens, [' yes', ' indeed', ',', ' absolu', 'tely']);
  all.forEach(({ values }, i) => values.forEach((v, j) => near(t, scores[3 * i + j], v, `item ${i} value ${j}`)));
  for (const body of posts(server, '/v1/completions')) {
    t.like(body, { model: MODEL, max_tokens: 0, echo: true, logprobs: 7, temperature: 0, add_special_tokens: false });
  }
  t.deepEqual(posts(server, '/v1/completions').slice(1).map((b) => b.prompt), list.map((i) => i.prompt + i.response));
});

test('a template: the prompt part is the template before {response}, a suffix after it is not scored', async (t) => {
  const server = await fake(t, { api: 'openai', model: MODEL });
  const template = 'User: {prompt}\nAssistant:{response}\nEND';
  const scorer = createServerScorer({ url: server.url, api: 'openai-logprobs', model: MODEL, template });
  const item = { prompt: 'name a colour', response: ' Blue is one colour' };
  const text = `User: ${item.prompt}\nAssistant:${item.response}\nEND`;
  const want = expected(text, `User: ${item.prompt}\nAssistant:`, item.response, 5, 32000);
  t.deepEqual(want.tokens, [' Blue', ' is', ' one', ' colour']);
  const scores = await scorer.score([item]);
  want.values.forEach((v, j) => near(t, scores[j], v, `value ${j}`));
  t.is(posts(server, '/v1/completions')[0]?.prompt, text);
});

test('self-certainty is nearly insensitive to V for large V', async (t) => {
  const server = await fake(t, { api: 'openai', model: MODEL, vocab: 50_000 });
  const item = { prompt: 'Tell me a story.\n', response: 'Once upon a time there was a fox.' };
  const values: number[] = [];
  for (const vocab of [32_000, 128_000]) {
    const scorer = createServerScorer({ url: server.url, api: 'openai-logprobs', model: MODEL, vocab });
    values.push((await scorer.score([item]))[2] as number);
  }
  t.true(Math.abs((values[0] as number) - (values[1] as number)) < 0.01, values.join(' vs '));
});

test('a response with no tokens of its own is a non-retryable error naming the item; too many logprobs is the server\'s 400', async (t) => {
  const server = await fake(t, { api: 'vllm', model: MODEL, maxLogprobs: 20 });
  const scorer = createServerScorer({ url: server.url, api: 'openai-logprobs', model: MODEL });
  const merged = await t.throwsAsync(scorer.score([{ prompt: 'A fine day', response: ' indeed.' }, { prompt: 'Hi', response: 'yo' }]), { instanceOf: ScorerError });
  t.false(merged.retryable);
  t.is(merged.message, `openai-logprobs server ${server.url}: item 1: the response has no tokens of its own (it is empty, or merged into the prompt's last token)`);
  await t.throwsAsync(scorer.score([{ prompt: 'Hi', response: '' }]), { message: /item 0: the response has no tokens of its own/ });

  const greedy = createServerScorer({ url: server.url, api: 'openai-logprobs', model: MODEL, logprobs: 21 });
  const err = await t.throwsAsync(greedy.score([{ prompt: 'Hi', response: ' there' }]), { instanceOf: ScorerError });
  t.false(err.retryable);
  t.is(err.status, 400);
  t.is(err.message, `openai-logprobs server ${server.url}: 400 Requested sample logprobs of 21, which is greater than max allowed: 20 (item 0)`);
});
