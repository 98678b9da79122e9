import test, { type ExecutionContext } from 'ava';
import { Packr } from 'msgpackr';
import {
  DEFAULT_MAX_FRAME_BYTES,
  MIN_VIEW_BYTES,
  PROTOCOL_VERSION,
  ProtocolError,
  TENSOR_EXT_TYPE,
  Tensor,
  assertFinite,
  assertProtocolVersion,
  assertTensor,
  decodeMessage,
  encodeMessage,
  errorMessage,
  isProtocolError,
  parseMessage,
  safeDecodeMessage,
  tensorDecodeCounts,
  type Message,
  type ProtocolErrorCode,
} from '../../../shared/protocol/index.js';

// A raw packer for building frames our encoder would refuse to produce.
const raw = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
const pack = (value: unknown): Uint8Array => raw.pack(value);
const HASH = 'ab'.repeat(32);

const update = (values: number[], extra: Record<string, unknown> = {}): Record<string, unknown> => ({
  type: 'result',
  leaseId: 'lease-1',
  shardId: 'shard-1',
  payload: { kind: 'update', update: Tensor.float32(values), samples: 4, loss: 0.5, baseVersion: 2, ...extra },
});

function expectCode(t: ExecutionContext, fn: () => unknown, code: ProtocolErrorCode, path?: string): ProtocolError | undefined {
  const error = t.throws(fn, { instanceOf: ProtocolError });
  if (error === undefined) return undefined;
  t.is(error.code, code, error.message);
  if (path !== undefined) t.is(error.path, path, error.message);
  t.false(error.message.includes('\n'));
  return error;
}

const decodeRaw = (value: unknown, opts?: Parameters<typeof decodeMessage>[1]) => () => decodeMessage(pack(value), opts);

test('unknown type is unknown-type', (t) => {
  const e = expectCode(t, decodeRaw({ type: 'launch-missiles', x: 1 }), 'unknown-type', 'type');
  t.is(e?.message, 'unknown message type "launch-missiles"');
});

test('a type sent by the wrong side is unknown-type when a direction is given', (t) => {
  const lease = { type: 'pull', credit: 1 };
  t.notThrows(decodeRaw(lease, { direction: 'worker' }));
  const e = expectCode(t, decodeRaw(lease, { direction: 'coordinator' }), 'unknown-type');
  t.regex(e?.message ?? '', /not sent by a coordinator/);
});

test('missing or non-string type is invalid-field "type"', (t) => {
  expectCode(t, decodeRaw({ credit: 1 }), 'invalid-field', 'type');
  expectCode(t, decodeRaw({ type: 7 }), 'invalid-field', 'type');
});

test('a frame that is not a map is malformed', (t) => {
  expectCode(t, decodeRaw([1, 2, 3]), 'malformed');
  expectCode(t, decodeRaw('hello'), 'malformed');
  expectCode(t, decodeRaw(null), 'malformed');
});

test('wrong field types are invalid-field with the path', (t) => {
  const e = expectCode(t, decodeRaw({ ...update([1]), payload: { ...(update([1])['payload'] as object), update: 'nope' } }), 'invalid-field', 'payload.update');
  t.is(e?.message, 'invalid field "payload.update": expected float32 Tensor, got string');
  expectCode(t, decodeRaw({ type: 'pull', credit: '3' }), 'invalid-field', 'credit');
  expectCode(t, decodeRaw({ type: 'pull', credit: 1.5 }), 'invalid-field', 'credit');
  expectCode(t, decodeRaw({ type: 'pull', credit: 0 }), 'invalid-field', 'credit');
  expectCode(t, decodeRaw({ type: 'pull', credit: 1025 }), 'invalid-field', 'credit');
  expectCode(t, decodeRaw({ type: 'pull' }), 'invalid-field', 'credit');
  expectCode(t, decodeRaw({ type: 'heartbeat', time: -1 }), 'invalid-field', 'time');
  expectCode(t, decodeRaw({ type: 'failure', leaseId: '', shardId: 's', reason: 'r', retryable: true }), 'invalid-field', 'leaseId');
  expectCode(t, decodeRaw({ type: 'failure', leaseId: 'x'.repeat(257), shardId: 's', reason: 'r', retryable: true }), 'invalid-field', 'leaseId');
  expectCode(t, decodeRaw({ type: 'failure', leaseId: 'l', shardId: 's', reason: 'r'.repeat(4097), retryable: true }), 'invalid-field', 'reason');
  expectCode(t, decodeRaw({ type: 'blob-request', hash: HASH.toUpperCase() }), 'invalid-field', 'hash');
  expectCode(t, decodeRaw({ type: 'release', leaseIds: ['a', 5] }), 'invalid-field', 'leaseIds[1]');
  expectCode(t, decodeRaw({ type: 'job-control', jobId: 'j', action: 'explode' }), 'invalid-field', 'action');
  const hello = { type: 'hello', protocolVersion: 1, name: 'w', capabilities: { backend: 'cuda', threads: 1, tasks: ['score'] } };
  const e2 = expectCode(t, decodeRaw(hello), 'invalid-field', 'capabilities.backend');
  t.regex(e2?.message ?? '', /got "cuda"/);
});

