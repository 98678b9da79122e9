// POST /api/jobs with kind 'train' (issue 4): the body `fedpool train` sends, validated with zod. The config is the
// resolved train.json (parsed again here with paths kept as they are); the central data travels as base64 columns.
import * as z from 'zod';
import { ConfigError, parseTrainConfig, type TrainConfig } from '../../shared/config/train.js';
import { describeIssue } from '../jobs.js';

/** Rows [n, dim] as little-endian float32 and labels [n] as little-endian int32, both base64. */
const centralColumnsSchema = z.strictObject({
  dim: z.number().int().min(1).max(1 << 20),
  n: z.number().int().min(1).max(10_000_000),
  rows: z.string(),
  labels: z.string(),
});

export const trainJobRequestSchema = z.strictObject({
  kind: z.literal('train'),
  model: z.string().regex(/^[0-9a-f]{64}$/, 'expected the sha-256 (64 lowercase hex chars) of an uploaded model blob'),
  config: z.json(),
  data: centralColumnsSchema,
  eval: centralColumnsSchema.optional(),
});

/** Central rows and class labels, decoded. */
export interface CentralRows {
  dim: number;
  n: number;
  rows: Float32Array;
  labels: Int32Array;
}

export interface TrainJobRequest {
  model: string;
  config: TrainConfig;
  data: CentralRows;
  eval?: CentralRows;
}

export type ParsedTrainJob = { ok: true; request: TrainJobRequest } | { ok: false; error: string };

function decodeBase64(field: string, base64: string, bytes: number): Uint8Array | string {
  const buf = Buffer.from(base64, 'base64');
  if (buf.toString('base64') !== base64) return `${field}: not valid (canonical, padded) base64`;
  if (buf.byteLength !== bytes) return `${field}: holds ${buf.byteLength} bytes, expected ${bytes}`;
  return buf;
}

function decodeColumns(where: string, c: z.output<typeof centralColumnsSchema>): CentralRows | string {
  const rowBytes = decodeBase64(`${where}.rows`, c.rows, c.n * c.dim * 4);
  if (typeof rowBytes === 'string') return rowBytes;
  const labelBytes = decodeBase64(`${where}.labels`, c.labels, c.n * 4);
  if (typeof labelBytes === 'string') return labelBytes;
  // Aligned copies of our own (a decoded Buffer may sit at any offset of a shared pool).
  const rows = new Float32Array(c.n * c.dim);
  new Uint8Array(rows.buffer).set(rowBytes);
  const labels = new Int32Array(c.n);
  new Uint8Array(labels.buffer).set(labelBytes);
  for (let j = 0; j < rows.length; j++) {
    if (!Number.isFinite(rows[j])) return `${where}.rows: row ${Math.floor(j / c.dim)} value ${j % c.dim} is ${rows[j]}`;
  }
  for (let i = 0; i < labels.length; i++) if (labels[i]! < 0) return `${where}.labels: label ${i} is ${labels[i]}, not a class id`;
  return { dim: c.dim, n: c.n, rows, labels };
}

/** Validates a train job body (already JSON-parsed). Only central data and the classify task run so far. */
export function parseTrainJobRequest(body: unknown): ParsedTrainJob {
  const r = trainJobRequestSchema.safeParse(body);
  if (!r.success) return { ok: false, error: describeIssue(r.error) };
  let config: TrainConfig;
  try {
    config = parseTrainConfig(r.data.config, '', (_base, p) => p);
  } catch (e) {
    if (e instanceof ConfigError) return { ok: false, error: `config: ${e.message}` };
    throw e;
  }
  if (config.task !== 'classify') return { ok: false, error: `config.task: '${config.task}' is not supported by this coordinator yet (only 'classify')` };
  if (config.data.source !== 'central') return { ok: false, error: "config.data.source: 'worker' data is not supported by this coordinator yet (only 'central')" };
  if (config.adversary !== undefined) return { ok: false, error: 'config.adversary: not supported by this coordinator yet' };
  const data = decodeColumns('data', r.data.data);
  if (typeof data === 'string') return { ok: false, error: data };
  let evalRows: CentralRows | undefined;
  if (r.data.eval !== undefined) {
    const e = decodeColumns('eval', r.data.eval);
    if (typeof e === 'string') return { ok: false, error: e };
    if (e.dim !== data.dim) return { ok: false, error: `eval.dim: ${e.dim}, the training data has ${data.dim}` };
    evalRows = e;
  }
  if (data.n < config.data.partition.clients) {
    return { ok: false, error: `data.n: ${data.n} rows cannot fill ${config.data.partition.clients} clients` };
  }
  return { ok: true, request: { model: r.data.model, config, data, ...(evalRows === undefined ? {} : { eval: evalRows }) } };
}
