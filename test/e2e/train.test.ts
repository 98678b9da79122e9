// Federated training end to end: a real coordinator, two real worker processes and the real `fedpool train`, all
// on loopback. Synthetic Gaussian classes, central data, Dirichlet(0.5) over 12 clients.
import test from 'ava';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { readBundleDir } from '../../client/scoring/bundle-fs.js';
import { validateBundle } from '../../shared/model/bundle.js';
import { CLIENT_TOKEN, tempDir } from '../server/helpers.js';
import { gaussianClasses } from '../../cli/demo-data.js';
import { modelInit, startTrainingPool } from './processes.js';
import { runFedpool as cli, startFedpool } from '../helpers/processes.js';

test('fedpool train: sync FedAvg and async FedBuff over 2 real workers; a bad config is one line; an async run detached with Ctrl-C and followed again with --resume; model pull', async (t) => {
  t.timeout(300_000);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  await modelInit(dir, ['--input', 'features:8', '--output', 'classes:3', '--hidden', '16', '--seed', '2']);
  gaussianClasses(path.join(dir, 'train.jsonl'), 1200, 1);
  gaussianClasses(path.join(dir, 'val.jsonl'), 300, 2);

  const { coordinator } = await startTrainingPool(t, dir, { workers: ['a', 'b'], leaseMs: 20_000 });

  const base = {
    model: 'model',
    task: 'classify',
    data: { source: 'central', path: 'train.jsonl', partition: { clients: 12, kind: 'dirichlet', alpha: 0.5, seed: 3 } },
    eval: { path: 'val.jsonl', every: 1 },
    local: { steps: 10, batchSize: 32, lr: 0.1, momentum: 0.5 },
  };

  // A bad config: one line, exit 1, nothing submitted.
  writeFileSync(path.join(dir, 'bad.json'), JSON.stringify({ ...base, mode: 'sync', rounds: 8 }));
  const bad = await cli(['train', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--config', path.join(dir, 'bad.json')]);
  t.is(bad.status, 1);
  t.regex(bad.stderr, /^train\.json: clientsPerRound: required for mode 'sync'\n$/);
  const jobsBefore = (await (await fetch(`${coordinator.url}/api/jobs`, { headers: { authorization: `Bearer ${CLIENT_TOKEN}` } })).json()) as unknown[];
  t.is(jobsBefore.length, 0);

  // Sync FedAvg: 8 rounds of 6 clients.
  writeFileSync(path.join(dir, 'sync.json'), JSON.stringify({ ...base, mode: 'sync', rounds: 8, clientsPerRound: 6, roundDeadlineMs: 20000 }));
  const out = path.join(dir, 'out-sync');
  const [sync, asyncRun] = await Promise.all([
    cli(['train', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--config', path.join(dir, 'sync.json'), '--out', out]),
    (async () => {
      // Detached after its first step (Ctrl-C with --detach), then followed to the end with --resume.
      writeFileSync(path.join(dir, 'async.json'), JSON.stringify({ ...base, eval: { path: 'val.jsonl', every: 4 }, mode: 'async', steps: 12, concurrency: 4, buffer: 2 }));
      const first = startFedpool(t, ['train', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--config', path.join(dir, 'async.json'), '--out', path.join(dir, 'out-async'), '--detach']);
      const [, id] = await first.line(/^fedpool job (\S+) submitted$/m, { stream: 'stderr', what: 'the async job id' });
      await first.line(/^step 1\/12 /m, { stream: 'stderr', what: 'the first async step' });
      t.is(await first.stop('SIGINT'), 130, first.stderr());
      t.regex(first.stderr(), new RegExp(`job ${id} keeps running\\. Follow it: fedpool wait ${id}; cancel it: fedpool cancel ${id}`));
      return cli(['train', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--resume', id!, '--out', path.join(dir, 'out-async')]);
    })(),
  ]);
  t.is(sync.status, 0, sync.stderr);
  t.regex(sync.stderr, /^fedpool job \S+ submitted$/m);
  const summary = JSON.parse(sync.stdout.trim().split('\n').at(-1) ?? '{}') as { steps: number; final_accuracy: number };
  t.is(summary.steps, 8);
  const metrics = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; accuracy: number; participants: number; staleness_mean: number });
  t.is(metrics.length, 8);
  t.deepEqual(metrics.map((m) => m.step), [1, 2, 3, 4, 5, 6, 7, 8]);
  const first = metrics[0]!.accuracy;
  const last = metrics[7]!.accuracy;
  t.true(last >= 0.8, `final accuracy ${last}`);
  t.true(last > first, `accuracy ${first} → ${last}`);
  t.is(summary.final_accuracy, last);
  t.true(metrics.every((m) => m.participants > 0 && m.participants <= 6));
  const files = await readBundleDir(path.join(out, 'model'));
  t.notThrows(() => validateBundle(files));
  const config = JSON.parse(readFileSync(path.join(out, 'config.json'), 'utf8')) as { mode: string; rounds: number };
  t.is(config.mode, 'sync');
  t.is(config.rounds, 8);

  // Async FedBuff: 12 steps, concurrency 4, buffer 2.
  t.is(asyncRun.status, 0, asyncRun.stderr);
  const am = readFileSync(path.join(dir, 'out-async', 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; staleness_mean: number | null; accuracy: number | null });
  t.is(am.length, 12);
  t.true(am.every((m) => typeof m.staleness_mean === 'number' && m.staleness_mean >= 0));
  t.is(am.filter((m) => m.accuracy !== null).length, 3);
  t.deepEqual(am.map((m) => m.step), Array.from({ length: 12 }, (_, i) => i + 1), 'every step, as if never interrupted');
  t.like(JSON.parse(readFileSync(path.join(dir, 'out-async', 'config.json'), 'utf8')), { mode: 'async', steps: 12, concurrency: 4, buffer: 2 });
  const asyncModel = await readBundleDir(path.join(dir, 'out-async', 'model'));
  t.notThrows(() => validateBundle(asyncModel));
  t.regex(asyncRun.stderr, /^fedpool train: following job \S+ \((running|done), \d+\/12 steps\)$/m);

  // model pull: the finished sync job's model, the same files train wrote; an occupied --out is refused.
  const syncId = (JSON.parse(sync.stdout.trim().split('\n').at(-1) ?? '{}') as { job: string }).job;
  const pulled = await cli(['model', 'pull', syncId, '--out', path.join(dir, 'pulled'), '--url', coordinator.url, '--token', CLIENT_TOKEN]);
  t.is(pulled.status, 0, pulled.stderr);
  t.like(JSON.parse(pulled.stdout), { job: syncId, state: 'done', step: 8 });
  t.deepEqual(await readBundleDir(path.join(dir, 'pulled')), await readBundleDir(path.join(out, 'model')));
  const again = await cli(['model', 'pull', syncId, '--out', path.join(dir, 'pulled'), '--url', coordinator.url, '--token', CLIENT_TOKEN]);
  t.is(again.status, 1);
  t.regex(again.stderr, /pulled: not empty \(a model\?\); choose another --out\n$/);
});
