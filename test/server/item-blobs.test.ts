// Binary job upload (issue 14; docs/architecture.md, "Binary job upload"): a score job whose features are an uploaded
// blob of float32, or whose prompts and responses are an uploaded text blob, is scored exactly as the same items
// inline; its shard rows hold no feature values or texts (the coordinator slices each shard from the blob file); a
// blob that is missing, of the wrong size or layout, or holds a non-finite value or invalid UTF-8 is refused at
// submission in one line; the job keeps its blob from retention until the job is deleted.
import test from 'ava';
import Database from 'better-sqlite3';
import { join } from 'node:path';
import pino from 'pino';
import { startCoordinator } from '../../server/coordinator.js';
import { encodeTextBlob } from '../../shared/data/text-blob.js';
import { CLIENT_TOKEN, FakeWorker, WORKER_TOKEN, api, checkResults, expectedScore, featureItems, results, tempDir, until, uploadBlob, waitForJob } from './helpers.js';

const quiet = pino({ level: 'silent' });

function matrix(items: { features: number[] }[]): Uint8Array {
  const f = Float32Array.from(items.flatMap((i) => i.features));
  return new Uint8Array(f.buffer);
}

async function post(url: string, body: unknown): Promise<{ status: number; text: string }> {
  const res = await api(url, '/api/jobs', { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' } });
  return { status: res.status, text: await res.text() };
}

test('features in an uploaded blob score exactly, with no feature values in the shard rows; bad blobs are refused in one line', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = join(dir, 'state.db');
  // No grace for unused blobs: a blob the deleted job alone named goes at once.
  const c = await startCoordinator({ port: 0, state, logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN], blobGraceMs: 0 });
  t.teardown(() => c.close());
  const worker = await FakeWorker.connect(c.url, { name: 'w' });
  t.teardown(() => worker.close());
  worker.pull(8);
  const model = await uploadBlob(c.url, new TextEncoder().encode('a model'));
  const items = featureItems(1_000, 5);
  const blob = await uploadBlob(c.url, matrix(items));
  const ids = items.map((i) => i.id);

  const created = await post(c.url, { kind: 'score', model, shardSize: 64, columns: { ids, features: { dim: 5, blob } } });
  t.is(created.status, 201, created.text);
  const id = (JSON.parse(created.text) as { id: string }).id;
  t.is((await waitForJob(c.url, id)).state, 'done');
  await checkResults(t, c.url, id, items);
  const db = new Database(state, { readonly: true });
  const rows = db.prepare('SELECT COUNT(*) AS n, COUNT(features) AS withFeatures FROM shards WHERE job_id = ?').get(id) as { n: number; withFeatures: number };
  db.close();
  t.deepEqual(rows, { n: 16, withFeatures: 0 }, 'shard rows hold ids only');

  const refused = async (columns: unknown): Promise<string> => {
    const r = await post(c.url, { kind: 'score', model, columns });
    t.is(r.status, 400, r.text);
    return (JSON.parse(r.text) as { error: string }).error;
  };
  t.regex(await refused({ ids, features: { dim: 5, blob: 'b'.repeat(64) } }), /unknown blob b{64}; upload it first/);
  t.regex(await refused({ ids: ids.slice(1), features: { dim: 5, blob } }), /holds 20000 bytes, 999 items × 5 float32 need 19980/);
  t.regex(await refused({ ids, features: { dim: 5, blob, base64: '' } }), /send "blob" .* or "base64", exactly one/);
  const bad = items.map((i) => ({ ...i, features: [...i.features] }));
  (bad[700] as { features: number[] }).features[3] = Number.POSITIVE_INFINITY;
  const badBlob = await uploadBlob(c.url, matrix(bad));
  t.is(await refused({ ids, features: { dim: 5, blob: badBlob } }), 'columns.features: item 700 value 3 is Infinity');

  // The job's blob stays while the job exists; deleting the job removes it (no other job names it).
  const head = async (): Promise<number> => (await api(c.url, `/api/blobs/${blob}`, { method: 'HEAD' })).status;
  t.is(await head(), 200);
  t.is((await api(c.url, `/api/jobs/${id}`, { method: 'DELETE' })).status, 200);
  await until(async () => (await head()) === 404, 'the deleted job\'s features blob to be removed');
});

