import test from 'ava';
import fc from 'fast-check';
import { checkFeatureMatrix, checkItem, featurize, featurizeBatch, featurizeText, fnv1a32, tokenize } from '../../../shared/model/featurizer.js';
import { parseManifest, type Manifest } from '../../../shared/model/manifest.js';

/** Textbook FNV-1a over TextEncoder's UTF-8 bytes: an independent check of the featurizer's inline encoder. */
function referenceFnv(s: string): number {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(s)) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
}

/** The documented algorithm written out plainly, from tokens and keys to the normalised vector. */
function referenceFeatures(prompt: string, response: string, dim: number): Float32Array {
  const counts = new Float64Array(dim);
  const add = (key: string) => {
    const h = referenceFnv(key);
    counts[h % dim] += h >= 0x80000000 ? -1 : 1;
  };
  for (const [text, salt] of [[prompt, 'p'], [response, 'r']] as const) {
    const toks = text.normalize('NFC').toLowerCase().match(/[\p{L}\p{N}\p{M}]+/gu) ?? [];
    toks.forEach((tok, i) => {
      add(`${salt}1:${tok}`);
      if (i + 1 < toks.length) add(`${salt}2:${tok} ${toks[i + 1]}`);
    });
  }
  const norm = Math.sqrt(counts.reduce((s, x) => s + x * x, 0));
  return Float32Array.from(counts, (x) => (norm === 0 ? 0 : x / norm));
}

test('fnv1a32 gives the published FNV-1a 32-bit values', (t) => {
  t.is(fnv1a32(''), 0x811c9dc5);
  t.is(fnv1a32('a'), 0xe40c292c);
  t.is(fnv1a32('foobar'), 0xbf9cf968);
});

test('fnv1a32 hashes the UTF-8 bytes of any string, lone surrogates as U+FFFD', (t) => {
  fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => fnv1a32(s) === referenceFnv(s)));
  fc.assert(fc.property(fc.string({ unit: 'grapheme' }), (s) => fnv1a32(s) === referenceFnv(s)));
  t.is(fnv1a32('\ud800x'), referenceFnv('\ufffdx'));
  t.is(fnv1a32('x\udc00'), referenceFnv('x\ufffd'));
});

test('known values: a fixed item gives these exact features (pinned: changing them changes every text model)', (t) => {
  const v = featurizeText({ prompt: 'What is 2+2?', response: 'It is 4. Four!' }, 32);
  const a = Math.fround(2 / Math.sqrt(20));
  const b = Math.fround(1 / Math.sqrt(20));
  const expected = new Float32Array(32);
  for (const [i, x] of [[2, a], [6, -b], [8, b], [9, b], [11, b], [16, -b], [18, -b], [22, -a], [25, -a], [29, -b], [31, -b]]) expected[i] = x;
  t.deepEqual(v, expected);
  t.deepEqual(v, referenceFeatures('What is 2+2?', 'It is 4. Four!', 32));
});

test('matches the plain reference algorithm on arbitrary text and dims', (t) => {
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme', maxLength: 60 }), fc.string({ unit: 'grapheme', maxLength: 60 }), fc.integer({ min: 1, max: 300 }), (p, r, dim) => {
      const got = featurizeText({ prompt: p, response: r }, dim);
      const want = referenceFeatures(p, r, dim);
      return got.every((x, i) => x === want[i]);
    }),
  );
  t.pass();
});

test('deterministic, L2-normalised, and an item without tokens stays zero', (t) => {
  const item = { prompt: 'Solve x^2 = 4.', response: 'x = 2 or x = -2, so two solutions.' };
  const a = featurizeText(item, 64);
  t.deepEqual(a, featurizeText({ ...item }, 64));
  t.is(a.length, 64);
  t.true(Math.abs(Math.hypot(...a) - 1) < 1e-6);
  t.deepEqual(featurizeText({ prompt: '', response: '?!. ,' }, 8), new Float32Array(8));
  t.deepEqual(featurizeText({}, 8), new Float32Array(8));
});

test('prompt and response are separate features; case, punctuation and Unicode composition are not', (t) => {
  t.notDeepEqual(featurizeText({ prompt: 'x' }, 1024), featurizeText({ response: 'x' }, 1024));
  t.deepEqual(featurizeText({ prompt: 'Hello, WORLD!' }, 128), featurizeText({ prompt: 'hello world' }, 128));
  t.deepEqual(featurizeText({ response: 'cafe\u0301' }, 128), featurizeText({ response: 'caf\u00e9' }, 128));
  t.deepEqual(tokenize('Ça va? 3-D naïve'), ['ça', 'va', '3', 'd', 'naïve']);
  // Bigrams make word order matter.
  t.notDeepEqual(featurizeText({ response: 'dog bites man' }, 1024), featurizeText({ response: 'man bites dog' }, 1024));
});

