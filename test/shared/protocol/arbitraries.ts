// fast-check arbitraries for every protocol message (and every task / payload / data kind),
// plus a normaliser that makes messages with tensors comparable with deepEqual.
import fc from 'fast-check';
import {
  BACKENDS,
  SCORER_APIS,
  MAX_CREDIT,
  PROTOCOL_ERROR_CODES,
  Tensor,
  type Message,
  type MessageOf,
  type MessageType,
  type ResultPayload,
  type ScoreItem,
  type Task,
  type TrainData,
} from '../../../shared/protocol/index.js';

const product = (shape: readonly number[]): number => shape.reduce((a, b) => a * b, 1);

export const idArb = fc.string({ minLength: 1, maxLength: 256 });
/** Free text with multi-unit graphemes (emoji, combining marks) to exercise UTF-8. */
export const textArb = fc.string({ unit: 'grapheme', maxLength: 40 });
export const countArb = fc.oneof(fc.nat(1000), fc.maxSafeNat());
export const timeArb = fc.integer({ min: 0, max: 4_102_444_800_000 });
export const hashArb = fc
  .uint8Array({ minLength: 32, maxLength: 32 })
  .map((b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(''));
// MessagePack has no -0 for integers-valued doubles: msgpackr writes -0 as 0.
const noNegZero = (v: number): number => (v === 0 ? 0 : v);
export const finiteArb = fc.double({ noNaN: true, noDefaultInfinity: true }).map(noNegZero);
const nonNegArb = fc.double({ min: 0, noNaN: true, noDefaultInfinity: true }).map(noNegZero);

export const shapeArb = (maxRank = 3, maxDim = 5): fc.Arbitrary<number[]> =>
  fc.array(fc.integer({ min: 0, max: maxDim }), { maxLength: maxRank });

/** float32 tensor; `finite: false` lets NaN / ±Infinity through (lease tensors are not checked). */
export function float32Arb(shape: fc.Arbitrary<number[]>, finite = true): fc.Arbitrary<Tensor<'float32'>> {
  return shape.chain((s) =>
    fc
      .float32Array({ minLength: product(s), maxLength: product(s), noNaN: finite, noDefaultInfinity: finite })
      .map((d) => Tensor.float32(d, s)),
  );
}
const vecArb = (len: number, finite = true): fc.Arbitrary<Tensor<'float32'>> => float32Arb(fc.constant([len]), finite);
const int32Arb = (s: number[]): fc.Arbitrary<Tensor<'int32'>> =>
  fc.int32Array({ minLength: product(s), maxLength: product(s) }).map((d) => Tensor.int32(d, s));

// ---- worker → coordinator -------------------------------------------------------------------

const helloArb: fc.Arbitrary<MessageOf<'hello'>> = fc.record({
  type: fc.constant('hello'),
  protocolVersion: fc.integer({ min: 1, max: 1000 }),
  name: idArb,
  capabilities: fc.record(
    {
      backend: fc.constantFrom(...BACKENDS),
      threads: fc.integer({ min: 1, max: 1024 }),
      device: fc.string({ maxLength: 256 }),
      memoryBytes: countArb,
      itemsPerSecond: nonNegArb,
      tasks: fc.subarray(['score', 'train'] as ('score' | 'train')[], { minLength: 1 }),
      scorer: fc.record({ api: fc.constantFrom(...SCORER_APIS), model: idArb }),
    },
    { requiredKeys: ['backend', 'threads', 'tasks'] },
  ),
});

const heartbeatArb: fc.Arbitrary<MessageOf<'heartbeat'>> = fc.record(
  { type: fc.constant('heartbeat'), time: timeArb, inFlight: countArb },
  { requiredKeys: ['type', 'time'] },
);

const pullArb: fc.Arbitrary<MessageOf<'pull'>> = fc.record({
  type: fc.constant('pull'),
  credit: fc.integer({ min: 1, max: MAX_CREDIT }),
});

const scoresPayloadArb: fc.Arbitrary<ResultPayload> = fc.record({
  kind: fc.constant('scores'),
  scores: float32Arb(shapeArb(1, 64)),
});

const updatePayloadArb: fc.Arbitrary<ResultPayload> = fc.integer({ min: 0, max: 64 }).chain((n) =>
  fc.record(
    {
      kind: fc.constant('update'),
      update: vecArb(n),
      momentum: vecArb(n),
      samples: countArb,
      loss: finiteArb,
      baseVersion: countArb,
    },
    { requiredKeys: ['kind', 'update', 'samples', 'loss', 'baseVersion'] },
  ),
);

const resultArb: fc.Arbitrary<MessageOf<'result'>> = fc.record(
  {
    type: fc.constant('result'),
    leaseId: idArb,
    shardId: idArb,
    payload: fc.oneof(scoresPayloadArb, updatePayloadArb),
    elapsedMs: countArb,
  },
  { requiredKeys: ['type', 'leaseId', 'shardId', 'payload'] },
);

const failureArb: fc.Arbitrary<MessageOf<'failure'>> = fc.record({
  type: fc.constant('failure'),
  leaseId: idArb,
  shardId: idArb,
  reason: fc.oneof(textArb, fc.string({ maxLength: 4096 })),
  retryable: fc.boolean(),
});

const releaseArb: fc.Arbitrary<MessageOf<'release'>> = fc.record({
  type: fc.constant('release'),
  leaseIds: fc.array(idArb, { minLength: 1, maxLength: 20 }),
});

const blobRequestArb: fc.Arbitrary<MessageOf<'blob-request'>> = fc.record({
  type: fc.constant('blob-request'),
  hash: hashArb,
});

// ---- coordinator → worker -------------------------------------------------------------------

const welcomeArb: fc.Arbitrary<MessageOf<'welcome'>> = fc.record({
  type: fc.constant('welcome'),
  protocolVersion: fc.integer({ min: 1, max: 1000 }),
  workerId: idArb,
  leaseMs: fc.integer({ min: 1, max: 2 ** 31 }),
  heartbeatMs: fc.integer({ min: 1, max: 2 ** 31 }),
  maxFrameBytes: fc.integer({ min: 1, max: 2 ** 40 }),
});

const scoreItemArb: fc.Arbitrary<ScoreItem> = fc.oneof(
  fc.record({ id: idArb, features: float32Arb(shapeArb(2, 8), false) }),
  fc.record({ id: idArb, prompt: textArb, response: textArb }),
);

const scoreItemsTaskArb: fc.Arbitrary<Task> = fc.record({
  kind: fc.constant('score'),
  modelHash: hashArb,
  batchSize: fc.integer({ min: 1, max: 4096 }),
  items: fc.array(scoreItemArb, { minLength: 1, maxLength: 6 }),
});

/** Feature shards as one [n, dim] matrix with n ids. */
const scoreMatrixTaskArb: fc.Arbitrary<Task> = fc
  .tuple(fc.integer({ min: 1, max: 6 }), fc.integer({ min: 0, max: 8 }))
  .chain(([n, dim]) =>
    fc.record({
      kind: fc.constant('score'),
      modelHash: hashArb,
      batchSize: fc.integer({ min: 1, max: 4096 }),
      matrix: fc.record({ ids: fc.array(idArb, { minLength: n, maxLength: n }), features: float32Arb(fc.constant([n, dim]), false) }),
    }),
  );

/** Text shards for a worker's inference server: a scorer instead of a bundle. */
const scorerTaskArb: fc.Arbitrary<Task> = fc.record({
  kind: fc.constant('score'),
  scorer: fc.record({ model: idArb, output: fc.constantFrom('reward', 'logprobs') }),
  batchSize: fc.integer({ min: 1, max: 4096 }),
  items: fc.array(fc.record({ id: idArb, prompt: textArb, response: textArb }), { minLength: 1, maxLength: 6 }),
});

const scoreTaskArb: fc.Arbitrary<Task> = fc.oneof(scoreItemsTaskArb, scoreMatrixTaskArb, scorerTaskArb);

const centralDataArb: fc.Arbitrary<TrainData> = fc
  .tuple(fc.integer({ min: 0, max: 8 }), fc.integer({ min: 0, max: 6 }), fc.integer({ min: 1, max: 3 }))
  .chain(([rows, dim, k]) =>
    fc.record({
      source: fc.constant('central'),
      rows: float32Arb(fc.constant([rows, dim]), false),
      labels: fc.oneof(int32Arb([rows]), float32Arb(fc.constant([rows]), false), float32Arb(fc.constant([rows, k]), false)),
    }),
  );

const workerDataArb: fc.Arbitrary<TrainData> = fc.record({ source: fc.constant('worker'), name: idArb });

const trainTaskArb: fc.Arbitrary<Task> = fc.integer({ min: 0, max: 64 }).chain((n) =>
  fc.record(
    {
      kind: fc.constant('train'),
      modelHash: hashArb,
      modelVersion: countArb,
      client: countArb,
      momentum: vecArb(n, false),
      local: fc.record({
        steps: fc.integer({ min: 1, max: 10_000 }),
        batchSize: fc.integer({ min: 1, max: 4096 }),
        lr: fc.double({ min: Number.MIN_VALUE, max: 10, noNaN: true }),
        momentum: fc.double({ min: 0, max: 0.999, noNaN: true }).map(noNegZero),
      }),
      data: fc.oneof(centralDataArb, workerDataArb),
    },
    { requiredKeys: ['kind', 'modelHash', 'modelVersion', 'client', 'local', 'data'] },
  ),
);

const leaseArb: fc.Arbitrary<MessageOf<'lease'>> = fc.record({
  type: fc.constant('lease'),
  leaseId: idArb,
  shardId: idArb,
  jobId: idArb,
  deadline: timeArb,
  attempt: fc.integer({ min: 1, max: 100 }),
  task: fc.oneof(scoreTaskArb, trainTaskArb),
});

const weightsArb: fc.Arbitrary<MessageOf<'weights'>> = fc.record({
  type: fc.constant('weights'),
  jobId: idArb,
  modelHash: hashArb,
  modelVersion: countArb,
  weights: fc.integer({ min: 0, max: 64 }).chain((n) => vecArb(n, false)),
});

const blobArb: fc.Arbitrary<MessageOf<'blob'>> = fc
  .tuple(hashArb, fc.nat(1 << 30), fc.uint8Array({ maxLength: 300 }), fc.oneof(fc.constant(0), fc.nat(1 << 20)))
  .map(([hash, offset, data, rest]) => ({
    type: 'blob',
    hash,
    offset,
    total: offset + data.length + rest,
    data,
    final: rest === 0,
  }));

const jobControlArb: fc.Arbitrary<MessageOf<'job-control'>> = fc.record({
  type: fc.constant('job-control'),
  jobId: idArb,
  action: fc.constantFrom('cancel', 'pause', 'resume'),
});

const errorArb: fc.Arbitrary<MessageOf<'error'>> = fc.record(
  {
    type: fc.constant('error'),
    code: fc.oneof(fc.constantFrom(...PROTOCOL_ERROR_CODES, 'unauthorized', 'unsupported-version'), fc.string({ minLength: 1, maxLength: 64 })),
    message: textArb,
    ref: idArb,
  },
  { requiredKeys: ['type', 'code', 'message'] },
);

/** One arbitrary per message type; the roundtrip test checks every key is present. */
export const messageArbs: { readonly [T in MessageType]: fc.Arbitrary<MessageOf<T>> } = {
  hello: helloArb,
  welcome: welcomeArb,
  heartbeat: heartbeatArb,
  pull: pullArb,
  lease: leaseArb,
  weights: weightsArb,
  result: resultArb,
  failure: failureArb,
  release: releaseArb,
  'blob-request': blobRequestArb,
  blob: blobArb,
  'job-control': jobControlArb,
  error: errorArb,
};

/** Each task / payload / data kind on its own, so none hides behind a oneof. */
export const variantArbs = {
  'lease/score': leaseArb.chain((l) => scoreTaskArb.map((task): Message => ({ ...l, task }))),
  'lease/train/central': leaseArb.chain((l) =>
    trainTaskArb.chain((t) => centralDataArb.map((data): Message => ({ ...l, task: t.kind === 'train' ? { ...t, data } : t }))),
  ),
  'lease/train/worker': leaseArb.chain((l) =>
    trainTaskArb.chain((t) => workerDataArb.map((data): Message => ({ ...l, task: t.kind === 'train' ? { ...t, data } : t }))),
  ),
  'result/scores': resultArb.chain((r) => scoresPayloadArb.map((payload): Message => ({ ...r, payload }))),
  'result/update': resultArb.chain((r) => updatePayloadArb.map((payload): Message => ({ ...r, payload }))),
} as const;

export const anyMessageArb: fc.Arbitrary<Message> = fc.oneof(...Object.values(messageArbs).map((a: fc.Arbitrary<Message>) => a));

/** Replace tensors and byte arrays by plain descriptions (dtype, shape, bytes) for deepEqual. */
export function normalize(value: unknown): unknown {
  if (value instanceof Tensor) {
    return { tensor: value.dtype, shape: [...value.shape], bytes: Array.from(new Uint8Array(value.data.buffer, value.data.byteOffset, value.data.byteLength)) };
  }
  if (value instanceof Uint8Array) return { bin: Array.from(value) };
  if (Array.isArray(value)) return value.map(normalize);
  if (typeof value === 'object' && value !== null) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = normalize(v);
    return out;
  }
  return value;
}

/** Every tensor in a (decoded) message, with its field path. */
export function tensorsOf(value: unknown, path = ''): { path: string; tensor: Tensor }[] {
  if (value instanceof Tensor) return [{ path, tensor: value }];
  if (value instanceof Uint8Array || typeof value !== 'object' || value === null) return [];
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
  return entries.flatMap(([k, v]) => tensorsOf(v, path === '' ? k : `${path}.${k}`));
}
