// One-command join (issue 15): the coordinator serves its own package at GET /fedpool.tgz; npm installs it into an
// empty folder (as `npx --package URL` does for a machine with only Node.js), and the installed `fedpool` — no
// checkout, no build, no dev dependencies — joins the pool as a worker and scores a job.
import test from 'ava';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { cleanEnv, run, runFedpool, start } from '../helpers/processes.js';
import { CLIENT_TOKEN, WORKER_TOKEN, startCoordinatorProcess, tempDir } from '../server/helpers.js';

test('the served package installs into an empty folder and its fedpool joins the pool as a worker', async (t) => {
  t.timeout(300_000);
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const coordinator = await startCoordinatorProcess(['--state', ':memory:', '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN], {}, t);

  const res = await fetch(`${coordinator.url}/fedpool.tgz`);
  t.is(res.status, 200, await res.clone().text().catch(() => ''));
  t.is(res.headers.get('content-type'), 'application/gzip');
  const tarball = new Uint8Array(await res.arrayBuffer());
  t.deepEqual([tarball[0], tarball[1]], [0x1f, 0x8b], 'gzip');

  // As `npx -y --package URL fedpool worker …` installs it (from npm's cache where it can; the registry otherwise),
  // less the optional GPU packages (webgpu's binaries are 130 MB; a CPU worker does not load them).
  const home = path.join(dir, 'joined');
  const install = await run('npm', ['install', `${coordinator.url}/fedpool.tgz`, '--omit=optional', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: dir, env: cleanEnv(), ms: 240_000 });
  t.is(install.status, 0, install.stderr);
  const installed = path.join(dir, 'node_modules', 'fedpool');
  t.true(existsSync(path.join(installed, 'dist', 'cli', 'main.js')), 'the compiled CLI is in the package');
  t.false(existsSync(path.join(installed, 'cli')), 'no sources');
  for (const dev of ['ava', 'typescript', 'tsx']) t.false(existsSync(path.join(dir, 'node_modules', dev)), `${dev} (a dev dependency) is not installed`);

  const tokenFile = path.join(dir, 'worker-token');
  writeFileSync(tokenFile, `${WORKER_TOKEN}\n`);
  const worker = start(t, path.join(dir, 'node_modules', '.bin', 'fedpool'), ['worker', '--url', coordinator.url, '--token-file', tokenFile, '--name', 'joined', '--threads', '1', '--backend', 'cpu'], {
    cwd: dir,
    env: cleanEnv({ FEDPOOL_CACHE_DIR: path.join(home, 'cache') }),
  });
  await worker.line(/^fedpool worker joined connected to /m, { stream: 'stdout', what: 'the installed worker joining' });

  // It does work: a small job, with it the only worker.
  const model = path.join(dir, 'model');
  t.is((await runFedpool(['model', 'init', '--out', model, '--input', 'features:3', '--output', 'reward', '--hidden', '4'])).status, 0);
  const input = path.join(dir, 'in.jsonl');
  writeFileSync(input, Array.from({ length: 20 }, (_, i) => JSON.stringify({ id: `i${i}`, features: [i, 1, 2] })).join('\n') + '\n');
  const scored = await runFedpool(['score', '--url', coordinator.url, '--token', CLIENT_TOKEN, '--model', model, '--input', input, '--output', path.join(dir, 'out.jsonl')]);
  t.is(scored.status, 0, scored.stderr);
  t.is(readFileSync(path.join(dir, 'out.jsonl'), 'utf8').trim().split('\n').length, 20);
  const job = (JSON.parse(scored.stdout) as { job: string }).job;
  const detail = (await (await fetch(`${coordinator.url}/api/jobs/${job}`, { headers: { authorization: `Bearer ${CLIENT_TOKEN}` } })).json()) as { workers: unknown };
  t.deepEqual(detail.workers, [{ worker: 'joined', shards: 1 }]);
  t.is(await worker.stop('SIGTERM'), 0, worker.stderr());
});
