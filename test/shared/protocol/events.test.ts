import test from 'ava';
import {
  EVENT_NAMES,
  PROTOCOL_VERSION,
  ProtocolError,
  Tensor,
  assertTensor,
  decodeMessage,
  encodeMessage,
  messageTypeOfEvent,
  onMessage,
  sendMessage,
  type CoordinatorToWorkerEvents,
  type Message,
  type MessageEmitter,
  type MessageReceiver,
  type WorkerToCoordinatorEvents,
} from '../../../shared/protocol/index.js';

/** A socket double: records emits and lets the test deliver events to listeners. */
class FakeSocket implements MessageEmitter, MessageReceiver {
  readonly emitted: { event: string; args: unknown[] }[] = [];
  readonly listeners = new Map<string, ((...args: unknown[]) => void)[]>();
  emit(event: string, ...args: unknown[]): boolean {
    this.emitted.push({ event, args });
    return true;
  }
  on(event: string, listener: (...args: unknown[]) => void): this {
    this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener]);
    return this;
  }
  off(event: string, listener: (...args: unknown[]) => void): this {
    this.listeners.set(event, (this.listeners.get(event) ?? []).filter((l) => l !== listener));
    return this;
  }
  deliver(event: string, ...args: unknown[]): void {
    for (const l of this.listeners.get(event) ?? []) l(...args);
  }
}

const hello: Message = { type: 'hello', protocolVersion: PROTOCOL_VERSION, name: 'w1', capabilities: { backend: 'cpu', threads: 2, tasks: ['score', 'train'] } };

test('sendMessage emits the encoded frame under the message type', (t) => {
  const socket = new FakeSocket();
  const size = sendMessage(socket, { type: 'pull', credit: 8 });
  t.is(socket.emitted.length, 1);
  const [sent] = socket.emitted;
  t.is(sent?.event, 'pull');
  t.true(sent?.args[0] instanceof Uint8Array);
  t.is((sent?.args[0] as Uint8Array).byteLength, size);
  t.deepEqual(decodeMessage(sent?.args[0]), { type: 'pull', credit: 8 });
  t.throws(() => sendMessage(socket, { type: 'pull', credit: 0 }), { instanceOf: ProtocolError });
  t.is(socket.emitted.length, 1); // nothing invalid was sent
});

test('the error message travels as peer-error; other events are named after their type', (t) => {
  const socket = new FakeSocket();
  sendMessage(socket, { type: 'error', code: 'unauthorized', message: 'bad token' });
  t.is(socket.emitted[0]?.event, 'peer-error');
  t.is(messageTypeOfEvent('peer-error'), 'error');
  t.is(messageTypeOfEvent('error'), undefined);
  for (const [type, event] of Object.entries(EVENT_NAMES)) if (type !== 'error') t.is<string, string>(event, type);
  // Compile-time: the event maps use the same names.
  const w: keyof WorkerToCoordinatorEvents = 'peer-error';
  const c: keyof CoordinatorToWorkerEvents = 'lease';
  t.deepEqual([w, c], ['peer-error', 'lease']);
});

test('onMessage decodes frames and passes typed messages to the handler', (t) => {
  const socket = new FakeSocket();
  const seen: number[] = [];
  const errors: ProtocolError[] = [];
  onMessage(socket, 'pull', (m) => void seen.push(m.credit), (e) => void errors.push(e));
  socket.deliver('pull', encodeMessage({ type: 'pull', credit: 3 }));
  socket.deliver('pull', Buffer.from(encodeMessage({ type: 'pull', credit: 4 }))); // Node gives Buffers
  socket.deliver('pull', encodeMessage({ type: 'pull', credit: 5 }).slice().buffer); // browsers give ArrayBuffers
  t.deepEqual(seen, [3, 4, 5]);
  t.deepEqual(errors, []);
});

