// Scoring with classifiers through a real pool: a classifier of 3 classes gives each line its class probabilities and
// most probable class, labels give an accuracy; a binary classifier's score is P(class 1) and a label says whether
// the class above 0.5 is right. The values equal the same model's predictions in this process.
import test from 'ava';
import * as tf from '@tensorflow/tfjs';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readBundleDir } from '../../client/scoring/bundle-fs.js';
import { selectBackend } from '../../client/backends.js';
import { loadFromFiles } from '../../shared/model/tf-model.js';
import { runFedpool as cli } from '../helpers/processes.js';
import { CLIENT_TOKEN, WORKER_TOKEN, startCoordinatorProcess, tempDir } from '../server/helpers.js';
import { startWorker, stop } from './processes.js';

const DIM = 4;

test('a 3-class classifier scores class probabilities and the most probable class; labels give label_accuracy; a binary classifier judges its labels at 0.5', async (t) => {
  t.timeout(180_000);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const coordinator = await startCoordinatorProcess(['--state', ':memory:', '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN], {}, t);
  const worker = startWorker(coordinator.url, 'w-classes', path.join(dir, 'cache'));
  t.teardown(() => stop(worker));
  for (const [name, output] of [['three', 'classes:3'], ['two', 'classes:2']]) {
    const r = await cli(['model', 'init', '--out', path.join(dir, name), '--input', `features:${DIM}`, '--output', output, '--hidden', '8', '--seed', '5']);
    t.is(r.status, 0, r.stderr);
  }
  const rows = Array.from({ length: 30 }, (_, i) => Array.from({ length: DIM }, (_, j) => Math.sin(i * 3 + j)));
  const input = path.join(dir, 'in.jsonl');
  writeFileSync(input, rows.map((f, i) => JSON.stringify({ id: `r${i}`, features: f, label: i % 3 })).join('\n') + '\n');
  await worker.connected;

  const r = await cli(['score', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--model', path.join(dir, 'three'), '--input', input, '--output', path.join(dir, 'three.jsonl'), '--shard-size', '7']);
  t.is(r.status, 0, r.stderr);
  const lines = readFileSync(path.join(dir, 'three.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; class: number; probs: number[]; label: number; correct: boolean });
  t.deepEqual(lines.map((l) => l.id), rows.map((_, i) => `r${i}`));
  await selectBackend('wasm');
  const { model } = await loadFromFiles(await readBundleDir(path.join(dir, 'three')));
  const expected = tf.tidy(() => (model.predict(tf.tensor2d(rows.flat(), [rows.length, DIM])) as tf.Tensor).arraySync() as number[][]);
  model.dispose();
  lines.forEach((l, i) => {
    t.is(l.probs.length, 3);
    l.probs.forEach((p, c) => t.true(Math.abs(p - expected[i]![c]!) < 1e-5, `${l.id} class ${c}: ${p} vs ${expected[i]![c]}`));
    t.is(l.class, l.probs.indexOf(Math.max(...l.probs)));
    t.is(l.label, i % 3);
    t.is(l.correct, l.class === l.label);
  });
  const summary = JSON.parse(r.stdout) as { items: number; label_accuracy: number; labelled: number };
  t.like(summary, { items: 30, labelled: 30 });
  t.is(summary.label_accuracy, lines.filter((l) => l.correct).length / 30);

  // A binary classifier: one score per line, P(class 1); labels 0 and 1 judged at 0.5.
  const binary = path.join(dir, 'binary.jsonl');
  writeFileSync(binary, rows.map((f, i) => JSON.stringify({ id: `b${i}`, features: f, label: i % 2 })).join('\n') + '\n');
  const b = await cli(['score', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--model', path.join(dir, 'two'), '--input', binary, '--output', path.join(dir, 'two.jsonl')]);
  t.is(b.status, 0, b.stderr);
  const scored = readFileSync(path.join(dir, 'two.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { score: number; label: number; correct: boolean });
  t.true(scored.every((l, i) => l.label === i % 2 && l.correct === ((l.score > 0.5 ? 1 : 0) === l.label)));
  t.like(JSON.parse(b.stdout), { labelled: 30, label_accuracy: scored.filter((l) => l.correct).length / 30 });
});
