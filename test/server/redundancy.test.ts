// Redundancy that verifies, on the coordinator (docs/security.md): worker records count confirmed and outvoted
// results and quarantine a worker that is outvoted; `--redundancy adaptive` replicates a worker's results less often
// as its record of confirmed results grows (never below 5 %); a worker's credit is capped near twice its threads.
import test from 'ava';
import pino from 'pino';
import { startCoordinator } from '../../server/coordinator.js';
import { creditCap } from '../../server/job-registry.js';
import { WorkerRecords } from '../../server/worker-records.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, api, checkResults, featureItems, jobStatus, submitJob, until, uploadBlob, waitForJob } from './helpers.js';

const quiet = pino({ level: 'silent' });

test('records: three outvoted results with nothing confirmed mean quarantine; a rare outvote among many confirmed ones does not', (t) => {
  const quarantined: string[] = [];
  const records = new WorkerRecords(undefined, (name) => quarantined.push(name));
  for (let i = 0; i < 3; i++) records.verdict('liar', 'outvoted');
  t.deepEqual(quarantined, ['liar']);
  for (let i = 0; i < 100; i++) records.verdict('honest', 'verified');
  t.is(records.consecutiveValid('honest'), 100);
  for (let i = 0; i < 3; i++) records.verdict('honest', 'outvoted');
  t.deepEqual(quarantined, ['liar'], '3 outvoted of 103 is under 5 %');
  t.is(records.consecutiveValid('honest'), 0, 'an outvoted result starts the run of confirmed ones again');
  t.false(records.trusted('honest'), 'no speculative copies for a record with outvoted results and few accepted ones');
  t.true(records.release('liar'));
  t.like(records.of('liar'), { outvoted: 0, verified: 0, quarantined: false });
});

test('adaptive: every shard once, spot checks that thin out as the workers prove themselves, all scores exact', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  t.teardown(() => c.close());
  const model = await uploadBlob(c.url, Uint8Array.of(1, 2, 3));
  const items = featureItems(400);
  const id = await submitJob(c.url, { model, items, shardSize: 1, redundancy: 'adaptive' });
  const workers = await Promise.all(['a', 'b'].map((name) => FakeWorker.connect(c.url, { name })));
  t.teardown(() => workers.forEach((w) => w.close()));
  for (const w of workers) w.pull(4);
  t.like(await waitForJob(c.url, id), { state: 'done' });
  await checkResults(t, c.url, id, items);
  const status = (await jobStatus(c.url, id)) as unknown as { redundancy: string; replicas: number; disputed: number };
  t.like(status, { redundancy: 'adaptive', disputed: 0 });
  t.log(`${status.replicas} replicas for 400 shards`);
  // Checked with probability 1/(confirmed results in a row), at least 5 %: about 40 extra replicas of 400 (the exact
  // count depends on which worker answers first); far from the 400 of --redundancy 2, and never none.
  t.true(status.replicas > 400 + 0.05 * 400 * 0.3 && status.replicas < 400 + 0.4 * 400, `${status.replicas} replicas for 400 shards`);
});

test('credit is capped near twice the worker’s threads, whatever it asks for', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  t.teardown(() => c.close());
  const model = await uploadBlob(c.url, Uint8Array.of(1, 2, 3));
  const id = await submitJob(c.url, { model, items: featureItems(100), shardSize: 1 });
  const greedy = await FakeWorker.connect(c.url, { name: 'greedy', auto: false });
  t.teardown(() => greedy.close());
  greedy.pull(1024);
  const cap = creditCap({ threads: 1 });
  await until(() => greedy.held.size === cap, `the greedy worker holds ${cap} leases`);
  await until(async () => (await jobStatus(c.url, id)).state === 'running', 'the job runs');
  t.is(greedy.held.size, cap, 'and no more');
  t.is(cap, 10);
});

test('--agree-tol: results 1 % apart are a split at the default 1e-4 and agree at 0.05', async (t) => {
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  t.teardown(() => c.close());
  const model = await uploadBlob(c.url, Uint8Array.of(1, 2, 3));
  const workers = await Promise.all([
    FakeWorker.connect(c.url, { name: 'exact' }),
    FakeWorker.connect(c.url, { name: 'near', lie: (honest) => honest.map((v) => v * 1.01 + 0.01) }),
  ]);
  t.teardown(() => workers.forEach((w) => w.close()));
  for (const w of workers) w.pull(4);
  const items = featureItems(20);
  const strict = await submitJob(c.url, { model, items, shardSize: 5, redundancy: 2 });
  const loose = await submitJob(c.url, { model, items, shardSize: 5, redundancy: 2, agreeTol: 0.05 });
  for (const id of [strict, loose]) t.like(await waitForJob(c.url, id), { state: 'done' });
  t.like(await jobStatus(c.url, strict), { agreeTol: 1e-4, disputed: 20, disagreements: 4 });
  t.like(await jobStatus(c.url, loose), { agreeTol: 0.05, disputed: 0, disagreements: 0, replicas: 8 });
});

test('--worker-identity token: a liar joining under two names with one token is one vote; the honest quorum wins', async (t) => {
  const tokens = ['tok-liar', 'tok-a', 'tok-b'];
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerTokens: tokens, clientTokens: [CLIENT_TOKEN], workerIdentity: 'token' });
  t.teardown(() => c.close());
  const model = await uploadBlob(c.url, Uint8Array.of(1, 2, 3));
  const items = featureItems(30);
  const id = await submitJob(c.url, { model, items, shardSize: 3, redundancy: 3 });
  const lie = (honest: Float32Array): Float32Array => new Float32Array(honest.length).fill(42);
  const workers = await Promise.all([
    FakeWorker.connect(c.url, { name: 'liar-1', token: 'tok-liar', lie }),
    FakeWorker.connect(c.url, { name: 'liar-2', token: 'tok-liar', lie }),
    FakeWorker.connect(c.url, { name: 'honest-a', token: 'tok-a', delayMs: 2 }),
    FakeWorker.connect(c.url, { name: 'honest-b', token: 'tok-b', delayMs: 2 }),
  ]);
  t.teardown(() => workers.forEach((w) => w.close()));
  for (const w of workers) w.pull(4);
  t.like(await waitForJob(c.url, id), { state: 'done' });
  await checkResults(t, c.url, id, items);
  const listed = (await (await api(c.url, '/api/workers')).json()) as { name: string; identity: string; state: string }[];
  const liars = listed.filter((w) => w.name.startsWith('liar'));
  t.is(new Set(liars.map((w) => w.identity)).size, 1, 'both names are one identity');
  t.regex(liars[0]?.identity ?? '', /^token:[0-9a-f]{16}$/);
  t.true(liars.every((w) => w.state === 'quarantined'));
  await t.throwsAsync(startCoordinator({ port: 0, state: ':memory:', logger: quiet, workerIdentity: 'token' }), { message: /--worker-identity token needs worker tokens/ });
});