test('nested discriminators and items report their path', (t) => {
  const lease = (task: unknown) => ({ type: 'lease', leaseId: 'l', shardId: 's', jobId: 'j', deadline: 1, attempt: 1, task });
  expectCode(t, decodeRaw(lease({ kind: 'mine' })), 'invalid-field', 'task.kind');
  const items = [{ id: 'a', prompt: 'p', response: 'r' }, { id: 'b', features: Tensor.int32([1]) }];
  expectCode(t, decodeRaw(lease({ kind: 'score', modelHash: HASH, batchSize: 1, items })), 'invalid-field', 'task.items[1].features');
  const both = [{ id: 'a', prompt: 'p', response: 'r', features: Tensor.float32([1]) }];
  expectCode(t, decodeRaw(lease({ kind: 'score', modelHash: HASH, batchSize: 1, items: both })), 'invalid-field', 'task.items[0]');
  // The matrix form: rows must match the ids, and a task carries exactly one form.
  const matrix = { ids: ['a', 'b'], features: Tensor.float32(new Float32Array(6), [3, 2]) };
  expectCode(t, decodeRaw(lease({ kind: 'score', modelHash: HASH, batchSize: 1, matrix })), 'shape-mismatch', 'task.matrix.features');
  const ok = { ids: ['a', 'b', 'c'], features: Tensor.float32(new Float32Array(6), [3, 2]) };
  expectCode(t, decodeRaw(lease({ kind: 'score', modelHash: HASH, batchSize: 1, matrix: ok, items: [{ id: 'a', prompt: 'p', response: 'r' }] })), 'invalid-field', 'task.items');
  expectCode(t, decodeRaw(lease({ kind: 'score', modelHash: HASH, batchSize: 1 })), 'invalid-field', 'task.items');
  // A score task names exactly one of a bundle and a scorer; a scorer takes text items only.
  const text = [{ id: 'a', prompt: 'p', response: 'r' }];
  const scorer = { model: 'Skywork/Skywork-Reward-Llama-3.1-8B-v0.2', output: 'reward' };
  t.notThrows(() => decodeRaw(lease({ kind: 'score', scorer, batchSize: 1, items: text })));
  expectCode(t, decodeRaw(lease({ kind: 'score', batchSize: 1, items: text })), 'invalid-field', 'task.modelHash');
  expectCode(t, decodeRaw(lease({ kind: 'score', modelHash: HASH, scorer, batchSize: 1, items: text })), 'invalid-field', 'task.modelHash');
  expectCode(t, decodeRaw(lease({ kind: 'score', scorer, batchSize: 1, matrix: ok })), 'invalid-field', 'task.scorer');
  expectCode(t, decodeRaw(lease({ kind: 'score', scorer: { ...scorer, output: 'embedding' }, batchSize: 1, items: text })), 'invalid-field', 'task.scorer.output');
  // The hello names the server's API from the closed set.
  const hello = (scorerInfo: unknown) => ({ type: 'hello', protocolVersion: 1, name: 'w', capabilities: { backend: 'wasm', threads: 1, tasks: ['score'], scorer: scorerInfo } });
  t.notThrows(() => decodeRaw(hello({ api: 'tei', model: 'OpenAssistant/reward-model-deberta-v3-large-v2' })));
  expectCode(t, decodeRaw(hello({ api: 'triton', model: 'm' })), 'invalid-field', 'capabilities.scorer.api');
  expectCode(t, decodeRaw(hello({ api: 'tei', model: '' })), 'invalid-field', 'capabilities.scorer.model');
  const train = {
    kind: 'train', modelHash: HASH, modelVersion: 1, client: 0, local: { steps: 1, batchSize: 1, lr: 0.1, momentum: 0.5 },
    data: { source: 'central', rows: Tensor.float32(new Float32Array(6), [3, 2]), labels: Tensor.int32([1, 2]) },
  };
  expectCode(t, decodeRaw(lease(train)), 'shape-mismatch', 'task.data.labels');
  expectCode(t, decodeRaw(lease({ ...train, local: { ...train.local, momentum: 1 } })), 'invalid-field', 'task.local.momentum');
  expectCode(t, decodeRaw(lease({ ...train, data: { source: 'disk', name: 'x' } })), 'invalid-field', 'task.data.source');
});

