import * as z from 'zod';
import { ProtocolError, describeValue, fromZodIssue, quote, type ProtocolErrorCode } from './errors.js';
import { Tensor, firstNonFinite, type DType } from './tensor.js';

/**
 * Message schemas: a discriminated union on `type`. Every object is strict (unknown keys are
 * rejected) so a peer that drifts from this file fails loudly instead of being half-understood.
 * Tensors are opaque to zod (one instanceof check each); the only per-element work is the
 * finiteness loop on result payloads.
 *
 * One file, longer than most, because it is one closed union: every message a peer may send is declared here next to
 * the others, so adding or changing one is one reviewable diff.
 */

/** 2: model weights travel in their own `weights` message, no longer inside train leases. */
export const PROTOCOL_VERSION = 2;
export const MAX_ID_LENGTH = 256;
/** Most dataset names a worker may announce. */
export const MAX_DATASETS = 64;
export const MAX_REASON_LENGTH = 4096;
/** Upper bound of `pull.credit`, and therefore of leases a worker can hold (and release) at once. */
export const MAX_CREDIT = 1024;

// Custom issues carry the protocol code to use (default 'invalid-field').
interface CodeParams {
  protocolCode: ProtocolErrorCode;
}

// ---- building blocks -------------------------------------------------------------------------

const id = z.string().min(1).max(MAX_ID_LENGTH);
/** Non-negative safe integer (zod 4's int() already means "safe integer"). */
const count = z.number().int().nonnegative();
const positiveInt = z.number().int().positive();
/** Milliseconds since the Unix epoch. */
const timeMs = count;
/** SHA-256 as 64 lowercase hex chars: blobs and models are content-addressed. */
const sha256 = z.string().regex(/^[0-9a-f]{64}$/, 'expected 64 lowercase hex chars (sha-256)');
const protocolVersion = z.number().int().min(1);

function tensorOf<D extends DType>(...dtypes: D[]) {
  const allowed: readonly DType[] = dtypes;
  return z.custom<Tensor<D>>((v) => v instanceof Tensor && allowed.includes(v.dtype), {
    error: `expected ${dtypes.join(' or ')} Tensor`,
    abort: true,
  });
}

/** A float32 tensor that must not contain NaN or ±Infinity (worker results feed aggregation). */
function finiteFloat32() {
  return tensorOf('float32').superRefine((t, ctx) => {
    if (!(t instanceof Tensor) || t.dtype !== 'float32') return; // reported by tensorOf
    const data = t.data as Float32Array;
    const i = firstNonFinite(data);
    if (i < 0) return;
    ctx.addIssue({
      code: 'custom',
      message: `at index ${i}: ${String(data[i])}`,
      params: { protocolCode: 'non-finite' } satisfies CodeParams,
    });
  });
}

function shapeIssue(ctx: z.RefinementCtx, path: (string | number)[], message: string): void {
  ctx.addIssue({ code: 'custom', path, message, params: { protocolCode: 'shape-mismatch' } satisfies CodeParams });
}

// ---- worker → coordinator -------------------------------------------------------------------

export const BACKENDS = ['webgpu', 'tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'] as const;
export type Backend = (typeof BACKENDS)[number];
export const TASK_KINDS = ['score', 'train'] as const;
export type TaskKind = (typeof TASK_KINDS)[number];

/** Inference-server APIs a worker can front (`fedpool worker --scorer-api`); docs/scorers.md. */
export const SCORER_APIS = ['vllm-classify', 'tei', 'openrlhf', 'openai-logprobs', 'openai-embeddings', 'ollama-embed'] as const;
export type ScorerApi = (typeof SCORER_APIS)[number];
/** What a scorer computes per item: a reward, token log-prob statistics, or an embedding (for a bundle's head). */
export const SCORER_OUTPUTS = ['reward', 'logprobs', 'embedding'] as const;
export type ScorerOutput = (typeof SCORER_OUTPUTS)[number];

