// The compact column form of a job request: same shards as the row form, and every inconsistency refused.
import test from 'ava';
import { parseJobRequest, splitShards } from '../../server/jobs.js';

const model = 'a'.repeat(64);
const b64 = (values: number[]) => Buffer.from(Float32Array.from(values).buffer).toString('base64');

test('features as base64 float32 give exactly the shards of the row form', (t) => {
  const rows = Array.from({ length: 7 }, (_, i) => [i, -i / 3, 1e-3 * i]);
  const asItems = parseJobRequest({ model, shardSize: 3, items: rows.map((f, i) => ({ id: `${i}`, features: f })) });
  const asColumns = parseJobRequest({ model, shardSize: 3, columns: { ids: rows.map((_, i) => `${i}`), features: { dim: 3, base64: b64(rows.flat()) } } });
  if (!asItems.ok || !asColumns.ok) return t.fail(JSON.stringify([asItems, asColumns]));
  t.is(asColumns.form, 'features');
  t.is(asColumns.dim, 3);
  t.deepEqual(splitShards(asColumns.columns, 3, 3), splitShards(asItems.columns, 3, 3));
});

test('text columns give the shards of text items', (t) => {
  const a = parseJobRequest({ model, shardSize: 2, items: [{ id: 'x', prompt: 'p', response: 'r1' }, { id: 'y', prompt: 'p', response: 'r2' }, { id: 'z', prompt: 'q', response: '' }] });
  const b = parseJobRequest({ model, shardSize: 2, columns: { ids: ['x', 'y', 'z'], prompts: ['p', 'p', 'q'], responses: ['r1', 'r2', ''] } });
  if (!a.ok || !b.ok) return t.fail();
  t.deepEqual(splitShards(b.columns, 2, 0), splitShards(a.columns, 2, 0));
});

test('inconsistent columns are one clear line each', (t) => {
  const err = (body: unknown) => {
    const r = parseJobRequest({ model, ...(body as object) });
    return r.ok ? 'accepted' : r.error;
  };
  t.regex(err({}), /exactly one of "items" and "columns"/);
  t.regex(err({ items: [{ id: 'a', features: [1] }], columns: { ids: ['a'], features: { dim: 1, base64: b64([1]) } } }), /exactly one/);
  t.regex(err({ columns: { ids: ['a', 'b'], features: { dim: 2, base64: b64([1, 2]) } } }), /holds 8 bytes, 2 items × 2 float32 need 16/);
  t.regex(err({ columns: { ids: ['a'], features: { dim: 1, base64: 'not base64!' } } }), /base64: not valid/);
  t.regex(err({ columns: { ids: ['a'], features: { dim: 1, base64: b64([Number.NaN]) } } }), /item 0 value 0 is NaN/);
  t.regex(err({ columns: { ids: ['a', 'b'], prompts: ['p', 'p'], responses: ['r'] } }), /columns\.responses: has 1 entries for 2 ids/);
  t.regex(err({ columns: { ids: ['a'], prompts: ['p'] } }), /columns\.responses: missing/);
  t.regex(err({ columns: { ids: ['a'], prompts: ['p'], responses: ['r'], features: { dim: 1, base64: b64([1]) } } }), /send "features", or "text", or "prompts" and "responses"/);
  t.regex(err({ columns: { ids: ['a'], features: { dim: 1 } } }), /columns\.features: send "blob" .* or "base64", exactly one/);
  t.regex(err({ columns: { ids: ['a'], features: { dim: 1, base64: b64([1]), blob: 'a'.repeat(64) } } }), /exactly one/);
  t.regex(err({ columns: { ids: ['a'], features: { dim: 1, blob: 'not a hash' } } }), /columns\.features\.blob: expected the sha-256/);
});
