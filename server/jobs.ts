import * as z from 'zod';
import { MAX_ID_LENGTH } from '../shared/protocol/index.js';
import type { JobSpec, ShardItems } from './store.js';

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

export const jobRequestSchema = z.strictObject({
  kind: z.literal('score').default('score'),
  model: z.string().regex(/^[0-9a-f]{64}$/, 'expected the sha-256 (64 lowercase hex chars) of an uploaded model blob'),
  items: z.array(itemSchema).min(1).max(MAX_JOB_ITEMS),
  shardSize: z.number().int().min(1).max(MAX_SHARD_SIZE).default(256),
  redundancy: z.number().int().min(1).max(MAX_REDUNDANCY).default(1),
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

export type ParsedJob = { ok: true; request: JobRequest; form: JobSpec['form']; dim: number } | { ok: false; error: string };

/** Validates a job request body (already JSON-parsed): field types, then consistency across items. */
export function parseJobRequest(body: unknown): ParsedJob {
  const result = jobRequestSchema.safeParse(body);
  if (!result.success) return { ok: false, error: describeIssue(result.error) };
  const request = result.data;
  const first = request.items[0];
  if (first === undefined) return { ok: false, error: 'items: needs at least one item' };
  const form = first.features !== undefined ? 'features' : 'text';
  const dim = first.features?.length ?? 0;
  for (let i = 1; i < request.items.length; i++) {
    const item = request.items[i] as JobRequest['items'][number];
    const f = item.features;
    if (form === 'features' && f === undefined) return { ok: false, error: `items[${i}]: is a text item, but items[0] has features (one form per job)` };
    if (form === 'text' && f !== undefined) return { ok: false, error: `items[${i}]: has features, but items[0] is a text item (one form per job)` };
    if (f !== undefined && f.length !== dim) return { ok: false, error: `items[${i}].features: has ${f.length} values, items[0] has ${dim}` };
  }
  return { ok: true, request, form, dim };
}

/** Splits validated items into shards (columnar, features packed as float32). */
export function splitShards(request: JobRequest, form: JobSpec['form'], dim: number): ShardItems[] {
  const shards: ShardItems[] = [];
  const { items, shardSize } = request;
  for (let start = 0; start < items.length; start += shardSize) {
    const slice = items.slice(start, start + shardSize);
    const shard: ShardItems = { ids: slice.map((it) => it.id) };
    if (form === 'features') {
      const f = new Float32Array(slice.length * dim);
      slice.forEach((it, i) => f.set(it.features ?? [], i * dim));
      shard.features = f;
    } else {
      shard.prompts = slice.map((it) => it.prompt ?? '');
      shard.responses = slice.map((it) => it.response ?? '');
    }
    shards.push(shard);
  }
  return shards;
}

/** Rough encoded size of the largest shard's lease frame, to refuse jobs whose shards cannot be sent. */
export function largestShardBytes(shards: readonly ShardItems[]): number {
  let max = 0;
  for (const s of shards) {
    // ~48 bytes of per-item framing (map header, keys, tensor header) is generous.
    let bytes = 512 + (s.features?.byteLength ?? 0);
    for (const id of s.ids) bytes += 48 + Buffer.byteLength(id);
    for (const p of s.prompts ?? []) bytes += Buffer.byteLength(p);
    for (const r of s.responses ?? []) bytes += Buffer.byteLength(r);
    if (bytes > max) max = bytes;
  }
  return max;
}
