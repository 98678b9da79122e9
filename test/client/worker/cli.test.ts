// `fedpool worker` as users run it (a real process), against the fake coordinator: the connected line,
// real scoring through the piscina pool, SIGTERM drain, a refused token, option errors.
import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selectBackend } from '../../../client/backends.js';
import { readBundleDir } from '../../../client/scoring/bundle-fs.js';
import { scoreInProcess } from '../../../client/scoring/reference.js';
import { packBundle } from '../../../shared/model/bundle.js';
import { cleanEnv, runFedpool, startFedpool, type Child } from '../../helpers/processes.js';
import { FakeCoordinator, featureItems } from './fake-coordinator.js';

const scratch = mkdtempSync(join(tmpdir(), 'fedpool-worker-cli-'));
test.after.always(() => rmSync(scratch, { recursive: true, force: true }));

const env = cleanEnv({ FEDPOOL_LOG: 'info', FEDPOOL_CACHE_DIR: join(scratch, 'cache') });

/** The CLI as a process, stopped by the test's teardown. */
function cli(t: ExecutionContext, ...args: string[]): Child {
  return startFedpool(t, args, { env });
}

test('connects (one line on stdout), scores through the real pool, and drains on SIGTERM: exit 0, every started lease answered', async (t) => {
  const modelDir = join(scratch, 'model');
  const init = await runFedpool(['model', 'init', '--out', modelDir, '--input', 'features:4', '--output', 'reward', '--hidden', '8', '--seed', '3'], { env });
  t.is(init.status, 0, init.stderr);
  const files = await readBundleDir(modelDir);
  const items = featureItems('item', 64, 4);
  await selectBackend('cpu');
  const expected = await scoreInProcess(files, items.map((i) => ({ features: i.features!.data.slice() })), 16);

  const coord = await new FakeCoordinator({ workerTokens: ['wt'] }).listen();
  t.teardown(() => coord.close());
  const hash = coord.addBlob(packBundle(files));
  const shards = Array.from({ length: 40 }, (_, s) => ({ jobId: `J`, modelHash: hash, items: items.map((i) => ({ ...i, id: `s${s}-${i.id}` })), batchSize: 16 }));
  coord.enqueue(...shards);

  const w = cli(t, 'worker', '--url', coord.url, '--token', 'wt', '--backend', 'cpu', '--threads', '1', '--name', 'cli-w');
  await w.line(/\n/, { stream: 'stdout' });
  t.is(w.stdout(), `fedpool worker cli-w connected to ${coord.url} (backend=cpu, threads=1)\n`);
  await coord.until(() => coord.results.length >= 1, 'a first result');
  w.proc.kill('SIGTERM'); // with the queue still full: one lease scoring, one waiting
  const { code, signal } = await w.exited;
  t.is(signal, null);
  t.is(code, 0, w.stderr());
  t.is(w.stdout().split('\n').length, 2, 'exactly one stdout line');
  t.regex(w.stderr(), /SIGTERM: draining/);

  await coord.until(() => coord.outstandingAtDisconnect.length === 1, 'disconnect seen');
  t.deepEqual(coord.outstandingAtDisconnect, [0], 'every lease was answered or released before disconnecting');
  t.deepEqual(coord.failures, []);
  t.is(coord.hellos.length, 1);
  t.is(coord.blobRequests.length, 1);
  const answered = new Set<string>();
  for (const { message: r } of coord.results) {
    t.false(answered.has(r.shardId), `shard ${r.shardId} answered once`);
    answered.add(r.shardId);
    if (r.payload.kind !== 'scores') return t.fail('scores expected');
    const got = r.payload.scores.data;
    t.is(got.length, expected.length);
    for (let i = 0; i < got.length; i++) if (Math.abs(got[i]! - expected[i]!) > 1e-5) return t.fail(`item ${i}: ${got[i]} ≠ ${expected[i]}`);
  }
  t.is(coord.results.length + coord.queue.length, shards.length, 'no shard lost: answered or back in the queue');
});