/** The output of each API. */
export function scorerOutputOf(api: ScorerApi): ScorerOutput {
  if (api === 'openai-logprobs') return 'logprobs';
  if (api === 'openai-embeddings' || api === 'ollama-embed') return 'embedding';
  return 'reward';
}

/**
 * Values a scorer job produces per item: a reward is one; log-probs are three (mean log-prob, perplexity,
 * approximate self-certainty), interleaved per item in results.
 */
export function scorerWidth(output: 'reward' | 'logprobs'): number {
  return output === 'logprobs' ? 3 : 1;
}

/** The inference server a worker fronts, as its hello announces it. */
export const scorerInfoSchema = z.strictObject({
  api: z.enum(SCORER_APIS),
  /** The model the server serves: jobs naming this model go to this worker. */
  model: id,
});

export const capabilitiesSchema = z.strictObject({
  backend: z.enum(BACKENDS),
  threads: z.number().int().min(1).max(1024),
  device: z.string().max(MAX_ID_LENGTH).optional(),
  memoryBytes: count.optional(),
  /** Self-reported throughput, a scheduling hint only. */
  itemsPerSecond: z.number().nonnegative().optional(),
  tasks: z.array(z.enum(TASK_KINDS)).min(1).max(TASK_KINDS.length),
  /** Names of the worker's own datasets (`--data NAME=PATH`) that training jobs with `data.source: 'worker'` may use. */
  datasets: z.array(id).max(MAX_DATASETS).optional(),
  /** The inference server this worker scores through (`--scorer-url`), if any. */
  scorer: scorerInfoSchema.optional(),
});

export const helloSchema = z.strictObject({
  type: z.literal('hello'),
  /** Any version is accepted by the schema so the coordinator can answer 'unsupported-version'. */
  protocolVersion,
  name: z.string().min(1).max(MAX_ID_LENGTH),
  capabilities: capabilitiesSchema,
});

export const heartbeatSchema = z.strictObject({
  type: z.literal('heartbeat'),
  time: timeMs,
  /** Worker → coordinator only: leases the worker currently holds. */
  inFlight: count.optional(),
});

export const pullSchema = z.strictObject({
  type: z.literal('pull'),
  /** How many shards the worker may hold at once (backpressure); replaces the previous credit. */
  credit: z.number().int().min(1).max(MAX_CREDIT),
});

export const scoresPayloadSchema = z.strictObject({
  kind: z.literal('scores'),
  /** One score per lease item, in item order. */
  scores: finiteFloat32(),
});

export const updatePayloadSchema = z
  .strictObject({
    kind: z.literal('update'),
    /** Model delta (new − base weights), flattened. */
    update: finiteFloat32(),
    /** Local optimiser momentum after training, when the job keeps it per client. */
    momentum: finiteFloat32().optional(),
    samples: count,
    loss: z.number(),
    /** `modelVersion` of the lease this update was computed from (for staleness). */
    baseVersion: count,
  })
  .superRefine((p, ctx) => {
    if (p.momentum instanceof Tensor && p.update instanceof Tensor && p.momentum.size !== p.update.size) {
      shapeIssue(ctx, ['momentum'], `has ${p.momentum.size} elements, update has ${p.update.size}`);
    }
  });

export const resultPayloadSchema = z.discriminatedUnion('kind', [scoresPayloadSchema, updatePayloadSchema]);

export const resultSchema = z.strictObject({
  type: z.literal('result'),
  leaseId: id,
  shardId: id,
  payload: resultPayloadSchema,
  /** Compute time on the worker, for throughput estimates. */
  elapsedMs: count.optional(),
});

export const failureSchema = z.strictObject({
  type: z.literal('failure'),
  leaseId: id,
  shardId: id,
  reason: z.string().max(MAX_REASON_LENGTH),
  /** False when retrying elsewhere cannot help (e.g. the model is invalid). */
  retryable: z.boolean(),
});

export const releaseSchema = z.strictObject({
  type: z.literal('release'),
  leaseIds: z.array(id).min(1).max(MAX_CREDIT),
});

export const blobRequestSchema = z.strictObject({
  type: z.literal('blob-request'),
  hash: sha256,
});

