// Storage integrity (issue 13): a blob file damaged on the coordinator's disk is not confirmed (HEAD 404), not served
// (workers get not-found), removed, and the jobs that need it fail with an error that says so — instead of a shard
// lost 10 times, a HEAD that says 200 and a re-upload that keeps the bad file. A real coordinator on a SQLite file.
import test from 'ava';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { sendMessage } from '../../shared/protocol/index.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, api, featureItems, startCoordinatorProcess, submitJob, tempDir, until, uploadBlob, waitForJob } from './helpers.js';

test('a damaged blob is refused on HEAD and to workers, removed, fails the jobs that need it, and a re-upload restores it', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = path.join(dir, 'state.db');
  const c = await startCoordinatorProcess(['--state', state, '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN], {}, t);
  t.teardown(() => c.stop());
  const bytes = Uint8Array.from({ length: 300_000 }, (_, i) => (i * 7) % 256);
  const hash = await uploadBlob(c.url, bytes);
  const head = async (): Promise<number> => (await api(c.url, `/api/blobs/${hash}`, { method: 'HEAD' })).status;
  t.is(await head(), 200);
  const id = await submitJob(c.url, { model: hash, items: featureItems(10), shardSize: 5 });

  const damaged = Uint8Array.from(bytes);
  damaged[1234] ^= 0x55;
  writeFileSync(path.join(`${state}.blobs`, hash), damaged);
  const w = await FakeWorker.connect(c.url, { name: 'asks-for-the-model' });
  t.teardown(() => w.close());
  sendMessage(w.socket, { type: 'blob-request', hash });
  await until(() => w.errors.length > 0, 'not-found');
  t.like(w.errors[0], { code: 'not-found', ref: hash });
  t.is(w.blobs.length, 0, 'not one damaged byte was sent');
  const ended = await waitForJob(c.url, id);
  t.is(ended.state, 'failed');
  t.regex(ended.error ?? '', new RegExp(`^blob ${hash} was damaged on the coordinator .* upload it again`));
  t.is(await head(), 404, 'a damaged blob is not confirmed: the next submission uploads it again');

  t.is(await uploadBlob(c.url, bytes), hash, 'a re-upload is accepted');
  t.is(await head(), 200);
  const again = await submitJob(c.url, { model: hash, items: featureItems(10), shardSize: 5 });
  t.not(again, id);
  sendMessage(w.socket, { type: 'blob-request', hash });
  await until(() => w.blobs.some((b) => b.final), 'the blob, whole');
  t.deepEqual(Buffer.concat(w.blobs.map((b) => b.data)), Buffer.from(bytes), 'the right bytes are served');

  // Damage found by HEAD (before any worker asked) removes the file too.
  writeFileSync(path.join(`${state}.blobs`, hash), damaged);
  t.is(await head(), 404);
  t.is(await uploadBlob(c.url, bytes), hash);
  t.is(await head(), 200);
});
