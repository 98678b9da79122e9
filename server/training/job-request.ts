// POST /api/jobs with kind 'train' (issue 4): the body `fedpool train` sends, validated with zod. The config is the
// resolved train.json (parsed again here with paths kept as they are); the central data travels as base64 columns.
import * as z from 'zod';
import { ConfigError, parseTrainConfig, type TrainConfig } from '../../shared/config/train.js';
import { describeIssue } from '../jobs.js';

/** Rows [n, dim] as little-endian float32 and labels [n] as little-endian int32, both base64 (task classify). */
const classifyColumnsSchema = z.strictObject({
  dim: z.number().int().min(1).max(1 << 20),
  n: z.number().int().min(1).max(10_000_000),
  rows: z.string(),
  labels: z.string(),
});

/** Featurized preference pairs: `chosen` and `rejected` rows [n, dim], little-endian float32, base64 (task reward-pairs). */
const pairColumnsSchema = z.strictObject({
  dim: z.number().int().min(1).max(1 << 20),
  n: z.number().int().min(1).max(10_000_000),
  chosen: z.string(),
  rejected: z.string(),
});

const columnsSchema = z.union([classifyColumnsSchema, pairColumnsSchema]);

export const trainJobRequestSchema = z.strictObject({
  kind: z.literal('train'),
  model: z.string().regex(/^[0-9a-f]{64}$/, 'expected the sha-256 (64 lowercase hex chars) of an uploaded model blob'),
  config: z.json(),
  /** The central data (data.source 'central'); absent when workers train on their own datasets. */
  data: columnsSchema.optional(),
  eval: columnsSchema.optional(),
});

/** Central rows with class labels, or featurized preference pairs, decoded. */
export type CentralData =
  | { kind: 'classify'; dim: number; n: number; rows: Float32Array; labels: Int32Array }
  | { kind: 'pairs'; dim: number; n: number; chosen: Float32Array; rejected: Float32Array };

export interface TrainJobRequest {
  model: string;
  config: TrainConfig;
  /** Present exactly when config.data.source is 'central'. */
  data?: CentralData;
  eval?: CentralData;
}

export type ParsedTrainJob = { ok: true; request: TrainJobRequest } | { ok: false; error: string };

function decodeBase64(field: string, base64: string, bytes: number): Uint8Array | string {
  const buf = Buffer.from(base64, 'base64');
  if (buf.toString('base64') !== base64) return `${field}: not valid (canonical, padded) base64`;
  if (buf.byteLength !== bytes) return `${field}: holds ${buf.byteLength} bytes, expected ${bytes}`;
  return buf;
}

/** An aligned float32 copy of our own (a decoded Buffer may sit at any offset of a shared pool), checked finite. */
function decodeFloats(field: string, base64: string, n: number, dim: number): Float32Array | string {
  const bytes = decodeBase64(field, base64, n * dim * 4);
  if (typeof bytes === 'string') return bytes;
  const out = new Float32Array(n * dim);
  new Uint8Array(out.buffer).set(bytes);
  for (let j = 0; j < out.length; j++) {
    if (!Number.isFinite(out[j])) return `${field}: row ${Math.floor(j / dim)} value ${j % dim} is ${out[j]}`;
  }
  return out;
}

function decodeColumns(where: string, c: z.output<typeof columnsSchema>): CentralData | string {
  if ('chosen' in c) {
    const chosen = decodeFloats(`${where}.chosen`, c.chosen, c.n, c.dim);
    if (typeof chosen === 'string') return chosen;
    const rejected = decodeFloats(`${where}.rejected`, c.rejected, c.n, c.dim);
    if (typeof rejected === 'string') return rejected;
    return { kind: 'pairs', dim: c.dim, n: c.n, chosen, rejected };
  }
  const rows = decodeFloats(`${where}.rows`, c.rows, c.n, c.dim);
  if (typeof rows === 'string') return rows;
  const labelBytes = decodeBase64(`${where}.labels`, c.labels, c.n * 4);
  if (typeof labelBytes === 'string') return labelBytes;
  const labels = new Int32Array(c.n);
  new Uint8Array(labels.buffer).set(labelBytes);
  for (let i = 0; i < labels.length; i++) if (labels[i]! < 0) return `${where}.labels: label ${i} is ${labels[i]}, not a class id`;
  return { kind: 'classify', dim: c.dim, n: c.n, rows, labels };
}

/** Validates a train job body (already JSON-parsed): the config, and data and eval columns that match its task and source. */
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
  const kind = config.task === 'classify' ? 'classify' : 'pairs';
  const columns = kind === 'classify' ? '{dim, n, rows, labels}' : '{dim, n, chosen, rejected}';
  let data: CentralData | undefined;
  if (config.data.source === 'central') {
    if (r.data.data === undefined) return { ok: false, error: `data: required for data.source 'central' (${columns})` };
    const d = decodeColumns('data', r.data.data);
    if (typeof d === 'string') return { ok: false, error: d };
    if (d.kind !== kind) return { ok: false, error: `data: task '${config.task}' needs ${columns} columns` };
    if (d.n < config.data.partition.clients) return { ok: false, error: `data.n: ${d.n} rows cannot fill ${config.data.partition.clients} clients` };
    data = d;
  } else if (r.data.data !== undefined) {
    return { ok: false, error: "data: not allowed for data.source 'worker' (the data stays on the workers)" };
  }
  let evalData: CentralData | undefined;
  if (r.data.eval !== undefined) {
    const e = decodeColumns('eval', r.data.eval);
    if (typeof e === 'string') return { ok: false, error: e };
    if (e.kind !== kind) return { ok: false, error: `eval: task '${config.task}' needs ${columns} columns` };
    if (data !== undefined && e.dim !== data.dim) return { ok: false, error: `eval.dim: ${e.dim}, the training data has ${data.dim}` };
    evalData = e;
  }
  return { ok: true, request: { model: r.data.model, config, ...(data === undefined ? {} : { data }), ...(evalData === undefined ? {} : { eval: evalData }) } };
}