// ---- coordinator → worker -------------------------------------------------------------------

export const welcomeSchema = z.strictObject({
  type: z.literal('welcome'),
  protocolVersion,
  workerId: id,
  leaseMs: positiveInt,
  heartbeatMs: positiveInt,
  /** Largest frame the coordinator accepts; the worker must not send more. */
  maxFrameBytes: positiveInt,
});

/**
 * One item to score: either precomputed `features`, or `prompt` + `response` text that the
 * model's featurizer turns into features on the worker. Exactly one of the two forms.
 */
export const scoreItemSchema = z
  .strictObject({
    id,
    features: tensorOf('float32').optional(),
    prompt: z.string().optional(),
    response: z.string().optional(),
  })
  .superRefine((item, ctx) => {
    const hasFeatures = item.features !== undefined;
    const hasText = item.prompt !== undefined || item.response !== undefined;
    if (hasFeatures && hasText) {
      ctx.addIssue({ code: 'custom', message: 'has both features and text; send one form' });
    } else if (!hasFeatures && !hasText) {
      ctx.addIssue({ code: 'custom', message: 'needs features, or prompt and response' });
    } else if (hasText && (item.prompt === undefined || item.response === undefined)) {
      ctx.addIssue({ code: 'custom', path: [item.prompt === undefined ? 'prompt' : 'response'], message: 'text items need both prompt and response' });
    }
  });

/**
 * A shard of feature items as one matrix: `ids[i]` names row i of `features` [ids.length, dim]. One tensor per
 * shard instead of one per item makes a lease one memcpy to encode and decode, not thousands of small objects.
 */
export const featureMatrixSchema = z
  .strictObject({
    ids: z.array(id).min(1),
    features: tensorOf('float32'),
  })
  .superRefine((m, ctx) => {
    if (!(m.features instanceof Tensor) || !Array.isArray(m.ids)) return;
    if (m.features.ndim !== 2 || m.features.shape[0] !== m.ids.length) {
      shapeIssue(ctx, ['features'], `expected [${m.ids.length}, dim] for ${m.ids.length} ids, got [${m.features.shape.join(',')}]`);
    }
  });

/** A job scored by the workers' inference servers instead of a bundle: the model they must serve, and what to compute. */
export const scorerTaskSchema = z.strictObject({
  model: id,
  output: z.enum(['reward', 'logprobs']),
});

/**
 * Exactly one of `items` (any form, one object each) and `matrix` (feature items, one tensor); exactly one of
 * `modelHash` (a bundle the worker runs) and `scorer` (the worker's inference server, text items only).
 */
export const scoreTaskSchema = z
  .strictObject({
    kind: z.literal('score'),
    modelHash: sha256.optional(),
    scorer: scorerTaskSchema.optional(),
    batchSize: positiveInt,
    items: z.array(scoreItemSchema).min(1).optional(),
    matrix: featureMatrixSchema.optional(),
  })
  .superRefine((t, ctx) => {
    if ((t.items === undefined) === (t.matrix === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['items'], message: 'send exactly one of items and matrix' });
    }
    if ((t.modelHash === undefined) === (t.scorer === undefined)) {
      ctx.addIssue({ code: 'custom', path: ['modelHash'], message: 'send exactly one of modelHash and scorer' });
    } else if (t.scorer !== undefined && (t.matrix !== undefined || t.items?.some((item) => item.features !== undefined) === true)) {
      ctx.addIssue({ code: 'custom', path: ['scorer'], message: 'scorer tasks take text items (prompt and response) only' });
    }
  });

export const localTrainingSchema = z.strictObject({
  steps: positiveInt,
  batchSize: positiveInt,
  lr: z.number().positive(),
  momentum: z.number().min(0).lt(1),
});