test('NaN and Infinity in an update are non-finite, naming the index', (t) => {
  for (const bad of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    const e = expectCode(t, decodeRaw(update([0, 1, bad, 3])), 'non-finite', 'payload.update');
    t.regex(e?.message ?? '', /index 2/);
    expectCode(t, () => encodeMessage(update([0, 1, bad, 3]) as Message), 'non-finite', 'payload.update');
  }
  expectCode(t, decodeRaw(update([1, 2], { momentum: Tensor.float32([0, Number.NaN]) })), 'non-finite', 'payload.momentum');
  const scores = { type: 'result', leaseId: 'l', shardId: 's', payload: { kind: 'scores', scores: Tensor.float32([1, Number.NaN]) } };
  expectCode(t, decodeRaw(scores), 'non-finite', 'payload.scores');
  expectCode(t, decodeRaw(update([1], { loss: Number.NaN })), 'invalid-field', 'payload.loss');
});

test('update and momentum of different sizes are shape-mismatch', (t) => {
  expectCode(t, decodeRaw(update([1, 2], { momentum: Tensor.float32([1, 2, 3]) })), 'shape-mismatch', 'payload.momentum');
});

test('oversize frames are refused before decoding', (t) => {
  const frame = encodeMessage({ type: 'failure', leaseId: 'l', shardId: 's', reason: 'x'.repeat(200), retryable: false });
  const e = expectCode(t, () => decodeMessage(frame, { maxBytes: 100 }), 'oversize');
  t.regex(e?.message ?? '', /exceeds the 100-byte limit/);
  t.notThrows(() => decodeMessage(frame, { maxBytes: frame.byteLength }));
  // The size check comes first: garbage over the limit is oversize, not malformed.
  expectCode(t, () => decodeMessage(new Uint8Array(101).fill(0xc1), { maxBytes: 100 }), 'oversize');
  t.is(DEFAULT_MAX_FRAME_BYTES, 256 * 1024 * 1024);
  // The sender can enforce the peer's limit too.
  expectCode(t, () => encodeMessage({ type: 'failure', leaseId: 'l', shardId: 's', reason: 'x'.repeat(200), retryable: false }, { maxBytes: 100 }), 'oversize');
});

test('tensor extension: a 16-byte extension takes the fixext path, and decoded tensors still own aligned memory', (t) => {
  // uint8 [2] is 16 extension bytes (dtype, ndim, one dim, the padding byte, 7 bytes of padding, 2 elements): fixext 16
  // (no message field is uint8).
  const frame = raw.pack({ t: Tensor.uint8([7, 9], [2]), s: Tensor.uint8([1], []) });
  t.is(frame[frame.indexOf(TENSOR_EXT_TYPE) - 1], 0xd8);
  const back: unknown = raw.unpack(frame);
  const v = (back as { t: unknown; s: unknown });
  t.true(v.t instanceof Tensor && v.s instanceof Tensor);
  if (!(v.t instanceof Tensor) || !(v.s instanceof Tensor)) return;
  t.deepEqual([v.t.dtype, [...v.t.shape], Array.from(v.t.data)], ['uint8', [2], [7, 9]]);
  t.deepEqual([v.s.dtype, [...v.s.shape], Array.from(v.s.data)], ['uint8', [], [1]]);
  t.not(v.t.data.buffer, frame.buffer);
});

