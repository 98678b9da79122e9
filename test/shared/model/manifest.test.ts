import test from 'ava';
import { describeInput, manifestFromBytes, parseManifest, scoreWidth } from '../../../shared/model/manifest.js';

const good = {
  format: 'fedpool-model',
  version: 1,
  kind: 'reward',
  input: { kind: 'text', dim: 256 },
  output: { kind: 'reward' },
  hidden: [64, 32],
  seed: 7,
};

test('a valid manifest parses to itself', (t) => {
  t.deepEqual(parseManifest(good, 'fedpool.json'), good);
  const classifier = { ...good, kind: 'classifier', input: { kind: 'features', dim: 8 }, output: { kind: 'classes', classes: 3 }, hidden: [] };
  t.deepEqual(parseManifest(classifier, 'x'), classifier);
});

test('errors are one line naming the field', (t) => {
  const bad = (patch: Record<string, unknown>, message: RegExp) =>
    t.throws(() => parseManifest({ ...good, ...patch }, 'model bundle: fedpool.json'), { name: 'ModelError', message });
  bad({ format: 'keras' }, /^model bundle: fedpool\.json: format: .*"fedpool-model"/);
  bad({ version: 2 }, /^model bundle: fedpool\.json: version: /);
  bad({ input: { kind: 'text', dim: 0 } }, /^model bundle: fedpool\.json: input\.dim: /);
  bad({ input: { kind: 'image', dim: 3 } }, /^model bundle: fedpool\.json: input\.kind: /);
  bad({ output: { kind: 'classes', classes: 1 } }, /^model bundle: fedpool\.json: output\.classes: /);
  bad({ hidden: [64, -1] }, /^model bundle: fedpool\.json: hidden\.1: /);
  bad({ seed: 1.5 }, /^model bundle: fedpool\.json: seed: /);
  bad({ extra: true }, /^model bundle: fedpool\.json: .*extra/);
  bad({ kind: 'classifier' }, /^model bundle: fedpool\.json: kind: is "classifier" but output\.kind "reward" needs "reward"$/);
  t.throws(() => parseManifest([], 'f'), { message: /^f: / });
  t.throws(() => manifestFromBytes(new TextEncoder().encode('{nope'), 'fedpool.json'), { message: /^fedpool\.json: not valid JSON/ });
  for (const msg of [() => parseManifest({}, 'w')]) {
    const err = t.throws(msg);
    t.false(err?.message.includes('\n'));
  }
});

test('scoring gives one value per item for a reward model or a binary classifier, C class probabilities for C ≥ 3 classes', (t) => {
  t.is(scoreWidth(parseManifest(good, 'x').output), 1);
  t.is(scoreWidth(parseManifest({ ...good, kind: 'classifier', output: { kind: 'classes', classes: 2 } }, 'x').output), 1);
  t.is(scoreWidth(parseManifest({ ...good, kind: 'classifier', output: { kind: 'classes', classes: 5 } }, 'x').output), 5);
});

test('embedding input: the head reads embeddings of a named model; the name is required and bounded', (t) => {
  const embedding = { ...good, input: { kind: 'embedding', dim: 384, model: 'BAAI/bge-small-en-v1.5' } };
  t.deepEqual(parseManifest(embedding, 'x'), embedding);
  t.is(describeInput(parseManifest(embedding, 'x').input), 'embedding:384 of BAAI/bge-small-en-v1.5');
  t.is(describeInput(parseManifest(good, 'x').input), 'text:256');
  const bad = (input: unknown, message: RegExp) => t.throws(() => parseManifest({ ...good, input }, 'fedpool.json'), { name: 'ModelError', message });
  bad({ kind: 'embedding', dim: 384 }, /^fedpool\.json: input\.model: /);
  bad({ kind: 'embedding', dim: 384, model: '' }, /^fedpool\.json: input\.model: /);
  bad({ kind: 'embedding', dim: 384, model: 'x'.repeat(257) }, /^fedpool\.json: input\.model: /);
  bad({ kind: 'text', dim: 8, model: 'm' }, /^fedpool\.json: .*model/);
});