/** Rows shipped with the lease: `rows` is [n, features], `labels` is [n] (class ids or targets) or [n, k]. */
export const centralDataSchema = z
  .strictObject({
    source: z.literal('central'),
    rows: tensorOf('float32'),
    labels: tensorOf('int32', 'float32'),
  })
  .superRefine((d, ctx) => {
    if (!(d.rows instanceof Tensor) || !(d.labels instanceof Tensor)) return;
    if (d.rows.ndim !== 2) shapeIssue(ctx, ['rows'], `expected 2 dims [rows, features], got [${d.rows.shape.join(',')}]`);
    else if ((d.labels.ndim !== 1 && d.labels.ndim !== 2) || d.labels.shape[0] !== d.rows.shape[0]) {
      shapeIssue(ctx, ['labels'], `expected [${d.rows.shape[0]}] or [${d.rows.shape[0]},k], got [${d.labels.shape.join(',')}]`);
    }
  });

/** Preference pairs shipped with the lease: `chosen` and `rejected` are featurized rows [n, features], row i of each is pair i. */
export const centralPairsSchema = z
  .strictObject({
    source: z.literal('central-pairs'),
    chosen: tensorOf('float32'),
    rejected: tensorOf('float32'),
  })
  .superRefine((d, ctx) => {
    if (!(d.chosen instanceof Tensor) || !(d.rejected instanceof Tensor)) return;
    if (d.chosen.ndim !== 2) shapeIssue(ctx, ['chosen'], `expected 2 dims [pairs, features], got [${d.chosen.shape.join(',')}]`);
    else if (d.rejected.ndim !== 2 || d.rejected.shape[0] !== d.chosen.shape[0] || d.rejected.shape[1] !== d.chosen.shape[1]) {
      shapeIssue(ctx, ['rejected'], `expected [${d.chosen.shape.join(',')}] like chosen, got [${d.rejected.shape.join(',')}]`);
    }
  });

/** A dataset the worker was started with (`fedpool worker --data NAME=PATH`). */
export const workerDataSchema = z.strictObject({
  source: z.literal('worker'),
  name: id,
});

export const trainDataSchema = z.discriminatedUnion('source', [centralDataSchema, centralPairsSchema, workerDataSchema]);

export const trainTaskSchema = z
  .strictObject({
    kind: z.literal('train'),
    modelHash: sha256,
    modelVersion: count,
    /** Virtual client index (0-based) this shard trains as. */
    client: count,
    /** The client's optimiser momentum from its previous round, if the job keeps it. */
    momentum: tensorOf('float32').optional(),
    local: localTrainingSchema,
    data: trainDataSchema,
    /**
     * Label-flipping attack (robustness experiments): train on labels y → C − 1 − y, or with chosen and rejected
     * swapped for pairs. Only the coordinator of an `adversary` experiment sets it.
     */
    flipLabels: z.boolean().optional(),
  })

export const taskSchema = z.discriminatedUnion('kind', [scoreTaskSchema, trainTaskSchema]);

export const leaseSchema = z.strictObject({
  type: z.literal('lease'),
  leaseId: id,
  shardId: id,
  jobId: id,
  /** The lease expires (and the shard is re-issued) at this time, ms since epoch. */
  deadline: timeMs,
  /** 1 for the first issue of this shard, incremented on each re-issue. */
  attempt: positiveInt,
  task: taskSchema,
});

/**
 * The weights of one model version of a training job, flattened. The coordinator sends them on a connection before
 * the first lease of that job and version, encodes them once per version and sends the same frame to every worker
 * (shared/training/held-weights.ts: which versions a connection holds).
 */
export const weightsSchema = z.strictObject({
  type: z.literal('weights'),
  jobId: id,
  modelHash: sha256,
  modelVersion: count,
  weights: tensorOf('float32'),
});

/**
 * A (chunk of a) content-addressed blob, e.g. a model file. `data` is MessagePack bin
 * (decoded into a Uint8Array that owns its memory). Chunks cover [offset, offset + data.length)
 * of `total` bytes; `final` is true exactly on the chunk that ends at `total`.
 */
