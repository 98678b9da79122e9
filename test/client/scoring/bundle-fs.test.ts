import test from 'ava';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { selectBackend } from '../../../client/backends.js';
import { readBundleDir, writeBundleDir } from '../../../client/scoring/bundle-fs.js';
import { parseManifest } from '../../../shared/model/manifest.js';
import { buildModel, saveToFiles } from '../../../shared/model/tf-model.js';

const root = mkdtempSync(path.join(tmpdir(), 'fedpool-bundle-fs-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));

async function files() {
  await selectBackend('cpu');
  const m = parseManifest({ format: 'fedpool-model', version: 1, kind: 'reward', input: { kind: 'features', dim: 4 }, output: { kind: 'reward' }, hidden: [2], seed: 0 }, 't');
  const model = buildModel(m);
  const out = await saveToFiles(model, m);
  model.dispose();
  return out;
}

test('write then read gives the same files; unrelated files in the directory are ignored', async (t) => {
  const dir = path.join(root, 'a');
  const f = await files();
  await writeBundleDir(dir, f);
  writeFileSync(path.join(dir, 'README.md'), 'notes');
  t.deepEqual(await readBundleDir(dir), f);
});

test('reading names the directory and the problem', async (t) => {
  const dir = path.join(root, 'b');
  await writeBundleDir(dir, await files());
  rmSync(path.join(dir, 'weights.bin'));
  await t.throwsAsync(readBundleDir(dir), { name: 'BundleError', message: `model bundle ${dir}: weights file weights.bin is missing` });
  writeFileSync(path.join(dir, 'weights.bin'), new Uint8Array(3));
  await t.throwsAsync(readBundleDir(dir), { message: `model bundle ${dir}: weights file weights.bin has 3 bytes but model.json's weight specs need 52` });
  await t.throwsAsync(readBundleDir(path.join(root, 'nope')), { message: `model bundle ${path.join(root, 'nope')}: no such directory` });
  const plain = path.join(root, 'plain');
  mkdirSync(plain);
  writeFileSync(path.join(plain, 'model.json'), readFileSync(path.join(dir, 'model.json')));
  await t.throwsAsync(readBundleDir(plain), { message: /^model bundle .*plain: fedpool\.json is missing \(not a fedpool model/ });
});

test('writing refuses a non-empty directory and a file in the way', async (t) => {
  const f = await files();
  const dir = path.join(root, 'c');
  mkdirSync(dir);
  writeFileSync(path.join(dir, 'x'), '');
  await t.throwsAsync(writeBundleDir(dir, f), { message: `${dir}: directory is not empty; choose a new or empty directory` });
  const file = path.join(root, 'file');
  writeFileSync(file, '');
  await t.throwsAsync(writeBundleDir(file, f), { message: `${file}: exists and is not a directory` });
});
