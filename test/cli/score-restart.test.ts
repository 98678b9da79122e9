// fedpool score follows its job through a coordinator restart (the same state file and port), as fedpool train does,
// and writes the whole output once the job ends on the restarted coordinator.
import test from 'ava';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runFedpool, startFedpool } from '../helpers/processes.js';
import { CLIENT_TOKEN, FakeWorker, expectedScore, startCoordinatorProcess, tempDir, until } from '../server/helpers.js';

test('fedpool score rides out a coordinator restart and writes every line', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = path.join(dir, 'fedpool.db');
  const args = ['--state', state, '--client-token', CLIENT_TOKEN, '--worker-token', 'w'];
  const first = await startCoordinatorProcess(args);
  t.teardown(() => first.stop('SIGKILL'));
  const init = await runFedpool(['model', 'init', '--out', path.join(dir, 'model'), '--input', 'features:3', '--output', 'reward', '--hidden', '4']);
  t.is(init.status, 0, init.stderr);
  const items = Array.from({ length: 40 }, (_, i) => ({ id: `i${i}`, features: [i, 1, 2] }));
  const input = path.join(dir, 'in.jsonl');
  writeFileSync(input, items.map((i) => JSON.stringify(i)).join('\n') + '\n');
  const output = path.join(dir, 'out.jsonl');

  // Half the shards are scored before the restart, by a worker that answers only when told to.
  const before = await FakeWorker.connect(first.url, { name: 'before', token: 'w', auto: false });
  t.teardown(() => before.close());
  before.pull(2);
  const score = startFedpool(t, ['score', '--url', first.url, '--token', CLIENT_TOKEN, '--model', path.join(dir, 'model'), '--input', input, '--output', output, '--shard-size', '10']);
  await score.line(/^fedpool job \S+ submitted$/m, { stream: 'stderr', what: 'submission' });
  await until(() => before.held.size === 2, 'two leases');
  for (const l of [...before.held.values()]) before.answer(l);
  // The command opens its output after submitting: absent until then, on a busy machine.
  await until(() => existsSync(output) && readFileSync(output, 'utf8').split('\n').length > 20, 'the first 20 lines written');
  before.close();
  t.is(await first.stop('SIGTERM'), 0);

  const second = await startCoordinatorProcess([...args, '--port', String(first.port)]);
  t.teardown(() => second.stop('SIGKILL'));
  const after = await FakeWorker.connect(second.url, { name: 'after', token: 'w' });
  t.teardown(() => after.close());
  after.pull(2);
  t.is(await score.status, 0, score.stderr());
  t.regex(score.stderr(), /^fedpool score: (connection lost \(.+\)|the coordinator closed the stream of job \S+ before it ended); retrying for up to 120 s$/m);
  const lines = readFileSync(output, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; score: number });
  t.deepEqual(lines.map((l) => l.id), items.map((i) => i.id), 'every line once, in input order');
  t.true(lines.every((l, i) => Math.abs(l.score - expectedScore(items[i]!)) <= 1e-6));
});