export const blobSchema = z
  .strictObject({
    type: z.literal('blob'),
    hash: sha256,
    offset: count,
    total: count,
    data: z.instanceof(Uint8Array),
    final: z.boolean(),
  })
  .superRefine((b, ctx) => {
    if (!(b.data instanceof Uint8Array) || typeof b.offset !== 'number' || typeof b.total !== 'number') return;
    const end = b.offset + b.data.length;
    if (end > b.total) ctx.addIssue({ code: 'custom', path: ['data'], message: `chunk ends at ${end}, past total ${b.total}` });
    else if (b.final !== (end === b.total)) {
      ctx.addIssue({ code: 'custom', path: ['final'], message: `is ${String(b.final)} but chunk ends at ${end} of ${b.total}` });
    }
  });

export const jobControlSchema = z.strictObject({
  type: z.literal('job-control'),
  jobId: id,
  action: z.enum(['cancel', 'pause', 'resume']),
});

// ---- both ways ------------------------------------------------------------------------------

/** Codes for `error` messages: protocol codes plus session-level ones; other strings are allowed. */
export type PeerErrorCode = ProtocolErrorCode | 'unauthorized' | 'unsupported-version' | 'internal';

export const errorSchema = z.strictObject({
  type: z.literal('error'),
  code: z.string().min(1).max(64),
  message: z.string().max(MAX_REASON_LENGTH),
  /** The id (lease, shard, job, blob hash) the error concerns, if any. */
  ref: id.optional(),
});

// ---- unions ---------------------------------------------------------------------------------

export const workerMessageSchema = z.discriminatedUnion('type', [
  helloSchema,
  heartbeatSchema,
  pullSchema,
  resultSchema,
  failureSchema,
  releaseSchema,
  blobRequestSchema,
  errorSchema,
]);

export const coordinatorMessageSchema = z.discriminatedUnion('type', [
  welcomeSchema,
  heartbeatSchema,
  leaseSchema,
  weightsSchema,
  blobSchema,
  jobControlSchema,
  errorSchema,
]);

export const messageSchema = z.discriminatedUnion('type', [
  helloSchema,
  welcomeSchema,
  heartbeatSchema,
  pullSchema,
  leaseSchema,
  weightsSchema,
  resultSchema,
  failureSchema,
  releaseSchema,
  blobRequestSchema,
  blobSchema,
  jobControlSchema,
  errorSchema,
]);

export type HelloMessage = z.output<typeof helloSchema>;
export type WelcomeMessage = z.output<typeof welcomeSchema>;
export type HeartbeatMessage = z.output<typeof heartbeatSchema>;
export type PullMessage = z.output<typeof pullSchema>;
export type LeaseMessage = z.output<typeof leaseSchema>;
export type WeightsMessage = z.output<typeof weightsSchema>;
export type ResultMessage = z.output<typeof resultSchema>;
export type FailureMessage = z.output<typeof failureSchema>;
export type ReleaseMessage = z.output<typeof releaseSchema>;
export type BlobRequestMessage = z.output<typeof blobRequestSchema>;
export type BlobMessage = z.output<typeof blobSchema>;
export type JobControlMessage = z.output<typeof jobControlSchema>;
export type ErrorMessage = z.output<typeof errorSchema>;

export type Capabilities = z.output<typeof capabilitiesSchema>;
export type Task = z.output<typeof taskSchema>;
export type ScoreTask = z.output<typeof scoreTaskSchema>;
export type TrainTask = z.output<typeof trainTaskSchema>;
export type ScoreItem = z.output<typeof scoreItemSchema>;
export type ScorerInfo = z.output<typeof scorerInfoSchema>;
export type ScorerTask = z.output<typeof scorerTaskSchema>;
export type TrainData = z.output<typeof trainDataSchema>;
export type ResultPayload = z.output<typeof resultPayloadSchema>;

export type WorkerMessage = z.output<typeof workerMessageSchema>;
export type CoordinatorMessage = z.output<typeof coordinatorMessageSchema>;
export type Message = z.output<typeof messageSchema>;
export type MessageType = Message['type'];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;
export type WorkerMessageType = WorkerMessage['type'];
export type CoordinatorMessageType = CoordinatorMessage['type'];

/** Who sent a frame: 'worker' frames go worker → coordinator (decoded on the coordinator). */
export type Direction = 'worker' | 'coordinator';

