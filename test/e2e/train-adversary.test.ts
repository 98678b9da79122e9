// train.json's `adversary` on real workers: 2 of 10 virtual clients send scaled sign flips (−10·μ of the honest
// updates). Plain mean aggregation degrades; NNM + trimmed mean (f = 2) stays near the attack-free run.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { gaussianClasses } from '../../cli/demo-data.js';
import { CLIENT_TOKEN, tempDir } from '../server/helpers.js';
import { modelInit, readMetrics, startTrainingPool } from './processes.js';
import { runFedpool as fedpool } from '../helpers/processes.js';

test('2 of 10 clients send scaled sign flips: mean degrades, nnm + trimmed-mean stays within a few points of the clean run', async (t) => {
  t.timeout(300_000);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await modelInit(dir, ['--input', 'features:8', '--output', 'classes:3', '--hidden', '16', '--seed', '3']);
  gaussianClasses(path.join(dir, 'train.jsonl'), 1000, 11);
  gaussianClasses(path.join(dir, 'val.jsonl'), 300, 12);

  const { coordinator } = await startTrainingPool(t, dir, { workers: ['a', 'b'], leaseMs: 30_000 });

  const base = {
    model: 'model',
    task: 'classify',
    data: { source: 'central', path: 'train.jsonl', partition: { clients: 10, kind: 'iid', seed: 2 } },
    eval: { path: 'val.jsonl', every: 5 },
    mode: 'sync', rounds: 10, clientsPerRound: 10, roundDeadlineMs: 30000,
    local: { steps: 5, batchSize: 16, lr: 0.1, momentum: 0.5 },
  };
  const attack = { clients: [3, 7], attack: 'scaled-sign-flip', scale: 10 };
  const runs = {
    clean: { ...base },
    mean: { ...base, adversary: attack },
    robust: { ...base, adversary: attack, aggregation: { robust: { mix: 'nnm', rule: 'trimmed-mean', f: 2 } } },
  };
  const accuracy: Record<string, number> = {};
  await Promise.all(Object.entries(runs).map(async ([name, config]) => {
    writeFileSync(path.join(dir, `${name}.json`), JSON.stringify(config));
    const r = await fedpool(['train', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--config', path.join(dir, `${name}.json`), '--out', path.join(dir, name)]);
    t.is(r.status, 0, `${name}: ${r.stderr}`);
    const m = readMetrics(path.join(dir, name, 'metrics.jsonl'));
    t.is(m.length, 10);
    t.true(m.every((l) => l.participants === 10), name);
    accuracy[name] = m.at(-1)!.accuracy!;
  }));
  t.log(`final accuracy: clean ${accuracy.clean}, attacked mean ${accuracy.mean}, attacked nnm+trimmed-mean ${accuracy.robust}`);
  t.true(accuracy.clean! >= 0.85, `clean ${accuracy.clean}`);
  t.true(accuracy.mean! < accuracy.clean! - 0.3, `mean under attack ${accuracy.mean} vs clean ${accuracy.clean}`);
  t.true(Math.abs(accuracy.robust! - accuracy.clean!) <= 0.05, `nnm+trimmed-mean under attack ${accuracy.robust} vs clean ${accuracy.clean}`);
});
