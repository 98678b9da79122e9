// openai-embeddings and ollama-embed against the fake servers: values, batching, the per-scorer cache.
import test from 'ava';
import { ScorerError, createServerScorer } from '../../../client/scorers/index.js';
import { embeddingOf } from '../../helpers/inference-servers.js';
import { fake, nearAll, posts } from './fake.js';

const texts = ['alpha', 'beta', 'gamma', 'alpha', 'delta', 'epsilon', 'zeta', 'beta'];

for (const [api, fakeApi, path] of [
  ['openai-embeddings', 'openai', '/v1/embeddings'],
  ['openai-embeddings', 'vllm', '/v1/embeddings'],
  ['ollama-embed', 'ollama', '/api/embed'],
] as const) {
  test(`${api} (${fakeApi}): n × dim rows, batches of --scorer-batch, each text sent once, then cached`, async (t) => {
    const model = fakeApi === 'ollama' ? 'nomic-embed-text' : 'BAAI/bge-small-en-v1.5';
    const server = await fake(t, { api: fakeApi, model, embedDim: 24 });
    const scorer = createServerScorer({ url: server.url, api, batch: 4, ...(fakeApi === 'ollama' ? { model } : {}) });
    t.is(scorer.output, 'embedding');
    await scorer.check();
    t.is(scorer.model, model);
    const first = await scorer.embed(texts);
    t.is(first.dim, 24);
    nearAll(t, first.data, texts.flatMap((text) => embeddingOf(model, text, 24)));
    const sent = posts(server, path).slice(1); // after check()'s one
    t.deepEqual(sent.map((b) => b.input), [['alpha', 'beta', 'gamma', 'delta'], ['epsilon', 'zeta']]);
    for (const body of sent) {
      t.is(body.model, model);
      if (api === 'openai-embeddings') t.is(body.encoding_format, 'float');
    }
    const requests = server.requests.length;
    const again = await scorer.embed(['zeta', 'alpha']);
    t.is(server.requests.length, requests, 'cached texts send no request');
    nearAll(t, again.data, ['zeta', 'alpha'].flatMap((text) => embeddingOf(model, text, 24)));
    const mixed = await scorer.embed(['alpha', 'eta']);
    t.deepEqual(posts(server, path).at(-1)?.input, ['eta']);
    nearAll(t, mixed.data, ['alpha', 'eta'].flatMap((text) => embeddingOf(model, text, 24)));
    t.deepEqual(await scorer.embed([]), { dim: 24, data: new Float32Array(0) });
    await t.throwsAsync(scorer.score([{ prompt: 'a', response: 'b' }]), { instanceOf: ScorerError, message: /use embed\(\), not score\(\)/ });
  });
}

test('embed() is for the embedding APIs only; an ollama model that is not there is the server\'s 404', async (t) => {
  const server = await fake(t, { api: 'ollama', model: 'nomic-embed-text' });
  const scorer = createServerScorer({ url: server.url, api: 'ollama-embed', model: 'other-model' });
  const err = await t.throwsAsync(scorer.check(), { instanceOf: ScorerError });
  t.false(err.retryable);
  t.is(err.message, `ollama-embed server ${server.url}: 404 model "other-model" not found, try pulling it first`);
  const rlhf = createServerScorer({ url: server.url, api: 'openrlhf', model: 'm' });
  await t.throwsAsync(rlhf.embed(['x']), { message: /embed\(\) is for the embedding APIs/ });
});