const SCHEMAS: { readonly [T in MessageType]: z.ZodType<MessageOf<T>> } = {
  hello: helloSchema,
  welcome: welcomeSchema,
  heartbeat: heartbeatSchema,
  pull: pullSchema,
  lease: leaseSchema,
  weights: weightsSchema,
  result: resultSchema,
  failure: failureSchema,
  release: releaseSchema,
  'blob-request': blobRequestSchema,
  blob: blobSchema,
  'job-control': jobControlSchema,
  error: errorSchema,
};

export const MESSAGE_TYPES = Object.freeze(Object.keys(SCHEMAS)) as readonly MessageType[];
export const WORKER_MESSAGE_TYPES: readonly WorkerMessageType[] = Object.freeze([
  'hello', 'heartbeat', 'pull', 'result', 'failure', 'release', 'blob-request', 'error',
] as const);
export const COORDINATOR_MESSAGE_TYPES: readonly CoordinatorMessageType[] = Object.freeze([
  'welcome', 'heartbeat', 'lease', 'weights', 'blob', 'job-control', 'error',
] as const);

const TYPE_SET: ReadonlySet<string> = new Set(MESSAGE_TYPES);
const SENDABLE: { readonly [K in Direction]: ReadonlySet<string> } = {
  worker: new Set(WORKER_MESSAGE_TYPES),
  coordinator: new Set(COORDINATOR_MESSAGE_TYPES),
};

export function isMessageType(value: unknown): value is MessageType {
  return typeof value === 'string' && TYPE_SET.has(value);
}

// ---- validation -----------------------------------------------------------------------------

function isRecord(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * Checks an untrusted value against the schema of its `type` and returns the typed message.
 * Throws ProtocolError: 'malformed' (not an object), 'unknown-type', 'invalid-field',
 * 'non-finite' or 'shape-mismatch'. With `direction`, a type that side never sends is 'unknown-type'.
 */
export function parseMessage(value: unknown, direction: 'worker'): WorkerMessage;
export function parseMessage(value: unknown, direction: 'coordinator'): CoordinatorMessage;
export function parseMessage(value: unknown, direction?: Direction): Message;
export function parseMessage(value: unknown, direction?: Direction): Message {
  if (!isRecord(value)) {
    throw new ProtocolError('malformed', `frame does not hold a message object, got ${describeValue(value)}`);
  }
  const type = value['type'];
  if (typeof type !== 'string') {
    throw new ProtocolError('invalid-field', `invalid field "type": expected string, got ${describeValue(type)}`, { path: 'type' });
  }
  if (!isMessageType(type)) {
    throw new ProtocolError('unknown-type', `unknown message type ${quote(type)}`, { path: 'type' });
  }
  if (direction !== undefined && !SENDABLE[direction].has(type)) {
    throw new ProtocolError('unknown-type', `message type ${quote(type)} is not sent by a ${direction}`, { path: 'type' });
  }
  const result = SCHEMAS[type].safeParse(value);
  if (!result.success) throw fromZodIssue(result.error.issues[0], value);
  return result.data;
}

/** Throws ProtocolError('version') unless the peer speaks our protocol version. */
export function assertProtocolVersion(version: number): void {
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError('version', `peer speaks protocol version ${describeValue(version)}, this side speaks ${PROTOCOL_VERSION}`, {
      path: 'protocolVersion',
    });
  }
}

/**
 * Builds an `error` message reporting `error` to the peer. ProtocolErrors keep their code and
 * text; anything else becomes a bare 'internal' so local details (paths, stack text) never leak.
 */
export function errorMessage(error: unknown, ref?: string): ErrorMessage {
  const code: PeerErrorCode = error instanceof ProtocolError ? error.code : 'internal';
  const text = error instanceof ProtocolError ? error.message : 'internal error';
  const message: ErrorMessage = { type: 'error', code, message: text.slice(0, MAX_REASON_LENGTH) };
  if (ref !== undefined && ref.length >= 1 && ref.length <= MAX_ID_LENGTH) message.ref = ref;
  return message;
}