/** A frame with one float32 tensor [1, 2, 3]; returns it and the offset of the tensor's ext payload. */
function tensorFrame(): { frame: Uint8Array; at: number } {
  const frame = encodeMessage({ type: 'result', leaseId: 'l', shardId: 's', payload: { kind: 'scores', scores: Tensor.float32([1, 2, 3]) } });
  // ext 8 header: 0xc7, length 26 (2 + 4 + 1 + 7 padding + 12), type; then dtype 0, ndim 1, dim 3 (LE).
  const needle = [0xc7, 26, TENSOR_EXT_TYPE, 0, 1, 3, 0, 0, 0];
  for (let i = 0; i + needle.length <= frame.length; i++) {
    if (needle.every((b, j) => frame[i + j] === b)) return { frame: frame.slice(), at: i + 3 };
  }
  throw new Error('tensor not found in frame');
}

test('a tensor header that disagrees with its byte length is bad-tensor', (t) => {
  const { frame, at } = tensorFrame();
  t.notThrows(() => decodeMessage(frame));
  const wrongDim = frame.slice();
  wrongDim[at + 2] = 4; // shape [4] but 12 data bytes
  const e = expectCode(t, () => decodeMessage(wrongDim), 'bad-tensor');
  t.regex(e?.message ?? '', /needs 16 bytes, got 12/);
  const int32 = frame.slice();
  int32[at] = 1; // int32 [3] is also 12 bytes: legal, but the schema wants float32
  expectCode(t, () => decodeMessage(int32), 'invalid-field', 'payload.scores');
  const uint8 = frame.slice();
  uint8[at] = 2; // uint8 [3] needs 3 bytes
  expectCode(t, () => decodeMessage(uint8), 'bad-tensor');
  const badDtype = frame.slice();
  badDtype[at] = 9;
  expectCode(t, () => decodeMessage(badDtype), 'bad-tensor');
  const rank = frame.slice();
  rank[at + 1] = 9;
  expectCode(t, () => decodeMessage(rank), 'bad-tensor');
  const twoDims = frame.slice();
  twoDims[at + 1] = 2; // the second dim is read from the padding byte and what follows
  expectCode(t, () => decodeMessage(twoDims), 'bad-tensor');
  const pad = frame.slice();
  pad[at + 6] = 8; // at most 7 padding bytes before the elements
  t.regex(expectCode(t, () => decodeMessage(pad), 'bad-tensor')?.message ?? '', /8 padding bytes before the elements \(at most 7\)/);
});

test('tensor elements start 8-aligned in the frame; tensorViews reads large ones where they lie, others are copied once', (t) => {
  for (const n of [1, 3, 16_384, 16_385, 100_000]) {
    const update = Float32Array.from({ length: n }, (_, i) => i - 0.5);
    const frame = encodeMessage({ type: 'result', leaseId: 'l'.repeat(n % 7 + 1), shardId: 's', payload: { kind: 'update', update: Tensor.float32(update), samples: 1, loss: 0, baseVersion: 0 } });
    const bytes = Buffer.from(frame); // a frame of its own (its buffer's offset 0, as a received frame of this size)
    const at = bytes.indexOf(Buffer.from(update.buffer, 0, Math.min(16, update.byteLength)));
    t.is(at % 8, 0, `${n} values: elements at ${at}`);
    const before = tensorDecodeCounts();
    const viewed = decodeMessage(bytes, { direction: 'worker', tensorViews: true });
    const copied = decodeMessage(bytes, { direction: 'worker' });
    const after = tensorDecodeCounts();
    if (viewed.type !== 'result' || viewed.payload.kind !== 'update' || copied.type !== 'result' || copied.payload.kind !== 'update') return t.fail();
    const large = n * 4 >= MIN_VIEW_BYTES;
    t.deepEqual({ views: after.views - before.views, copies: after.copies - before.copies }, { views: large ? 1 : 0, copies: large ? 1 : 2 }, `${n} values`);
    t.is(viewed.payload.update.data.buffer === bytes.buffer, large, `${n} values: viewed in the frame`);
    t.not(copied.payload.update.data.buffer, bytes.buffer);
    t.deepEqual(viewed.payload.update.data, update);
    t.deepEqual(copied.payload.update.data, update);
  }
  // Not aligned where it lies (the frame at an odd offset of its buffer): copied, same values.
  const update = new Float32Array(MIN_VIEW_BYTES / 4).fill(0.25);
  const frame = encodeMessage({ type: 'result', leaseId: 'l', shardId: 's', payload: { kind: 'update', update: Tensor.float32(update), samples: 1, loss: 0, baseVersion: 0 } });
  const shifted = new Uint8Array(frame.byteLength + 1).subarray(1);
  shifted.set(frame);
  const before = tensorDecodeCounts();
  const m = decodeMessage(shifted, { direction: 'worker', tensorViews: true });
  t.deepEqual(tensorDecodeCounts(), { views: before.views, copies: before.copies + 1 });
  t.true(m.type === 'result' && m.payload.kind === 'update' && m.payload.update.data.every((v) => v === 0.25));
});

