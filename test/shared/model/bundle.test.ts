import test from 'ava';
import { createHash } from 'node:crypto';
import { Packr } from 'msgpackr';
import { selectBackend } from '../../../client/backends.js';
import { bundleHash, isSafeBundleName, packBundle, unpackBundle, validateBundle } from '../../../shared/model/bundle.js';
import { parseManifest, type Manifest } from '../../../shared/model/manifest.js';
import { buildModel, saveToFiles } from '../../../shared/model/tf-model.js';

const manifest = (patch: Partial<Manifest> = {}): Manifest =>
  parseManifest(
    { format: 'fedpool-model', version: 1, kind: 'reward', input: { kind: 'features', dim: 4 }, output: { kind: 'reward' }, hidden: [3], seed: 1, ...patch },
    'test',
  );

async function bundle(m = manifest()): Promise<Map<string, Uint8Array>> {
  const model = buildModel(m);
  try {
    return await saveToFiles(model, m);
  } finally {
    model.dispose();
  }
}

const json = (value: unknown) => new TextEncoder().encode(JSON.stringify(value));
const parse = (bytes: Uint8Array | undefined): Record<string, unknown> => JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;

test.before(async () => {
  await selectBackend('cpu');
});

test('a saved model is a valid bundle: fedpool.json, model.json, weights.bin with the right byte count', async (t) => {
  const files = await bundle();
  t.deepEqual([...files.keys()].sort(), ['fedpool.json', 'model.json', 'weights.bin']);
  const v = validateBundle(files);
  t.deepEqual(v.manifest, manifest());
  t.deepEqual(v.weightPaths, ['weights.bin']);
  t.is(files.get('weights.bin')?.byteLength, (4 * 3 + 3 + 3 * 1 + 1) * 4);
  t.is(parse(files.get('model.json')).format, 'layers-model');
});

