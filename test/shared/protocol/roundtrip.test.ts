import test from 'ava';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  COORDINATOR_MESSAGE_TYPES,
  MESSAGE_TYPES,
  WORKER_MESSAGE_TYPES,
  coordinatorMessageSchema,
  workerMessageSchema,
  Tensor,
  decodeMessage,
  encodeMessage,
  messageSchema,
  type Message,
} from '../../../shared/protocol/index.js';
import { messageArbs, normalize, tensorsOf, variantArbs } from './arbitraries.js';

/** decode(encode(m)) equals m; decoded tensors are aligned and own memory the frame does not. */
function checkRoundtrip(message: Message): void {
  const frame = encodeMessage(message);
  const decoded = decodeMessage(frame);
  assert.deepStrictEqual(normalize(decoded), normalize(message));
  assert.equal(messageSchema.safeParse(decoded).success, true);

  const tensors = tensorsOf(decoded);
  assert.equal(tensors.length, tensorsOf(message).length);
  for (const { path, tensor } of tensors) {
    assert.equal(tensor.data.byteOffset % tensor.data.BYTES_PER_ELEMENT, 0, `${path} is unaligned`);
    assert.notEqual(tensor.data.buffer, frame.buffer, `${path} shares the frame's buffer`);
    // One tensor per buffer: it can be transferred to a worker thread on its own.
    assert.equal(tensor.data.byteLength, tensor.data.buffer.byteLength, `${path} does not own its whole buffer`);
  }
  if (decoded.type === 'blob') assert.notEqual(decoded.data.buffer, frame.buffer);

  // Scribbling over the frame afterwards must not reach the decoded message.
  const before = normalize(decoded);
  frame.fill(0xa5);
  assert.deepStrictEqual(normalize(decoded), before);
}

test('there is an arbitrary for every message type', (t) => {
  t.deepEqual(Object.keys(messageArbs).sort(), [...MESSAGE_TYPES].sort());
});

test('direction lists agree with the direction unions', (t) => {
  t.deepEqual([...new Set([...WORKER_MESSAGE_TYPES, ...COORDINATOR_MESSAGE_TYPES])].sort(), [...MESSAGE_TYPES].sort());
  for (const type of MESSAGE_TYPES) {
    const arb: fc.Arbitrary<Message> = messageArbs[type];
    const [sample] = fc.sample(arb, { numRuns: 1, seed: 1 });
    t.is(workerMessageSchema.safeParse(sample).success, (WORKER_MESSAGE_TYPES as readonly string[]).includes(type), type);
    t.is(coordinatorMessageSchema.safeParse(sample).success, (COORDINATOR_MESSAGE_TYPES as readonly string[]).includes(type), type);
  }
});

for (const type of MESSAGE_TYPES) {
  test(`roundtrip: ${type}`, (t) => {
    let runs = 0;
    fc.assert(
      fc.property(messageArbs[type], (m) => {
        runs++;
        assert.equal(m.type, type);
        checkRoundtrip(m);
      }),
      { numRuns: 150 },
    );
    t.is(runs, 150);
  });
}

for (const [name, arb] of Object.entries(variantArbs)) {
  test(`roundtrip: ${name}`, (t) => {
    let runs = 0;
    fc.assert(
      fc.property(arb, (m) => {
        runs++;
        checkRoundtrip(m);
      }),
      { numRuns: 100 },
    );
    t.is(runs, 100);
  });
}

test('roundtrip keeps exact float32 bits (NaN payloads, -0, subnormals) in coordinator tensors', (t) => {
  const bits = new Uint32Array([0x7fc00001, 0xff800000, 0x80000000, 0x00000001, 0x3f800000, 0x7f7fffff]);
  const weights = new Tensor('float32', new Float32Array(bits.buffer));
  const frame = encodeMessage({ type: 'weights', jobId: 'j', modelHash: '0'.repeat(64), modelVersion: 0, weights });
  const m = decodeMessage(frame, { direction: 'coordinator' });
  if (m.type !== 'weights') return t.fail(`decoded a ${m.type} message`);
  t.deepEqual(Array.from(new Uint32Array(m.weights.data.buffer, m.weights.data.byteOffset, m.weights.size)), Array.from(bits));
});

test('tensors of every dtype and rank 0..8 roundtrip with their shape', (t) => {
  const shapes = [[], [0], [3], [2, 3], [1, 2, 1, 2], [1, 1, 1, 1, 1, 1, 1, 2], [4, 0, 1000]];
  for (const shape of shapes) {
    const n = shape.reduce((a, b) => a * b, 1);
    const rows = Tensor.float32(Float32Array.from({ length: n }, (_, i) => i / 3), shape);
    const labels = Tensor.int32(Int32Array.from({ length: n }, (_, i) => -i), shape);
    const item = { id: 'x', features: rows };
    const frame = encodeMessage({ type: 'lease', leaseId: 'l', shardId: 's', jobId: 'j', deadline: 0, attempt: 1,
      task: { kind: 'score', modelHash: 'f'.repeat(64), batchSize: 1, items: [item] } });
    const decoded = decodeMessage(frame);
    t.deepEqual(normalize(decoded), normalize({ type: 'lease', leaseId: 'l', shardId: 's', jobId: 'j', deadline: 0, attempt: 1,
      task: { kind: 'score', modelHash: 'f'.repeat(64), batchSize: 1, items: [item] } }));
    t.deepEqual(tensorsOf(decoded)[0]?.tensor.shape, shape);
    t.is(labels.size, n);
  }
  const bytes = Tensor.uint8([1, 2, 3, 255], [2, 2]);
  t.deepEqual(Array.from(bytes.data), [1, 2, 3, 255]);
});

test('decodes a frame placed at an odd byte offset inside a larger buffer', (t) => {
  const update = Tensor.float32(Float32Array.from({ length: 257 }, (_, i) => Math.sin(i)));
  const momentum = Tensor.float32(Float32Array.from({ length: 257 }, (_, i) => Math.cos(i)));
  const message: Message = {
    type: 'result', leaseId: 'lease-1', shardId: 'shard-1',
    payload: { kind: 'update', update, momentum, samples: 32, loss: 0.25, baseVersion: 7 },
  };
  const frame = encodeMessage(message);
  for (const offset of [1, 3, 5, 7]) {
    const big = new ArrayBuffer(frame.byteLength + offset + 9);
    new Uint8Array(big).fill(0xee).set(frame, offset);
    for (const view of [new Uint8Array(big, offset, frame.byteLength), Buffer.from(big, offset, frame.byteLength)]) {
      const decoded = decodeMessage(view, { direction: 'worker' });
      t.deepEqual(normalize(decoded), normalize(message));
      for (const { tensor } of tensorsOf(decoded)) {
        t.is(tensor.data.byteOffset % 4, 0);
        t.not(tensor.data.buffer, big);
        t.true(tensor.data instanceof Float32Array);
      }
    }
  }
  // A frame handed over as a bare ArrayBuffer (what browser socket.io clients receive).
  const copy = frame.slice().buffer;
  t.deepEqual(normalize(decodeMessage(copy)), normalize(message));
});

test('decoding does not change the caller\'s frame object', (t) => {
  const frame = encodeMessage({ type: 'pull', credit: 3 });
  const keysBefore = Object.keys(frame);
  decodeMessage(frame);
  t.deepEqual(Object.keys(frame), keysBefore);
  t.false('dataView' in frame);
});