const featuresModel: Manifest = parseManifest(
  { format: 'fedpool-model', version: 1, kind: 'reward', input: { kind: 'features', dim: 3 }, output: { kind: 'reward' }, hidden: [], seed: 0 },
  'test',
);
const textModel: Manifest = { ...featuresModel, input: { kind: 'text', dim: 16 } };

test('featurize: features pass through; text goes through the featurizer', (t) => {
  t.deepEqual(featurize({ features: [1, 2, 3] }, featuresModel), new Float32Array([1, 2, 3]));
  t.deepEqual(featurize({ features: new Float32Array([4, 5, 6]) }, featuresModel), new Float32Array([4, 5, 6]));
  t.deepEqual(featurize({ prompt: 'a', response: 'b' }, textModel), featurizeText({ prompt: 'a', response: 'b' }, 16));
  const batch = featurizeBatch([{ features: [1, 2, 3] }, { features: [7, 8, 9] }], featuresModel);
  t.deepEqual(batch, new Float32Array([1, 2, 3, 7, 8, 9]));
});

test('featurize: an item of the wrong form or length is a clear one-line error', (t) => {
  t.throws(() => featurize({ features: [1, 2] }, featuresModel), { name: 'ModelError', message: 'features has 2 entries; the model takes 3' });
  t.throws(() => featurize({ features: [1, NaN, 3] }, featuresModel), { message: 'features[1] is NaN, not a finite number' });
  t.throws(() => featurize({ prompt: 'a', response: 'b' }, featuresModel), { message: 'this model takes features (features:3); the item has text' });
  t.throws(() => featurize({ features: [1] }, textModel), { message: 'this model takes text (text:16: prompt and response); the item has features' });
  t.throws(() => checkItem({ prompt: 'a' }, textModel), { message: 'response must be a string' });
  t.throws(() => featurizeBatch([{ features: [1, 2, 3] }, { features: [1, 2, 3, 4] }], featuresModel), {
    name: 'ModelError',
    message: 'item 1: features has 4 entries; the model takes 3',
  });
});

test('a packed features matrix is checked like the items it holds', (t) => {
  t.notThrows(() => checkFeatureMatrix(new Float32Array(6), 2, 3, featuresModel));
  t.notThrows(() => checkFeatureMatrix(new Float32Array(0), 0, 3, featuresModel));
  t.throws(() => checkFeatureMatrix(new Float32Array(8), 2, 4, featuresModel), { name: 'ModelError', message: 'item 0: features has 4 entries; the model takes 3' });
  t.throws(() => checkFeatureMatrix(Float32Array.of(0, 0, 0, 1, -Infinity, 0), 2, 3, featuresModel), { message: 'item 1: features[1] is -Infinity, not a finite number' });
  t.throws(() => checkFeatureMatrix(new Float32Array(3), 1, 3, textModel), { message: /^item 0: this model takes text/ });
  // Large finite values must not look non-finite to the fast path.
  t.notThrows(() => checkFeatureMatrix(new Float32Array(3 * 1000).fill(3.4e38), 1000, 3, featuresModel));
});

test('an embedding model takes its embedded rows as features; text is refused (only a worker with the embedding server can embed it)', (t) => {
  const embeddingModel: Manifest = { ...featuresModel, input: { kind: 'embedding', dim: 3, model: 'emb' } };
  t.deepEqual(featurize({ features: [1, 2, 3] }, embeddingModel), new Float32Array([1, 2, 3]));
  t.notThrows(() => checkFeatureMatrix(new Float32Array(6), 2, 3, embeddingModel));
  t.throws(() => checkFeatureMatrix(new Float32Array(8), 2, 4, embeddingModel), { message: 'item 0: features has 4 entries; the model takes 3' });
  const cannot = 'this model reads embedding:3 of emb: a worker whose inference server serves emb embeds the text; the built-in featurizer cannot';
  t.throws(() => featurize({ prompt: 'a', response: 'b' }, embeddingModel), { name: 'ModelError', message: cannot });
  t.throws(() => featurizeBatch([{ features: [1, 2, 3] }, { prompt: 'a', response: 'b' }], embeddingModel), { name: 'ModelError', message: `item 1: ${cannot}` });
});