test('extra unknown keys are rejected at every level', (t) => {
  const e = expectCode(t, decodeRaw({ type: 'pull', credit: 1, admin: true }), 'invalid-field', 'admin');
  t.is(e?.message, 'invalid field "admin": unknown field');
  expectCode(t, decodeRaw(update([1], { bonus: 1 })), 'invalid-field', 'payload.bonus');
  const hello = { type: 'hello', protocolVersion: 1, name: 'w', capabilities: { backend: 'cpu', threads: 1, tasks: ['score'], root: 1 } };
  expectCode(t, decodeRaw(hello), 'invalid-field', 'capabilities.root');
  expectCode(t, decodeRaw({ type: 'pull', credit: 1, __proto__x: 1 }), 'invalid-field');
  // msgpackr renames a "__proto__" key to "__proto_"; either way it is an unknown field.
  const proto = new Uint8Array([0x83, 0xa4, ...Buffer.from('type'), 0xa4, ...Buffer.from('pull'), 0xa6, ...Buffer.from('credit'), 0x01, 0xa9, ...Buffer.from('__proto__'), 0x80]);
  expectCode(t, () => decodeMessage(proto), 'invalid-field', '__proto_');
  t.is(Object.getPrototypeOf({}), Object.prototype);
});

test('encodeMessage refuses invalid messages', (t) => {
  expectCode(t, () => encodeMessage({ type: 'pull', credit: 0 }), 'invalid-field', 'credit');
  expectCode(t, () => encodeMessage({ type: 'nope' } as unknown as Message), 'unknown-type');
  expectCode(t, () => encodeMessage({ type: 'pull', credit: 1, extra: 1 } as unknown as Message), 'invalid-field', 'extra');
  const blob = { type: 'blob', hash: HASH, offset: 0, total: 10, data: new Uint8Array(4), final: true } as const;
  expectCode(t, () => encodeMessage(blob), 'invalid-field', 'final');
  expectCode(t, () => encodeMessage({ ...blob, total: 2, final: false }), 'invalid-field', 'data');
  t.is(decodeMessage(encodeMessage({ ...blob, total: 4 })).type, 'blob');
});

test('frames that are not bytes are malformed', (t) => {
  for (const v of [undefined, null, 'frame', 42, {}, [1, 2], new Uint16Array(4), new DataView(new ArrayBuffer(4))]) {
    const r = safeDecodeMessage(v);
    t.false(r.ok);
    if (!r.ok) t.is(r.error.code, 'malformed');
  }
  expectCode(t, () => decodeMessage(new Uint8Array(0)), 'malformed');
});

