import * as z from 'zod';
import { MAX_ID_LENGTH } from '../shared/protocol/index.js';
import type { JobSpec, ShardItems } from './store.js';
import { FloatColumn, StringColumn, type Floats, type Strings } from './columns.js';

/** Largest finite float32; larger JSON numbers would become Infinity on the wire. */
const FLOAT32_MAX = 3.4028234663852886e38;
export const MAX_JOB_ITEMS = 10_000_000;
export const MAX_SHARD_SIZE = 65_536;
export const MAX_REDUNDANCY = 16;
export const MAX_BATCH_SIZE = 65_536;

/**
 * Items are `{id, features}` or `{id, prompt, response}`. Other keys (`group`, `answer`, …) are
 * allowed and ignored, so a submitter may pass its input lines through unchanged.
 */
const itemSchema = z
  .object({
    id: z.string().min(1).max(MAX_ID_LENGTH),
    features: z.array(z.number()).min(1).optional(),
    prompt: z.string().optional(),
    response: z.string().optional(),
  })
  .superRefine((item, ctx) => {
    const hasFeatures = item.features !== undefined;
    const hasText = item.prompt !== undefined || item.response !== undefined;
    if (hasFeatures && hasText) ctx.addIssue({ code: 'custom', message: 'has both features and prompt/response; send one form' });
    else if (!hasFeatures && !hasText) ctx.addIssue({ code: 'custom', message: 'needs "features", or "prompt" and "response"' });
    else if (hasText && item.prompt === undefined) ctx.addIssue({ code: 'custom', path: ['prompt'], message: 'missing (text items need prompt and response)' });
    else if (hasText && item.response === undefined) ctx.addIssue({ code: 'custom', path: ['response'], message: 'missing (text items need prompt and response)' });
    const f = item.features;
    if (f !== undefined) {
      for (let i = 0; i < f.length; i++) {
        if (Math.abs(f[i] as number) > FLOAT32_MAX) {
          ctx.addIssue({ code: 'custom', path: ['features', i], message: 'is outside the float32 range' });
          break;
        }
      }
    }
  });

/**
 * The compact form of a job's items, for large jobs: parallel columns, with features as little-endian float32
 * (ids.length × dim values, row-major), either in an uploaded blob named by its sha-256 (what `fedpool score` sends:
 * 4 bytes a value, never parsed, sliced into shards from the blob file) or inline as one base64 string. JSON of
 * decimal numbers costs ~19 bytes per value to send and far more CPU to parse and validate.
 */
const columnsSchema = z.strictObject({
  ids: z.array(z.string().min(1).max(MAX_ID_LENGTH)).min(1).max(MAX_JOB_ITEMS),
  features: z
    .strictObject({
      dim: z.number().int().min(1).max(1 << 20),
      base64: z.string().optional(),
      blob: z.string().regex(/^[0-9a-f]{64}$/, 'expected the sha-256 (64 lowercase hex chars) of an uploaded blob of float32').optional(),
    })
    .optional(),
  prompts: z.array(z.string()).optional(),
  responses: z.array(z.string()).optional(),
  /** Prompts and responses in an uploaded text blob (shared/data/text-blob.ts), what `fedpool score` sends. */
  text: z.strictObject({ blob: z.string().regex(/^[0-9a-f]{64}$/, 'expected the sha-256 (64 lowercase hex chars) of an uploaded text blob') }).optional(),
});

export const jobRequestSchema = z.strictObject({
  kind: z.literal('score').default('score'),
  /** Exactly one of `model` (an uploaded bundle) and `scorer` (workers' inference servers serving that model). */
  model: z.string().regex(/^[0-9a-f]{64}$/, 'expected the sha-256 (64 lowercase hex chars) of an uploaded model blob').optional(),
  scorer: z.strictObject({ model: z.string().min(1).max(MAX_ID_LENGTH), output: z.enum(['reward', 'logprobs']).default('reward') }).optional(),
  /** Row form: one object per item. Exactly one of `items` and `columns`. */
  items: z.array(itemSchema).min(1).max(MAX_JOB_ITEMS).optional(),
  columns: columnsSchema.optional(),
  shardSize: z.number().int().min(1).max(MAX_SHARD_SIZE).default(256),
  /** R replicas per shard, accepted by a quorum ⌈(R + 1)/2⌉; or 'adaptive': spot checks (docs/security.md). */
  redundancy: z.union([z.number().int().min(1).max(MAX_REDUNDANCY), z.literal('adaptive')]).default(1),
  /** Redundant results agree when |a − b| ≤ agreeTol · max(1, |a|, |b|). */
  agreeTol: z.number().min(0).max(1).optional(),
  batchSize: z.number().int().min(1).max(MAX_BATCH_SIZE).default(1024),
  /** The submitter's own JSON, stored with the job and returned by GET /api/jobs/:id/meta (fedpool score keeps
   * each line's id, pair and group there, so --resume can rebuild the output without the input file). */
  meta: z.json().optional(),
});

export type JobRequest = z.output<typeof jobRequestSchema>;

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out === '' ? String(key) : `.${String(key)}`;
  return out;
}

