// parseTrainJobRequest: the body of POST /api/jobs for kind 'train': base64 columns decoded per task, data required
// or refused by data.source, eval columns checked against the task and the training data, one-line errors.
import test from 'ava';
import { parseTrainJobRequest, type TrainJobRequest } from '../../../server/training/job-request.js';

const MODEL = 'ab'.repeat(32);

const b64 = (a: Float32Array | Int32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');
const f32 = (...v: number[]): string => b64(Float32Array.from(v));
const i32 = (...v: number[]): string => b64(Int32Array.from(v));

const classifyConfig = { model: 'm', task: 'classify', data: { source: 'central', path: 'd', partition: { clients: 2 } }, rounds: 1, clientsPerRound: 1 };
const pairsConfig = { ...classifyConfig, task: 'reward-pairs' };
const workerConfig = { model: 'm', task: 'classify', data: { source: 'worker', name: 'mine' }, rounds: 1, clientsPerRound: 1 };

/** n = 3 rows of dim 2, labels 0, 1, 2. */
const classifyColumns = { dim: 2, n: 3, rows: f32(1, 2, 3, 4, 5, 6), labels: i32(0, 1, 2) };
/** n = 2 pairs of dim 2. */
const pairColumns = { dim: 2, n: 2, chosen: f32(1, 2, 3, 4), rejected: f32(-1, -2, -3, -4) };

function ok(body: unknown): TrainJobRequest {
  const r = parseTrainJobRequest(body);
  if (!r.ok) throw new Error(`expected ok, got: ${r.error}`);
  return r.request;
}

function error(body: unknown): string {
  const r = parseTrainJobRequest(body);
  if (r.ok) throw new Error('expected an error');
  return r.error;
}

test('classify columns decode to rows and labels', (t) => {
  const req = ok({ kind: 'train', model: MODEL, config: classifyConfig, data: classifyColumns });
  t.is(req.model, MODEL);
  t.is(req.config.task, 'classify');
  const d = req.data;
  if (d?.kind !== 'classify') return t.fail(`data kind ${String(d?.kind)}`);
  t.is(d.dim, 2);
  t.is(d.n, 3);
  t.true(d.rows instanceof Float32Array);
  t.deepEqual(Array.from(d.rows), [1, 2, 3, 4, 5, 6]);
  t.true(d.labels instanceof Int32Array);
  t.deepEqual(Array.from(d.labels), [0, 1, 2]);
  t.false('eval' in req);
});

test('pair columns decode to chosen and rejected for reward-pairs', (t) => {
  const req = ok({ kind: 'train', model: MODEL, config: pairsConfig, data: pairColumns, eval: { ...pairColumns, n: 1, chosen: f32(7, 8), rejected: f32(9, 10) } });
  const d = req.data;
  if (d?.kind !== 'pairs') return t.fail(`data kind ${String(d?.kind)}`);
  t.is(d.dim, 2);
  t.is(d.n, 2);
  t.deepEqual(Array.from(d.chosen), [1, 2, 3, 4]);
  t.deepEqual(Array.from(d.rejected), [-1, -2, -3, -4]);
  const e = req.eval;
  if (e?.kind !== 'pairs') return t.fail(`eval kind ${String(e?.kind)}`);
  t.deepEqual(Array.from(e.chosen), [7, 8]);
  t.deepEqual(Array.from(e.rejected), [9, 10]);
});

test('decoded floats are aligned copies even from unaligned base64 (odd-length prefix in the pool)', (t) => {
  // Several requests in a row, so Buffer's pool hands out arbitrary offsets; every result must still be exact.
  for (let k = 1; k < 6; k++) {
    const vals = Array.from({ length: 2 * k }, (_, i) => i + 0.5);
    const req = ok({ kind: 'train', model: MODEL, config: classifyConfig, data: { dim: 2, n: k + 1, rows: f32(...vals, 0, 0), labels: i32(...Array.from({ length: k + 1 }, () => 1)) } });
    if (req.data?.kind !== 'classify') return t.fail();
    t.deepEqual(Array.from(req.data.rows), [...vals, 0, 0]);
  }
});

test('columns that do not match the task are refused, naming the columns the task needs', (t) => {
  t.regex(error({ kind: 'train', model: MODEL, config: classifyConfig, data: pairColumns }), /^data: task 'classify' needs \{dim, n, rows, labels\} columns$/);
  t.regex(error({ kind: 'train', model: MODEL, config: pairsConfig, data: classifyColumns }), /^data: task 'reward-pairs' needs \{dim, n, chosen, rejected\} columns$/);
});

test("data.source 'worker': no data is accepted, data is refused", (t) => {
  const req = ok({ kind: 'train', model: MODEL, config: workerConfig });
  t.false('data' in req);
  t.is(req.config.data.source, 'worker');
  t.regex(error({ kind: 'train', model: MODEL, config: workerConfig, data: classifyColumns }), /^data: not allowed for data\.source 'worker'/);
  // An eval set is still allowed (the server evaluates centrally).
  const withEval = ok({ kind: 'train', model: MODEL, config: workerConfig, eval: classifyColumns });
  t.is(withEval.eval?.kind, 'classify');
});

test("data.source 'central' without data is refused, naming the columns", (t) => {
  t.regex(error({ kind: 'train', model: MODEL, config: classifyConfig }), /^data: required for data\.source 'central' \(\{dim, n, rows, labels\}\)$/);
  t.regex(error({ kind: 'train', model: MODEL, config: pairsConfig }), /^data: required for data\.source 'central' \(\{dim, n, chosen, rejected\}\)$/);
});

test('eval columns of the wrong kind are refused', (t) => {
  t.regex(error({ kind: 'train', model: MODEL, config: classifyConfig, data: classifyColumns, eval: pairColumns }), /^eval: task 'classify' needs \{dim, n, rows, labels\} columns$/);
  t.regex(error({ kind: 'train', model: MODEL, config: pairsConfig, data: pairColumns, eval: classifyColumns }), /^eval: task 'reward-pairs' needs/);
  t.regex(error({ kind: 'train', model: MODEL, config: workerConfig, eval: pairColumns }), /^eval: task 'classify' needs/);
});

test('eval with another dim than the training data is refused', (t) => {
  const evalCols = { dim: 3, n: 1, rows: f32(1, 2, 3), labels: i32(0) };
  t.is(error({ kind: 'train', model: MODEL, config: classifyConfig, data: classifyColumns, eval: evalCols }), 'eval.dim: 3, the training data has 2');
  const pairEval = { dim: 1, n: 1, chosen: f32(1), rejected: f32(2) };
  t.is(error({ kind: 'train', model: MODEL, config: pairsConfig, data: pairColumns, eval: pairEval }), 'eval.dim: 1, the training data has 2');
});

test('non-finite values are refused, naming the field, row and value', (t) => {
  t.is(error({ kind: 'train', model: MODEL, config: classifyConfig, data: { ...classifyColumns, rows: f32(1, 2, NaN, 4, 5, 6) } }), 'data.rows: row 1 value 0 is NaN');
  t.is(error({ kind: 'train', model: MODEL, config: pairsConfig, data: { ...pairColumns, rejected: f32(1, 2, 3, -Infinity) } }), 'data.rejected: row 1 value 1 is -Infinity');
  t.is(error({ kind: 'train', model: MODEL, config: pairsConfig, data: { ...pairColumns, chosen: f32(Infinity, 2, 3, 4) } }), 'data.chosen: row 0 value 0 is Infinity');
  t.is(error({ kind: 'train', model: MODEL, config: classifyConfig, data: classifyColumns, eval: { ...classifyColumns, rows: f32(1, 2, 3, 4, 5, NaN) } }), 'eval.rows: row 2 value 1 is NaN');
});

test('bad base64 and wrong byte counts are refused', (t) => {
  t.regex(error({ kind: 'train', model: MODEL, config: classifyConfig, data: { ...classifyColumns, rows: 'not base64!!' } }), /^data\.rows: not valid \(canonical, padded\) base64$/);
  // 8 bytes → 12 base64 chars ending in '='; the same without padding decodes to the same bytes but is refused.
  const small = { dim: 1, n: 2, rows: f32(1, 2), labels: i32(0, 1) };
  t.truthy(ok({ kind: 'train', model: MODEL, config: classifyConfig, data: small }).data);
  const unpadded = small.rows.replace(/=+$/, '');
  t.not(unpadded, small.rows, 'the fixture has padding to drop');
  t.regex(error({ kind: 'train', model: MODEL, config: classifyConfig, data: { ...small, rows: unpadded } }), /^data\.rows: not valid/);
  t.regex(error({ kind: 'train', model: MODEL, config: classifyConfig, data: { ...classifyColumns, labels: 'AAAA*AAA' } }), /^data\.labels: not valid/);
  t.is(error({ kind: 'train', model: MODEL, config: classifyConfig, data: { ...classifyColumns, rows: f32(1, 2, 3, 4) } }), 'data.rows: holds 16 bytes, expected 24');
  t.is(error({ kind: 'train', model: MODEL, config: classifyConfig, data: { ...classifyColumns, labels: i32(0, 1) } }), 'data.labels: holds 8 bytes, expected 12');
  t.is(error({ kind: 'train', model: MODEL, config: pairsConfig, data: { ...pairColumns, rejected: f32(1, 2, 3, 4, 5, 6) } }), 'data.rejected: holds 24 bytes, expected 16');
});

test('negative labels, too few rows for the clients, bad configs and bad envelopes are refused', (t) => {
  t.is(error({ kind: 'train', model: MODEL, config: classifyConfig, data: { ...classifyColumns, labels: i32(0, -1, 2) } }), 'data.labels: label 1 is -1, not a class id');
  t.is(error({ kind: 'train', model: MODEL, config: classifyConfig, data: { dim: 2, n: 1, rows: f32(1, 2), labels: i32(0) } }), 'data.n: 1 rows cannot fill 2 clients');
  t.regex(error({ kind: 'train', model: MODEL, config: { ...classifyConfig, rounds: 0 }, data: classifyColumns }), /^config: train\.json: rounds: /);
  t.regex(error({ kind: 'train', model: MODEL, config: { ...pairsConfig, data: { source: 'central', path: 'd', partition: { clients: 2, kind: 'dirichlet' } } }, data: pairColumns }), /^config: train\.json: data\.partition\.kind: /);
  t.regex(error({ kind: 'train', model: 'XYZ', config: classifyConfig, data: classifyColumns }), /^model: /);
  t.regex(error({ kind: 'score', model: MODEL, config: classifyConfig, data: classifyColumns }), /^kind: /);
  t.regex(error({ kind: 'train', model: MODEL, config: classifyConfig, data: classifyColumns, extra: 1 }), /extra/);
  t.regex(error({ kind: 'train', model: MODEL, config: classifyConfig, data: { ...classifyColumns, dim: 0 } }), /^data/);
  for (const body of [null, 42, 'train', []]) t.false(parseTrainJobRequest(body).ok);
  for (const msg of [error({ kind: 'train', model: MODEL, config: classifyConfig }), error({ kind: 'train', model: 'x', config: classifyConfig })]) t.false(msg.includes('\n'), msg);
});