test('a refused token exits 1 with one line naming the token problem, without retrying', async (t) => {
  const coord = await new FakeCoordinator({ workerTokens: ['wt'], clientTokens: ['ct'] }).listen();
  t.teardown(() => coord.close());
  const [unknown, client] = [cli(t, 'worker', '--url', coord.url, '--token', 'nope', '--backend', 'cpu', '--threads', '1'), cli(t, 'worker', '--url', coord.url, '--token', 'ct', '--backend', 'cpu', '--threads', '1')];
  t.like(await unknown.exited, { code: 1, signal: null });
  t.is(unknown.stderr(), 'fedpool worker: coordinator refused the token: unauthorized: unknown worker token\n');
  t.is(unknown.stdout(), '');
  t.like(await client.exited, { code: 1, signal: null });
  t.regex(client.stderr(), /^fedpool worker: coordinator refused the token: .*client token; workers need a worker token\n$/);
  t.is(coord.authRefusals, 2);
});

test('an unreachable coordinator is retried with a line on stderr; SIGTERM then exits 0, a second signal exits 130', async (t) => {
  const port = await new Promise<number>((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => resolve(p));
    });
  });
  const url = `http://127.0.0.1:${port}`;
  const a = cli(t, 'worker', '--url', url, '--backend', 'cpu', '--threads', '1');
  const b = cli(t, 'worker', '--url', url, '--backend', 'cpu', '--threads', '1');
  await Promise.all([a.line(/retrying in/, { stream: 'stderr' }), b.line(/retrying in/, { stream: 'stderr' })]);
  // Not a terminal: JSON lines, as the coordinator's.
  const first = a.stderr().split('\n').map((l) => JSON.parse(l || '{}') as { level?: number; name?: string; msg?: string }).find((l) => /retrying in/.test(l.msg ?? ''));
  t.like(first, { level: 40, name: 'fedpool-worker' });
  t.regex(first?.msg ?? '', new RegExp(`^${url}: cannot connect: .+; retrying in \\d+\\.\\d s \\(attempt 1\\)$`));
  a.proc.kill('SIGTERM');
  t.like(await a.exited, { code: 0, signal: null });
  t.is(a.stdout(), '');

  // b: connect it, and keep it draining (its drain barrier unanswered) until the second signal has landed: without
  // the hold, a drain finished between the two signals made this exit 0 on a loaded machine.
  const coord = await new FakeCoordinator({ port }).listen();
  t.teardown(() => coord.close());
  const release = coord.holdDrainBarriers();
  t.teardown(release);
  await b.line(/connected to/, { stream: 'stdout' });
  b.proc.kill('SIGTERM');
  await b.line(/SIGTERM: draining/, { stream: 'stderr' });
  b.proc.kill('SIGINT');
  t.like(await b.exited, { code: 130, signal: null });
  t.regex(b.stderr(), /SIGINT again: exiting without draining/);
});

test('option errors: --scorer-url needs --scorer-api and the scorer flags need --scorer-url; --data needs NAME=PATH and an existing path', async (t) => {
  const run = (...args: string[]) => runFedpool(['worker', '--url', 'http://127.0.0.1:9', ...args], { env });
  const scorer = await run('--scorer-url', 'http://127.0.0.1:8000');
  t.is(scorer.status, 1);
  t.is(scorer.stderr, 'fedpool worker: --scorer-url needs --scorer-api (vllm-classify, tei, openrlhf, openai-logprobs, openai-embeddings, ollama-embed)\n');
  const api = await run('--scorer-api', 'tei');
  t.is(api.stderr, 'fedpool worker: --scorer-api needs --scorer-url\n');
  const model = await run('--scorer-model', 'm');
  t.is(model.stderr, 'fedpool worker: --scorer-model needs --scorer-url\n');
  const unknown = await run('--scorer-url', 'http://127.0.0.1:8000', '--scorer-api', 'triton');
  t.regex(unknown.stderr, /^error: option '--scorer-api <api>' argument 'triton' is invalid\. Allowed choices are vllm-classify, tei, openrlhf, openai-logprobs, openai-embeddings, ollama-embed\.$/m);
  const bad = await run('--data', 'no-equals-sign');
  t.is(bad.status, 1);
  t.regex(bad.stderr, /^fedpool worker: --data "no-equals-sign": expected NAME=PATH/);
  const missing = await run('--data', `docs=${join(scratch, 'nope')}`);
  t.is(missing.status, 1);
  t.regex(missing.stderr, /^fedpool worker: --data docs: no such file or directory: /);
});
