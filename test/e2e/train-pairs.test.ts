// A text reward model fine-tuned on preference pairs across real workers (task reward-pairs, central data), its
// pairwise accuracy on held-out pairs measured with `fedpool score` before and after.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { preferencePairs } from '../helpers/preferences.js';
import { CLIENT_TOKEN, tempDir } from '../server/helpers.js';
import { modelInit, readMetrics, startTrainingPool, summaryOf } from './processes.js';
import { runFedpool as fedpool } from '../helpers/processes.js';

test('reward-pairs: federated Bradley–Terry training raises held-out pairwise accuracy, as `fedpool score` measures it', async (t) => {
  t.timeout(300_000);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await modelInit(dir, ['--input', 'text:128', '--output', 'reward', '--hidden', '16', '--seed', '5']);
  preferencePairs(path.join(dir, 'train.jsonl'), 800, 1);
  preferencePairs(path.join(dir, 'val.jsonl'), 200, 2);
  preferencePairs(path.join(dir, 'heldout.jsonl'), 300, 3);

  const { coordinator } = await startTrainingPool(t, dir, { workers: ['a', 'b'], leaseMs: 30_000 });
  const score = async (model: string, out: string): Promise<number> => {
    const r = await fedpool(['score', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--model', model, '--input', path.join(dir, 'heldout.jsonl'), '--output', path.join(dir, out)]);
    t.is(r.status, 0, r.stderr);
    return summaryOf<{ accuracy: number }>(r.stdout).accuracy;
  };
  const before = await score(path.join(dir, 'model'), 'before.jsonl');

  writeFileSync(path.join(dir, 'train.json'), JSON.stringify({
    model: 'model',
    task: 'reward-pairs',
    data: { source: 'central', path: 'train.jsonl', partition: { clients: 8, kind: 'iid', seed: 4 } },
    eval: { path: 'val.jsonl', every: 2 },
    mode: 'sync', rounds: 8, clientsPerRound: 4, roundDeadlineMs: 30000,
    local: { steps: 10, batchSize: 16, lr: 0.2, momentum: 0.5 },
  }));
  const run = await fedpool(['train', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--config', path.join(dir, 'train.json'), '--out', path.join(dir, 'out')]);
  t.is(run.status, 0, run.stderr);
  const metrics = readMetrics(path.join(dir, 'out', 'metrics.jsonl'));
  t.is(metrics.length, 8);
  t.true(metrics.every((m) => m.participants === 4 && m.loss !== null && m.loss > 0));
  // The Bradley–Terry training loss falls from log 2 (an untrained model scores both sides alike).
  t.true(metrics.at(-1)!.loss! < metrics[0]!.loss!, `loss ${metrics[0]!.loss} → ${metrics.at(-1)!.loss}`);

  const after = await score(path.join(dir, 'out', 'model'), 'after.jsonl');
  t.log(`held-out pairwise accuracy ${before} → ${after}; coordinator eval ${metrics.filter((m) => m.accuracy !== null).map((m) => m.accuracy).join(' ')}`);
  t.true(after >= 0.9, `accuracy after training ${after}`);
  t.true(after > before + 0.2, `accuracy ${before} → ${after}`);
  // The coordinator's own evaluation agrees with the scorer's on unseen pairs.
  t.true(summaryOf<{ final_accuracy: number }>(run.stdout).final_accuracy >= 0.9);
});
