// `fedpool model init` run as users run it (the CLI as a process), then loaded back.
import test from 'ava';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { selectBackend } from '../../client/backends.js';
import { readBundleDir } from '../../client/scoring/bundle-fs.js';
import { parseManifest } from '../../shared/model/manifest.js';
import { buildModel, loadFromFiles, saveToFiles, scoreBatch } from '../../shared/model/tf-model.js';
import { cleanEnv, runFedpool } from '../helpers/processes.js';

const init = (...args: string[]) => runFedpool(['model', 'init', ...args], { env: cleanEnv() });

const root = mkdtempSync(path.join(tmpdir(), 'fedpool-model-init-'));
test.after.always(() => rmSync(root, { recursive: true, force: true }));
test.before(async () => {
  await selectBackend('cpu');
});

test('writes a text reward model that loads back and predicts like the in-memory model', async (t) => {
  const out = path.join(root, 'rm');
  const r = await init('--out', out, '--input', 'text:256', '--output', 'reward', '--seed', '7');
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, `fedpool model written to ${out} (18561 parameters, input text:256, output reward)\n`);
  t.is(r.stderr, '');
  t.deepEqual(readdirSync(out).sort(), ['fedpool.json', 'model.json', 'weights.bin']);

  const files = await readBundleDir(out);
  const manifest = parseManifest(
    { format: 'fedpool-model', version: 1, kind: 'reward', input: { kind: 'text', dim: 256 }, output: { kind: 'reward' }, hidden: [64, 32], seed: 7 },
    'test',
  );
  const inMemory = buildModel(manifest);
  t.deepEqual(files, await saveToFiles(inMemory, manifest), 'byte-identical to building the same manifest here');
  const loaded = await loadFromFiles(files);
  t.deepEqual(loaded.manifest, manifest);
  const items = Array.from({ length: 50 }, (_, i) => ({ prompt: `question ${i}`, response: `the answer is ${i * 3}` }));
  const want = await scoreBatch(inMemory, manifest, items, 1024);
  t.deepEqual(await scoreBatch(loaded.model, loaded.manifest, items, 1024), want);
  t.true(new Set(want).size > 1, 'scores vary with the text');
  inMemory.dispose();
  loaded.model.dispose();
});

test('a features classifier without hidden layers', async (t) => {
  const out = path.join(root, 'clf');
  const r = await init('--out', out, '--input', 'features:8', '--output', 'classes:2', '--hidden', '');
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, `fedpool model written to ${out} (18 parameters, input features:8, output classes:2)\n`);
  const { manifest } = await loadFromFiles(await readBundleDir(out));
  t.deepEqual(manifest.hidden, []);
  t.is(manifest.kind, 'classifier');
  t.is(manifest.seed, 0);
});

test('a reward head over embeddings: --input embedding:DIM --embedding-model NAME, written into fedpool.json', async (t) => {
  const out = path.join(root, 'emb');
  const r = await init('--out', out, '--input', 'embedding:16', '--embedding-model', 'BAAI/bge-small-en-v1.5', '--output', 'reward', '--hidden', '');
  t.is(r.status, 0, r.stderr);
  t.is(r.stdout, `fedpool model written to ${out} (17 parameters, input embedding:16 of BAAI/bge-small-en-v1.5, output reward)\n`);
  const { manifest, model } = await loadFromFiles(await readBundleDir(out));
  t.deepEqual(manifest.input, { kind: 'embedding', dim: 16, model: 'BAAI/bge-small-en-v1.5' });
  model.dispose();
});

test('bad flags and a non-empty directory are one-line errors, and nothing is written', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--input', 'text', '--output', 'reward'], /^fedpool model init: --input: expected features:DIM, text:DIM or embedding:DIM/],
    [['--input', 'features:0', '--output', 'reward'], /^fedpool model init: --input: expected features:DIM, text:DIM or embedding:DIM/],
    [['--input', 'embedding:16', '--output', 'reward'], /^fedpool model init: --input embedding:DIM needs --embedding-model NAME \(the embedding model whose vectors the head reads\)\n$/],
    [['--input', 'embedding:16', '--embedding-model', ' ', '--output', 'reward'], /^fedpool model init: --input embedding:DIM needs --embedding-model NAME/],
    [['--input', 'text:16', '--embedding-model', 'emb', '--output', 'reward'], /^fedpool model init: --embedding-model applies to --input embedding:DIM only \(this input is text:16\)\n$/],
    [['--input', 'embedding:16', '--embedding-model', 'x'.repeat(300), '--output', 'reward'], /^fedpool model init: input\.model: /],
    [['--input', 'text:8', '--output', 'classes:1'], /^fedpool model init: --output: expected reward or classes:C/],
    [['--input', 'text:8', '--output', 'score'], /^fedpool model init: --output: expected reward or classes:C/],
    [['--input', 'text:8', '--output', 'reward', '--hidden', '64,,32'], /^fedpool model init: --hidden: expected comma-separated positive integers/],
    [['--input', 'text:99999999', '--output', 'reward'], /^fedpool model init: input\.dim: /],
  ];
  for (const [args, message] of cases) {
    const out = path.join(root, 'never');
    const r = await init('--out', out, ...args);
    t.is(r.status, 1, args.join(' '));
    t.regex(r.stderr, message);
    t.is(r.stderr.trim().split('\n').length, 1, r.stderr);
    t.throws(() => readdirSync(out), { code: 'ENOENT' });
  }
  const full = path.join(root, 'full');
  mkdirSync(full);
  writeFileSync(path.join(full, 'keep.txt'), 'mine');
  const r = await init('--out', full, '--input', 'text:8', '--output', 'reward');
  t.is(r.status, 1);
  t.is(r.stderr, `fedpool model init: --out ${full}: directory is not empty; choose a new or empty directory\n`);
  t.deepEqual(readdirSync(full), ['keep.txt']);
  // An existing empty directory is fine.
  const empty = path.join(root, 'empty');
  mkdirSync(empty);
  t.is((await init('--out', empty, '--input', 'text:8', '--output', 'reward')).status, 0);
});