/** zod's first issue as one line naming the field, e.g. `items[3].features[2]: expected number, received string`. */
export function describeIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (issue === undefined) return 'invalid job';
  let path = issue.path;
  let message = issue.message.replace(/^Invalid input: /, '');
  if (issue.code === 'unrecognized_keys') {
    path = [...path, issue.keys[0] ?? '?'];
    message = 'unknown field';
  }
  if (issue.code === 'invalid_type' && /received undefined$/.test(message)) message = 'missing required field';
  const where = formatPath(path);
  return where === '' ? message : `${where}: ${message}`;
}

/** A job's items as columns, whichever form they were submitted in. */
export interface JobColumns {
  ids: Strings;
  /** 'features' jobs: ids.length × dim values, row-major. */
  features?: Floats;
  /** 'features' jobs whose values are in an uploaded blob instead (ids.length × dim float32, little-endian). */
  featuresBlob?: string;
  /** 'text' jobs whose prompts and responses are in an uploaded text blob instead (shared/data/text-blob.ts). */
  textBlob?: string;
  prompts?: Strings;
  responses?: Strings;
}

export type ParsedJob = { ok: true; request: JobRequest; form: JobSpec['form']; dim: number; columns: JobColumns } | { ok: false; error: string };

/** Validates a job request body (already JSON-parsed): field types, then consistency across items. */
export function parseJobRequest(body: unknown): ParsedJob {
  const result = jobRequestSchema.safeParse(body);
  if (!result.success) return { ok: false, error: describeIssue(result.error) };
  return checkJobRequest(result.data);
}