test('onMessage reports bad frames and mismatched types via onError, never throwing', (t) => {
  const socket = new FakeSocket();
  const codes: string[] = [];
  let calls = 0;
  onMessage(socket, 'heartbeat', () => void calls++, (e) => void codes.push(e.code), { maxBytes: 64 });
  t.notThrows(() => {
    socket.deliver('heartbeat', new Uint8Array([1, 2, 3]));
    socket.deliver('heartbeat', 'not bytes');
    socket.deliver('heartbeat');
    socket.deliver('heartbeat', encodeMessage({ type: 'pull', credit: 1 }));
    socket.deliver('heartbeat', encodeMessage({ type: 'failure', leaseId: 'l', shardId: 's', reason: 'x'.repeat(100), retryable: true }));
  });
  t.is(calls, 0);
  t.deepEqual(codes, ['malformed', 'malformed', 'malformed', 'malformed', 'oversize']);
});

test('handler failures reach onError: ProtocolErrors as is, others wrapped as "handler"', async (t) => {
  const socket = new FakeSocket();
  const errors: ProtocolError[] = [];
  const boom = new Error('boom');
  onMessage(socket, 'result', (m) => {
    if (m.payload.kind === 'scores') throw boom;
    assertTensor(m.payload.update, 'float32', [10], 'payload.update');
  }, (e) => void errors.push(e));
  onMessage(socket, 'release', async () => {
    await Promise.resolve();
    throw new Error('async boom');
  }, (e) => void errors.push(e));
  socket.deliver('result', encodeMessage({ type: 'result', leaseId: 'l', shardId: 's', payload: { kind: 'scores', scores: Tensor.float32([1]) } }));
  socket.deliver('result', encodeMessage({ type: 'result', leaseId: 'l', shardId: 's', payload: { kind: 'update', update: Tensor.float32([1, 2]), samples: 1, loss: 0, baseVersion: 0 } }));
  socket.deliver('release', encodeMessage({ type: 'release', leaseIds: ['a'] }));
  await new Promise((resolve) => setTimeout(resolve, 10));
  t.deepEqual(errors.map((e) => e.code), ['handler', 'shape-mismatch', 'handler']);
  t.is(errors[0]?.cause, boom);
  t.regex(errors[2]?.message ?? '', /async boom/);
});

test('an onError that throws does not escape the listener', (t) => {
  const socket = new FakeSocket();
  const original = console.error;
  const logged: unknown[] = [];
  console.error = (...args: unknown[]) => void logged.push(args);
  try {
    onMessage(socket, 'pull', () => {}, () => {
      throw new Error('bad onError');
    });
    t.notThrows(() => socket.deliver('pull', new Uint8Array([0xc1])));
  } finally {
    console.error = original;
  }
  t.is(logged.length, 1);
});

test('hello can be answered through the ack with a validated reply', (t) => {
  const socket = new FakeSocket();
  onMessage(socket, 'hello', (m, reply) => {
    t.is(m.name, 'w1');
    reply?.({ type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: `id-${m.name}`, leaseMs: 30_000, heartbeatMs: 5_000, maxFrameBytes: 1 << 20 });
  }, (e) => t.fail(e.message));
  const replies: unknown[] = [];
  socket.deliver('hello', encodeMessage(hello), (frame: unknown) => void replies.push(frame));
  t.is(replies.length, 1);
  const welcome = decodeMessage(replies[0], { direction: 'coordinator' });
  t.is(welcome.type === 'welcome' ? welcome.workerId : '', 'id-w1');
  // Without an ack callback the handler gets no reply function.
  let sawReply: unknown = 'unset';
  onMessage(socket, 'hello', (_m, reply) => void (sawReply = reply), () => {});
  socket.deliver('hello', encodeMessage(hello));
  t.is(sawReply, undefined);
});

test('the returned function removes the listener', (t) => {
  const socket = new FakeSocket();
  let calls = 0;
  const stop = onMessage(socket, 'pull', () => void calls++, () => {});
  socket.deliver('pull', encodeMessage({ type: 'pull', credit: 1 }));
  stop();
  socket.deliver('pull', encodeMessage({ type: 'pull', credit: 1 }));
  t.is(calls, 1);
});
