// Tenancy (issue 13): a job belongs to the client token that created it. Another client token gets 404 for it on
// every job route and does not see it in the list; an --admin-token sees and cancels everything; the owner survives
// a coordinator restart on the same state file. A real `fedpool coordinator` process on a SQLite file.
import test from 'ava';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { CLIENT_TOKEN, WORKER_TOKEN, api, featureItems, startCoordinatorProcess, submitJob, tempDir, uploadBlob } from './helpers.js';

const OTHER = 'c2-other-tenant';
const ADMIN = 'a-admin';

async function body(res: Response): Promise<{ error?: string; id?: string; state?: string } & Array<{ id: string }>> {
  return (await res.json()) as { error?: string; id?: string; state?: string } & Array<{ id: string }>;
}

test('a job is its creator’s: other client tokens get 404 everywhere, admins see and cancel it, and a restart keeps the owner', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = path.join(dir, 'state.db');
  const args = ['--state', state, '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN, '--client-token', OTHER, '--admin-token', ADMIN];
  let c = await startCoordinatorProcess(args, {}, t);
  const model = await uploadBlob(c.url, new TextEncoder().encode('bytes of a model nobody runs'));
  // No worker is connected: the jobs stay queued while we probe them.
  const mine = await submitJob(c.url, { model, items: featureItems(20), shardSize: 5 });
  const theirsRes = await api(c.url, '/api/jobs', { token: OTHER, method: 'POST', body: JSON.stringify({ kind: 'score', model, items: featureItems(5), shardSize: 5 }), headers: { 'content-type': 'application/json' } });
  t.is(theirsRes.status, 201);
  const theirs = (await body(theirsRes)).id ?? '';

  const probe = async (): Promise<void> => {
    const listed = async (token: string): Promise<string[]> => (await body(await api(c.url, '/api/jobs', { token }))).map((j) => j.id).sort();
    t.deepEqual(await listed(CLIENT_TOKEN), [mine]);
    t.deepEqual(await listed(OTHER), [theirs]);
    t.deepEqual(await listed(ADMIN), [mine, theirs].sort());
    for (const route of ['', '/meta', '/results', '/metrics', '/model']) {
      const res = await api(c.url, `/api/jobs/${mine}${route}`, { token: OTHER });
      t.is(res.status, 404, route);
      t.is((await body(res)).error, `no job ${mine}`, `${route}: the same answer as for a job that does not exist`);
    }
    t.is((await api(c.url, `/api/jobs/${mine}`, { token: OTHER, method: 'DELETE' })).status, 404);
    t.is((await body(await api(c.url, `/api/jobs/${mine}`))).state, 'queued', 'the other tenant could not cancel it');
    t.is((await body(await api(c.url, `/api/jobs/${mine}/model`))).error, `job ${mine} is not a training job`, 'its owner learns what it is');
    t.is((await api(c.url, `/api/jobs/${theirs}`, { token: ADMIN })).status, 200);
  };
  await probe();

  // The owner is stored with the job: after a restart on the same file, the same answers.
  await c.stop();
  c = await startCoordinatorProcess(args, {}, t);
  await probe();

  const cancelled = await api(c.url, `/api/jobs/${theirs}`, { token: ADMIN, method: 'DELETE' });
  t.is(cancelled.status, 200);
  t.is((await body(cancelled)).state, 'cancelled', 'an admin cancels any job');
  t.is((await body(await api(c.url, `/api/jobs/${theirs}`, { token: OTHER }))).state, 'cancelled');
  await c.stop();
  rmSync(`${state}.blobs`, { recursive: true, force: true });
});

test('with no client token configured the API is one tenant: every caller sees every job', async (t) => {
  const c = await startCoordinatorProcess(['--state', ':memory:', '--worker-token', WORKER_TOKEN], {}, t);
  t.teardown(() => c.stop());
  const model = await uploadBlob(c.url, new TextEncoder().encode('m'), null);
  const res = await api(c.url, '/api/jobs', { token: null, method: 'POST', body: JSON.stringify({ kind: 'score', model, items: featureItems(3), shardSize: 3 }), headers: { 'content-type': 'application/json' } });
  const id = (await body(res)).id ?? '';
  t.is((await api(c.url, `/api/jobs/${id}`, { token: null })).status, 200);
  t.is((await api(c.url, `/api/jobs/${id}`, { token: 'anything' })).status, 200);
});
