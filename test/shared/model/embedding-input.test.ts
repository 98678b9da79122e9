import test from 'ava';
import { Packr } from 'msgpackr';
import { selectBackend } from '../../../client/backends.js';
import { packBundle, packedManifest } from '../../../shared/model/bundle.js';
import { embeddingText, packedEmbeddingInput } from '../../../shared/model/embedding-input.js';
import { parseManifest, type InputSpec } from '../../../shared/model/manifest.js';
import { buildModel, saveToFiles } from '../../../shared/model/tf-model.js';

test.before(async () => {
  await selectBackend('cpu');
});

async function packed(input: InputSpec): Promise<Uint8Array> {
  const manifest = parseManifest({ format: 'fedpool-model', version: 1, kind: 'reward', input, output: { kind: 'reward' }, hidden: [], seed: 1 }, 'test');
  const model = buildModel(manifest);
  try {
    return packBundle(await saveToFiles(model, manifest));
  } finally {
    model.dispose();
  }
}

test('embeddingText: prompt, a newline, response; the response alone after an empty prompt', (t) => {
  t.is(embeddingText('What is 2 + 2?', 'It is 4.'), 'What is 2 + 2?\nIt is 4.');
  t.is(embeddingText('', 'just the text'), 'just the text');
  t.is(embeddingText('q', ''), 'q\n');
});

test('a packed bundle\'s embedding input is read from its manifest alone; anything else (or garbage) is not an embedding bundle', async (t) => {
  const embedding = { kind: 'embedding', dim: 6, model: 'emb' } as const;
  const bytes = await packed(embedding);
  t.deepEqual(packedManifest(bytes).input, embedding);
  t.deepEqual(packedEmbeddingInput(bytes), embedding);
  t.is(packedEmbeddingInput(await packed({ kind: 'text', dim: 6 })), undefined);
  t.is(packedEmbeddingInput(Uint8Array.of(1, 2, 3)), undefined);
  const packr = new Packr({ useRecords: false });
  t.throws(() => packedManifest(packr.pack({ files: {} })), { name: 'BundleError', message: 'model bundle: fedpool.json is missing' });
  t.throws(() => packedManifest(packr.pack({ files: { 'fedpool.json': new TextEncoder().encode('{"format":"x"}') } })), { name: 'BundleError', message: /^model bundle: fedpool\.json: format: / });
  // Only the manifest is read: a bundle with broken weights still routes by it (loading it reports the damage).
  const broken = packr.pack({ files: { 'fedpool.json': new TextEncoder().encode(JSON.stringify({ format: 'fedpool-model', version: 1, kind: 'reward', input: embedding, output: { kind: 'reward' }, hidden: [], seed: 1 })) } });
  t.deepEqual(packedEmbeddingInput(broken), embedding);
});
