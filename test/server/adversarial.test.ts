// The open pool's attacks, reproduced on a real coordinator (issue 13's table), each beside honest workers whose job
// must complete with exactly the honest scores. Rows covered here: a worker that pulls a huge credit and disconnects,
// again and again; a worker that answers every lease with a result of the wrong shape; a worker that refuses every
// lease as impossible (retryable: false).
import test from 'ava';
import { Tensor, sendMessage } from '../../shared/protocol/index.js';
import { runFedpool } from '../helpers/processes.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, api, checkResults, featureItems, startCoordinatorProcess, submitJob, until, uploadBlob, waitForJob, type CoordinatorProcess } from './helpers.js';

/** Answers every lease `w` holds with a failure no retry can fix; returns how many. */
function refuseHeld(w: FakeWorker): number {
  const held = [...w.held.values()];
  for (const l of held) {
    w.held.delete(l.leaseId);
    sendMessage(w.socket, { type: 'failure', leaseId: l.leaseId, shardId: l.shardId, retryable: false, reason: 'I will not' });
  }
  return held.length;
}

async function pool(t: import('ava').ExecutionContext): Promise<{ c: CoordinatorProcess; model: string; honest: FakeWorker[] }> {
  const c = await startCoordinatorProcess(['--state', ':memory:', '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN], {}, t);
  t.teardown(() => c.stop());
  const model = await uploadBlob(c.url, Uint8Array.of(9, 9, 9));
  const honest = await Promise.all(['honest-a', 'honest-b'].map((name) => FakeWorker.connect(c.url, { name, delayMs: 2 })));
  t.teardown(() => honest.forEach((w) => w.close()));
  return { c, model, honest };
}

test('a worker that pulls a credit of 1,024 and disconnects, 30 times over, cannot fail a job two honest workers can do', async (t) => {
  const { c, model, honest } = await pool(t);
  const items = featureItems(400);
  const id = await submitJob(c.url, { model, items, shardSize: 2 });
  // The liar grabs every queued shard before the honest workers ask for any, then drops them all.
  for (let round = 0; round < 30; round++) {
    const liar = await FakeWorker.connect(c.url, { name: 'liar', auto: false, heartbeat: false });
    liar.pull(1024);
    await until(() => liar.leases.length > 0 || round > 0, `round ${round}: the liar got leases`);
    liar.close();
    await until(() => liar.disconnected, 'the liar is gone');
  }
  for (const w of honest) w.pull(2);
  t.like(await waitForJob(c.url, id), { state: 'done' });
  await checkResults(t, c.url, id, items);
  const workers = (await (await api(c.url, '/api/workers')).json()) as Array<{ name: string }>;
  t.false(workers.some((w) => w.name === 'liar'));
  t.regex(await (await api(c.url, '/metrics')).text(), /^fedpool_workers_quarantined 1$/m, 'its record of 200 lost leases put it in quarantine');
});

test('a worker whose every result has the wrong shape, or that refuses every lease as impossible, is kept out; the job completes', async (t) => {
  const { c, model, honest } = await pool(t);
  const items = featureItems(200);
  const id = await submitJob(c.url, { model, items, shardSize: 4 });
  const misshapen = await FakeWorker.connect(c.url, { name: 'misshapen', auto: false });
  const refuser = await FakeWorker.connect(c.url, { name: 'refuser', auto: false });
  t.teardown(() => [misshapen, refuser].forEach((w) => w.close()));
  let bad = 0;
  // Answer whatever they hold, badly, until the job ends.
  const timer = setInterval(() => {
    for (const l of [...misshapen.held.values()]) {
      misshapen.held.delete(l.leaseId);
      bad++;
      sendMessage(misshapen.socket, { type: 'result', leaseId: l.leaseId, shardId: l.shardId, payload: { kind: 'scores', scores: Tensor.float32(new Float32Array(1)) } });
    }
    bad += refuseHeld(refuser);
  }, 5);
  t.teardown(() => clearInterval(timer));
  misshapen.pull(8);
  refuser.pull(8);
  await until(() => bad >= 20, 'the bad workers answered some leases');
  for (const w of honest) w.pull(2);
  t.like(await waitForJob(c.url, id), { state: 'done' });
  await checkResults(t, c.url, id, items);
});

test('a worker whose record is mostly refused work is quarantined (no leases, shown in /api/workers and /metrics) until an admin lets it out', async (t) => {
  const ADMIN = 'admin-token';
  const c = await startCoordinatorProcess(['--state', ':memory:', '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN, '--admin-token', ADMIN], {}, t);
  t.teardown(() => c.stop());
  const model = await uploadBlob(c.url, Uint8Array.of(7));
  const id = await submitJob(c.url, { model, items: featureItems(400), shardSize: 2 });
  // An honest worker is connected but takes nothing yet: the shards stay possible, so refusals are votes, not the end.
  const idle = await FakeWorker.connect(c.url, { name: 'idle' });
  const refuser = await FakeWorker.connect(c.url, { name: 'refuser', auto: false });
  t.teardown(() => [idle, refuser].forEach((w) => w.close()));
  let refused = 0;
  const timer = setInterval(() => {
    refused += refuseHeld(refuser);
  }, 2);
  t.teardown(() => clearInterval(timer));
  refuser.pull(4);
  const listed = async (): Promise<{ state: string; record: { refused: number } } | undefined> =>
    ((await (await api(c.url, '/api/workers')).json()) as Array<{ name: string; state: string; record: { refused: number } }>).find((w) => w.name === 'refuser');
  await until(async () => (await listed())?.state === 'quarantined', 'quarantine');
  const leasesAtQuarantine = refuser.leases.length;
  t.true(leasesAtQuarantine >= 20 && leasesAtQuarantine <= 24, `quarantined after 20 refusals (it held up to 4 more): ${leasesAtQuarantine}`);
  refuser.pull(4);
  await until(async () => (await api(c.url, '/metrics')).text().then((m) => /^fedpool_workers_quarantined 1$/m.test(m)), 'the gauge');
  t.is(refuser.leases.length, leasesAtQuarantine, 'no leases while quarantined, whatever it pulls');
  t.like(await (await api(c.url, `/api/jobs/${id}`)).json(), { state: 'running' }, 'its refusals failed nothing');

  const asClient = await runFedpool(['workers', 'unquarantine', 'refuser', '--url', c.url, '--token', CLIENT_TOKEN]);
  t.is(asClient.status, 1);
  t.regex(asClient.stderr, /needs an admin token/);
  // It holds nothing while quarantined, and it pulled already: from its release on, every refusal is a new one.
  const base = refused;
  const asAdmin = await runFedpool(['workers', 'unquarantine', 'refuser', '--url', c.url, '--token', ADMIN]);
  t.is(asAdmin.status, 0, asAdmin.stderr);
  t.is(asAdmin.stdout, 'fedpool: worker refuser is out of quarantine\n');
  refuser.pull(4);
  await until(() => refuser.leases.length > leasesAtQuarantine, 'leases again');
  // Stop refusing, answer what it still holds, and wait for the coordinator to have read every refusal sent since.
  clearInterval(timer);
  refused += refuseHeld(refuser);
  const since = refused - base;
  await until(async () => (await listed())?.record.refused === since, `a fresh record: only the ${since} refusals since it came out`);
  t.is((await listed())?.record.refused, since, 'a fresh record');
  t.true(refused > 0);
});