/** The checks across fields and items after the schema (server/job-request-slices.ts validates large bodies in slices, then calls this). */
export function checkJobRequest(request: JobRequest): ParsedJob {
  const steps = checkJobRequestSteps(request);
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/**
 * checkJobRequest in steps: it yields every ITEMS_PER_STEP items, so a caller with a time slice can let the event loop
 * run while a row-form job of millions of items becomes columns (server/job-request-slices.ts).
 */
export function* checkJobRequestSteps(request: JobRequest, collected?: RowColumns): Generator<void, ParsedJob> {
  if ((request.items === undefined) === (request.columns === undefined)) return { ok: false, error: 'items: send exactly one of "items" and "columns"' };
  if ((request.model === undefined) === (request.scorer === undefined)) return { ok: false, error: 'model: send exactly one of "model" (a bundle) and "scorer"' };
  // `collected`: the items, already columns (a large body's; request.items then holds only the first).
  const parsed = request.columns !== undefined ? parseColumns(request, request.columns) : collected !== undefined ? collected.result(request) : yield* parseItems(request);
  if (parsed.ok && request.scorer !== undefined && parsed.form !== 'text') return { ok: false, error: 'scorer: scorer jobs take text items (prompt and response), not features' };
  return parsed;
}

const ITEMS_PER_STEP = 65_536;

type Item = NonNullable<JobRequest['items']>[number];

/**
 * Row-form items becoming columns one at a time: over a parsed array (parseItems), and as a large body arrives
 * (server/job-request-slices.ts, CollectedItems), so millions of items never need to exist as objects. Items are
 * schema-valid; the first one that breaks the job's form (features or text, one dim) is the error, and nothing is
 * kept after it.
 */
export class RowColumns {
  private n = 0;
  private form: JobSpec['form'] | undefined;
  private dim = 0;
  // Columns, not arrays: millions of small strings would each be a heap object, and a growing array is copied (columns.ts).
  private readonly ids = new StringColumn();
  private readonly features = new FloatColumn();
  private readonly prompts = new StringColumn();
  private readonly responses = new StringColumn();
  private error: string | undefined;

  /** Whether an item broke the job's form (nothing more is kept). */
  get failed(): boolean {
    return this.error !== undefined;
  }

  add(item: Item): void {
    if (this.error !== undefined) return;
    const i = this.n;
    const f = item.features;
    if (i === 0) {
      this.form = f !== undefined ? 'features' : 'text';
      this.dim = f?.length ?? 0;
    } else if (this.form === 'features' && f === undefined) {
      this.error = `items[${i}]: is a text item, but items[0] has features (one form per job)`;
      return;
    } else if (this.form === 'text' && f !== undefined) {
      this.error = `items[${i}]: has features, but items[0] is a text item (one form per job)`;
      return;
    } else if (f !== undefined && f.length !== this.dim) {
      this.error = `items[${i}].features: has ${f.length} values, items[0] has ${this.dim}`;
      return;
    }
    this.ids.push(item.id);
    if (f !== undefined) this.features.push(f);
    else {
      this.prompts.push(item.prompt ?? '');
      this.responses.push(item.response ?? '');
    }
    this.n = i + 1;
  }

  result(request: JobRequest): ParsedJob {
    if (this.error !== undefined) return { ok: false, error: this.error };
    if (this.form === undefined) return { ok: false, error: 'items: needs at least one item' };
    const columns: JobColumns = { ids: this.ids };
    if (this.form === 'features') columns.features = this.features;
    else {
      columns.prompts = this.prompts;
      columns.responses = this.responses;
    }
    return { ok: true, request, form: this.form, dim: this.dim, columns };
  }
}

function* parseItems(request: JobRequest): Generator<void, ParsedJob> {
  const items = request.items ?? [];
  const rows = new RowColumns();
  for (let i = 0; i < items.length && !rows.failed; i++) {
    rows.add(items[i] as Item);
    if (i % ITEMS_PER_STEP === ITEMS_PER_STEP - 1) yield;
  }
  return rows.result(request);
}

function parseColumns(request: JobRequest, c: z.output<typeof columnsSchema>): ParsedJob {
  const n = c.ids.length;
  const hasText = c.prompts !== undefined || c.responses !== undefined || c.text !== undefined;
  if ((c.features !== undefined) === hasText) return { ok: false, error: 'columns: send "features", or "text", or "prompts" and "responses"' };
  if (c.text !== undefined) {
    if (c.prompts !== undefined || c.responses !== undefined) return { ok: false, error: 'columns.text: send "text" (an uploaded text blob) or "prompts" and "responses", not both' };
    // The blob's layout and strings are checked where the blob store is (server/item-blobs.ts).
    return { ok: true, request, form: 'text', dim: 0, columns: { ids: c.ids, textBlob: c.text.blob } };
  }
  if (c.features !== undefined) {
    const { dim, base64, blob } = c.features;
    const oneOf = 'columns.features: send "blob" (the sha-256 of an uploaded blob of float32) or "base64", exactly one';
    if (blob !== undefined) {
      if (base64 !== undefined) return { ok: false, error: oneOf };
      // The blob's size and values are checked where the blob store is (server/score-jobs.ts).
      return { ok: true, request, form: 'features', dim, columns: { ids: c.ids, featuresBlob: blob } };
    }
    if (base64 === undefined) return { ok: false, error: oneOf };
    // Node's decoder skips characters that are not base64, so check strictly by re-encoding: a canonical string
    // round-trips exactly (and this is ~5× faster than a regular expression over tens of megabytes).
    const bytes = Buffer.from(base64, 'base64');
    if (bytes.toString('base64') !== base64) return { ok: false, error: 'columns.features.base64: not valid (canonical, padded) base64' };
    if (bytes.byteLength !== n * dim * 4) {
      return { ok: false, error: `columns.features.base64: holds ${bytes.byteLength} bytes, ${n} items × ${dim} float32 need ${n * dim * 4}` };
    }
    // Copy into an aligned buffer of our own (a decoded Buffer may sit at any offset of a shared pool).
    const features = new Float32Array(n * dim);
    new Uint8Array(features.buffer).set(bytes);
    for (let j = 0; j < features.length; j++) {
      if (!Number.isFinite(features[j])) return { ok: false, error: `columns.features: item ${Math.floor(j / dim)} value ${j % dim} is ${features[j]}` };
    }
    return { ok: true, request, form: 'features', dim, columns: { ids: c.ids, features } };
  }
  for (const key of ['prompts', 'responses'] as const) {
    const col = c[key];
    if (col === undefined) return { ok: false, error: `columns.${key}: missing (text items need prompts and responses)` };
    if (col.length !== n) return { ok: false, error: `columns.${key}: has ${col.length} entries for ${n} ids` };
  }
  return { ok: true, request, form: 'text', dim: 0, columns: { ids: c.ids, prompts: c.prompts, responses: c.responses } };
}

/** Splits a job's columns into shards of shardSize items. */
export function splitShards(columns: JobColumns, shardSize: number, dim: number): ShardItems[] {
  return [...shardsOf(columns, shardSize, dim)];
}

/** The job's shards in order, each built only when it is asked for (a large job is written to the store in steps). */
export function* shardsOf(columns: JobColumns, shardSize: number, dim: number): Generator<ShardItems> {
  const n = columns.ids.length;
  for (let start = 0; start < n; start += shardSize) {
    const end = Math.min(n, start + shardSize);
    const shard: ShardItems = { ids: columns.ids.slice(start, end) };
    if (columns.features !== undefined) shard.features = columns.features.slice(start * dim, end * dim);
    else if (columns.featuresBlob === undefined && columns.textBlob === undefined) {
      shard.prompts = columns.prompts?.slice(start, end) ?? [];
      shard.responses = columns.responses?.slice(start, end) ?? [];
    }
    yield shard;
  }
}

/** Rough encoded size of a shard's lease frame, to refuse jobs whose shards cannot be sent. */
export function shardBytes(s: ShardItems): number {
  // ~48 bytes of per-item framing (map header, keys, tensor header) is generous.
  let bytes = 512 + (s.features?.byteLength ?? 0);
  for (const id of s.ids) bytes += 48 + Buffer.byteLength(id);
  for (const p of s.prompts ?? []) bytes += Buffer.byteLength(p);
  for (const r of s.responses ?? []) bytes += Buffer.byteLength(r);
  return bytes;
}