test('validation errors are one line and name the problem', async (t) => {
  const files = await bundle();
  const expectError = (mutate: (f: Map<string, Uint8Array>) => void, message: string | RegExp) => {
    const copy = new Map(files);
    mutate(copy);
    const err = t.throws(() => validateBundle(copy), { name: 'BundleError', message });
    t.false(err?.message.includes('\n'));
  };
  expectError((f) => f.delete('weights.bin'), 'model bundle: weights file weights.bin is missing');
  expectError((f) => f.set('weights.bin', new Uint8Array(20)), "model bundle: weights file weights.bin has 20 bytes but model.json's weight specs need 76");
  expectError((f) => f.delete('fedpool.json'), /^model bundle: fedpool\.json is missing \(not a fedpool model/);
  expectError((f) => f.delete('model.json'), 'model bundle: model.json is missing');
  expectError((f) => f.set('model.json', new TextEncoder().encode('{"format":')), /^model bundle: model\.json is not valid JSON/);
  expectError((f) => f.set('model.json', json({ ...parse(f.get('model.json')), format: 'graph-model' })), 'model bundle: model.json is a TF.js "graph-model"; fedpool needs a "layers-model" (a TF.js LayersModel)');
  expectError((f) => f.set('model.json', json({ weightsManifest: [] })), 'model bundle: model.json has no LayersModel modelTopology; fedpool needs a TF.js LayersModel');
  expectError((f) => f.set('fedpool.json', json({ ...parse(f.get('fedpool.json')), format: 'onnx' })), /^model bundle: fedpool\.json: format: /);
  expectError(
    (f) => f.set('fedpool.json', json({ ...parse(f.get('fedpool.json')), input: { kind: 'features', dim: 5 } })),
    "model bundle: the model's input has 4 features but fedpool.json says features:5",
  );
  expectError(
    (f) => f.set('fedpool.json', json({ ...parse(f.get('fedpool.json')), kind: 'classifier', output: { kind: 'classes', classes: 3 } })),
    "model bundle: the model has 1 output units but fedpool.json's output classes:3 needs 3",
  );
  expectError((f) => f.set('notes.txt', new Uint8Array(1)), "model bundle: unexpected file notes.txt (not named in model.json's weightsManifest)");
  expectError((f) => {
    const mj = parse(f.get('model.json')) as { weightsManifest: { paths: string[] }[] };
    mj.weightsManifest[0].paths = ['../weights.bin'];
    f.set('model.json', json(mj));
  }, 'model bundle: model.json: weightsManifest[0] names "../weights.bin", not a plain relative file name');
  expectError((f) => {
    const mj = parse(f.get('model.json')) as { weightsManifest: { weights: { dtype: string }[] }[] };
    mj.weightsManifest[0].weights[0].dtype = 'string';
    f.set('model.json', json(mj));
  }, 'model bundle: weight hidden_1/kernel: dtype "string" is not supported (float32, int32, bool or complex64)');
  t.throws(() => validateBundle(new Map(), 'model bundle ./m'), { message: /^model bundle \.\/m: fedpool\.json is missing/ });
});

test('weights split over several files are checked together, in manifest order', async (t) => {
  const files = await bundle();
  const weights = files.get('weights.bin') as Uint8Array;
  const mj = parse(files.get('model.json')) as { weightsManifest: { paths: string[] }[] };
  mj.weightsManifest[0].paths = ['group1-shard1of2.bin', 'group1-shard2of2.bin'];
  const split = new Map([
    ['fedpool.json', files.get('fedpool.json') as Uint8Array],
    ['model.json', json(mj)],
    ['group1-shard1of2.bin', weights.slice(0, 40)],
    ['group1-shard2of2.bin', weights.slice(40)],
  ]);
  t.deepEqual(validateBundle(split).weightPaths, ['group1-shard1of2.bin', 'group1-shard2of2.bin']);
  split.delete('group1-shard2of2.bin');
  t.throws(() => validateBundle(split), { message: 'model bundle: weights file group1-shard2of2.bin is missing' });
});

test('pack/unpack round-trips, and the hash is the sha-256 of the blob, independent of file order', async (t) => {
  const files = await bundle();
  const packed = packBundle(files);
  const reordered = new Map([...files].reverse());
  t.deepEqual(packBundle(reordered), packed);
  const hash = await bundleHash(packed);
  t.regex(hash, /^[0-9a-f]{64}$/);
  t.is(hash, createHash('sha256').update(packed).digest('hex'));
  t.is(await bundleHash(packBundle(await bundle())), hash, 'the same manifest builds the same bytes');
  t.not(await bundleHash(packBundle(await bundle(manifest({ seed: 2 })))), hash);

  const unpacked = unpackBundle(packed);
  t.deepEqual(unpacked.manifest, manifest());
  t.deepEqual([...unpacked.files.keys()].sort(), [...files.keys()].sort());
  for (const [name, bytes] of files) {
    const got = unpacked.files.get(name) as Uint8Array;
    t.deepEqual(new Uint8Array(got), bytes, name);
    t.is(got.byteOffset, 0, `${name} owns its buffer`);
    t.is(got.buffer.byteLength, got.byteLength);
  }
});

test('unpack refuses garbage and packed maps that are not complete bundles', async (t) => {
  t.throws(() => unpackBundle(new Uint8Array([0xc1])), { name: 'BundleError', message: /^model bundle: not a packed fedpool bundle/ });
  const packr = new Packr({ useRecords: false });
  t.throws(() => unpackBundle(packr.pack({ model: 1 })), { message: 'model bundle: not a packed fedpool bundle (expected a map {files: {name: bytes}})' });
  t.throws(() => unpackBundle(packr.pack({ files: { 'model.json': 'text' } })), { message: 'model bundle: file "model.json" is not binary data' });
  const files = await bundle();
  const partial = Object.fromEntries([...files].filter(([name]) => name !== 'weights.bin'));
  t.throws(() => unpackBundle(packr.pack({ files: partial })), { message: 'model bundle: weights file weights.bin is missing' });
  t.throws(() => packBundle(new Map([...files].filter(([name]) => name !== 'weights.bin'))), { message: 'model bundle: weights file weights.bin is missing' });
});

test('bundle file names are plain relative paths', (t) => {
  for (const ok of ['weights.bin', 'group1-shard1of2.bin', 'sub/dir/w_1.bin']) t.true(isSafeBundleName(ok), ok);
  for (const bad of ['', '../x', '/etc/passwd', 'a/../b', 'a\\b', '.', 'a//b', '__proto__', 'x y']) t.false(isSafeBundleName(bad), bad);
});