test('trailing bytes, several values, truncation and deep nesting are malformed', (t) => {
  const frame = encodeMessage({ type: 'pull', credit: 2 });
  const twice = new Uint8Array([...frame, ...frame]);
  t.regex(t.throws(() => decodeMessage(twice), { instanceOf: ProtocolError })?.message ?? '', /trailing/);
  expectCode(t, () => decodeMessage(new Uint8Array([...frame, 0x00])), 'malformed');
  expectCode(t, () => decodeMessage(frame.subarray(0, frame.length - 1)), 'malformed');
  expectCode(t, () => decodeMessage(new Uint8Array(1_000_000).fill(0x91)), 'malformed');
  // A huge declared length with nothing behind it must fail fast, not allocate.
  expectCode(t, () => decodeMessage(new Uint8Array([0xdd, 0xff, 0xff, 0xff, 0xff])), 'malformed');
  expectCode(t, () => decodeMessage(new Uint8Array([0xdf, 0xff, 0xff, 0xff, 0xff])), 'malformed');
  expectCode(t, () => decodeMessage(new Uint8Array([0xdb, 0xff, 0xff, 0xff, 0xff, 0x61])), 'malformed');
});

test('msgpackr-specific extensions and non-string keys are malformed', (t) => {
  const structured = new Packr({ structuredClone: true, useRecords: false });
  const cyclic: Record<string, unknown> = { type: 'pull', credit: 1 };
  cyclic['self'] = cyclic;
  expectCode(t, () => decodeMessage(structured.pack(cyclic)), 'malformed');
  const withRecords = new Packr({ useRecords: true });
  expectCode(t, () => decodeMessage(withRecords.pack({ type: 'pull', credit: 1 })), 'malformed');
  const more = new Packr({ moreTypes: true, useRecords: false });
  expectCode(t, () => decodeMessage(more.pack({ type: 'pull', credit: new Set([1]) })), 'malformed');
  expectCode(t, () => decodeMessage(pack({ type: 'heartbeat', time: new Date(0) })), 'malformed'); // timestamp ext -1
  expectCode(t, () => decodeMessage(new Uint8Array([0x81, 0x01, 0x02])), 'malformed'); // int key
});

test('64-bit integers decode as bigint and are invalid-field, not a crash', (t) => {
  const frame = new Uint8Array([0x82, 0xa4, ...Buffer.from('type'), 0xa9, ...Buffer.from('heartbeat'),
    0xa4, ...Buffer.from('time'), 0xcf, 0xff, 0, 0, 0, 0, 0, 0, 0]);
  const e = expectCode(t, () => decodeMessage(frame), 'invalid-field', 'time');
  t.regex(e?.message ?? '', /got bigint/);
});

test('safeDecodeMessage returns results instead of throwing', (t) => {
  const ok = safeDecodeMessage(encodeMessage({ type: 'pull', credit: 9 }), { direction: 'worker' });
  t.deepEqual(ok, { ok: true, message: { type: 'pull', credit: 9 } });
  const bad = safeDecodeMessage(new Uint8Array([0xc1]));
  t.false(bad.ok);
  if (!bad.ok) t.true(isProtocolError(bad.error));
});

test('parseMessage works on plain values and optional fields may be explicitly undefined', (t) => {
  const m = parseMessage({ type: 'heartbeat', time: 5, inFlight: undefined }, 'worker');
  t.is(m.type, 'heartbeat');
  const decoded = decodeMessage(encodeMessage({ type: 'heartbeat', time: 5, inFlight: undefined }));
  t.deepEqual(decoded, { type: 'heartbeat', time: 5, inFlight: undefined });
});

test('Tensor constructor checks shape and data type', (t) => {
  t.deepEqual(Tensor.float32([1, 2, 3, 4, 5, 6], [2, 3]).shape, [2, 3]);
  t.deepEqual(Tensor.int32([1, 2]).shape, [2]);
  t.deepEqual(new Tensor('float32', new Float32Array(1), []).shape, []);
  t.throws(() => Tensor.float32([1, 2, 3], [2, 2]), { instanceOf: RangeError, message: /has 4 elements but data has 3/ });
  t.throws(() => Tensor.float32([1, 2], [-1, -2]), { instanceOf: RangeError });
  t.throws(() => Tensor.float32([1, 2], [2.5]), { instanceOf: RangeError });
  t.throws(() => Tensor.float32([], [0, 2 ** 53]), { instanceOf: RangeError });
  t.throws(() => Tensor.float32([1], [1, 1, 1, 1, 1, 1, 1, 1, 1]), { instanceOf: RangeError, message: /at most 8/ });
  t.throws(() => new Tensor('float32', new Int32Array(2) as unknown as Float32Array), { instanceOf: TypeError });
  const shape = [2];
  const tensor = Tensor.uint8([1, 2], shape);
  shape[0] = 5;
  t.deepEqual(tensor.shape, [2]); // shape is copied and frozen
  t.true(Object.isFrozen(tensor.shape));
  t.deepEqual(JSON.parse(JSON.stringify(tensor)), { dtype: 'uint8', shape: [2], size: 2 });
});