test('prompts and responses in an uploaded text blob score exactly, with no texts in the shard rows; bad text blobs are refused in one line', async (t) => {
  const { dir, cleanup } = tempDir();
  t.teardown(cleanup);
  const state = join(dir, 'state.db');
  const c = await startCoordinator({ port: 0, state, logger: quiet, workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN] });
  t.teardown(() => c.close());
  const worker = await FakeWorker.connect(c.url, { name: 'w' });
  t.teardown(() => worker.close());
  worker.pull(8);
  const model = await uploadBlob(c.url, new TextEncoder().encode('a model'));
  const items = Array.from({ length: 300 }, (_, i) => ({ id: `t${i}`, prompt: `Question ${i}: ${'é'.repeat(i % 5)}?`, response: i % 7 === 0 ? '' : `answer ${'🙂'.repeat(i % 3)} ${i}` }));
  const ids = items.map((i) => i.id);
  const blob = await uploadBlob(c.url, encodeTextBlob(items.map((i) => i.prompt), items.map((i) => i.response)));
  const created = await post(c.url, { kind: 'score', model, shardSize: 32, columns: { ids, text: { blob } } });
  t.is(created.status, 201, created.text);
  const id = (JSON.parse(created.text) as { id: string }).id;
  t.is((await waitForJob(c.url, id)).state, 'done');
  const got = await results(c.url, id);
  t.deepEqual(got, items.map((i) => ({ id: i.id, score: expectedScore(i) })));
  const db = new Database(state, { readonly: true });
  const rows = db.prepare('SELECT COUNT(*) AS n, COUNT(texts) AS withTexts FROM shards WHERE job_id = ?').get(id) as { n: number; withTexts: number };
  db.close();
  t.deepEqual(rows, { n: 10, withTexts: 0 }, 'shard rows hold ids only');

  const refused = async (bytes: Uint8Array, n = 2): Promise<string> => {
    const hash = await uploadBlob(c.url, bytes);
    const r = await post(c.url, { kind: 'score', model, columns: { ids: ids.slice(0, n), text: { blob: hash } } });
    t.is(r.status, 400, r.text);
    return (JSON.parse(r.text) as { error: string }).error;
  };
  const good = encodeTextBlob(['ab', 'c'], ['d', 'ef']);
  t.regex(await refused(new TextEncoder().encode('{"prompts":[]}')), /^columns\.text\.blob: not a text blob/);
  t.is(await refused(good, 3), 'columns.text.blob: holds 2 items, the job has 3 ids');
  t.regex(await refused(good.slice(0, good.length - 1)), /its offsets end at 30 bytes, the blob has 29/);
  const backwards = good.slice();
  new DataView(backwards.buffer).setUint32(8 + 4, 1, true); // response 0 would end before prompt 0
  t.is(await refused(backwards), 'columns.text.blob: the offset of string 1 goes backwards');
  const split = encodeTextBlob(['é', 'x'], ['y', 'z']); // é is 2 bytes: move prompt 0's end into it
  new DataView(split.buffer).setUint32(8, 1, true);
  t.is(await refused(split), 'columns.text.blob: string 1 is not valid UTF-8');
  const invalid = encodeTextBlob(['ab', 'c'], ['d', 'ef']);
  invalid[invalid.length - 1] = 0xff;
  t.is(await refused(invalid), 'columns.text.blob: strings 0–3 are not valid UTF-8');
  const both = await post(c.url, { kind: 'score', model, columns: { ids: ['a'], text: { blob }, prompts: ['p'], responses: ['r'] } });
  t.is((JSON.parse(both.text) as { error: string }).error, 'columns.text: send "text" (an uploaded text blob) or "prompts" and "responses", not both');
});