test('assertTensor checks dtype and shape', (t) => {
  const w = Tensor.float32(new Float32Array(12), [3, 4]);
  t.notThrows(() => assertTensor(w, 'float32', [3, 4]));
  t.notThrows(() => assertTensor(w, 'float32', [null, 4]));
  t.notThrows(() => assertTensor(w, 'float32'));
  const e = expectCode(t, () => assertTensor(w, 'float32', [3, 5], 'task.weights'), 'shape-mismatch', 'task.weights');
  t.is(e?.message, 'shape mismatch in "task.weights": expected [3,5], got [3,4]');
  expectCode(t, () => assertTensor(w, 'float32', [12]), 'shape-mismatch');
  expectCode(t, () => assertTensor(w, 'int32', [3, 4]), 'invalid-field', 'tensor');
  const e2 = expectCode(t, () => assertTensor('weights', 'float32', [3, 4], 'w'), 'invalid-field', 'w');
  t.is(e2?.message, 'invalid field "w": expected float32 Tensor, got string');
});

test('assertFinite names the first bad index', (t) => {
  t.notThrows(() => assertFinite(Tensor.float32([1, -0, 3.4e38]), 'x'));
  t.notThrows(() => assertFinite(Tensor.int32([1, 2]), 'x'));
  const e = expectCode(t, () => assertFinite(Tensor.float32([1, 2, Number.NEGATIVE_INFINITY, Number.NaN]), 'payload.update'), 'non-finite', 'payload.update');
  t.is(e?.message, 'non-finite value in "payload.update" at index 2: -Infinity');
});

test('protocol version check and error messages for the peer', (t) => {
  t.notThrows(() => assertProtocolVersion(PROTOCOL_VERSION));
  expectCode(t, () => assertProtocolVersion(PROTOCOL_VERSION + 1), 'version', 'protocolVersion');
  // A hello with a future version still decodes, so the coordinator can answer it properly.
  const hello = decodeMessage(encodeMessage({ type: 'hello', protocolVersion: 99, name: 'w', capabilities: { backend: 'wasm', threads: 1, tasks: ['score'] } }));
  t.is(hello.type === 'hello' ? hello.protocolVersion : 0, 99);
  const reply = errorMessage(new ProtocolError('non-finite', 'bad'), 'lease-9');
  t.deepEqual(reply, { type: 'error', code: 'non-finite', message: 'bad', ref: 'lease-9' });
  t.deepEqual(decodeMessage(encodeMessage(reply)), reply);
  t.deepEqual(errorMessage('boom'), { type: 'error', code: 'internal', message: 'internal error' });
  t.deepEqual(errorMessage(new Error('ENOENT /etc/secret')), { type: 'error', code: 'internal', message: 'internal error' });
});

test('ProtocolError messages are one line', (t) => {
  const e = new ProtocolError('malformed', 'line one\nline two\r\n  three');
  t.is(e.message, 'line one line two three');
  t.is(e.name, 'ProtocolError');
  t.true(e instanceof Error);
  t.false(isProtocolError(new Error('x')));
});

test('a missing tensor is reported as a missing field', (t) => {
  const e = expectCode(t, () => parseMessage({ type: 'result', leaseId: 'l', shardId: 's', payload: { kind: 'scores' } }), 'invalid-field', 'payload.scores');
  t.is(e?.message, 'invalid field "payload.scores": missing required field');
  const e2 = expectCode(t, () => parseMessage({ type: 'result', leaseId: 'l', shardId: 's', payload: { kind: 'scores', scores: Tensor.int32([1]) } }), 'invalid-field');
  t.is(e2?.message, 'invalid field "payload.scores": expected float32 Tensor, got int32 Tensor [1]');
});
