// The protocol over real socket.io: a server and a client on a loopback port, typed events, binary frames.
import test from 'ava';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';
import { io, type Socket as ClientSocket } from 'socket.io-client';
import {
  PROTOCOL_VERSION,
  ProtocolError,
  Tensor,
  decodeMessage,
  encodeMessage,
  onMessage,
  sendMessage,
  type CoordinatorToWorkerEvents,
  type MessageOf,
  type WorkerToCoordinatorEvents,
} from '../../../shared/protocol/index.js';

const D = 2_000_000; // an 8 MB update: far over socket.io's default 1 MB frame limit

test('hello/welcome ack, a multi-megabyte tensor each way, and hostile frames rejected without harm', async (t) => {
  const http = createServer();
  const server = new Server<WorkerToCoordinatorEvents, CoordinatorToWorkerEvents>(http, { maxHttpBufferSize: 64 * 1024 * 1024 });
  const errors: ProtocolError[] = [];
  const results: MessageOf<'result'>[] = [];
  let resultsSeen: () => void = () => {};
  const gotResults = new Promise<void>((resolve) => (resultsSeen = resolve));

  server.on('connection', (socket) => {
    const onError = (e: ProtocolError) => errors.push(e);
    onMessage(socket, 'hello', (msg, reply) => {
      reply?.({ type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: `w-${msg.name}`, leaseMs: 30_000, heartbeatMs: 5_000, maxFrameBytes: 64 * 1024 * 1024 });
    }, onError, { direction: 'worker' });
    onMessage(socket, 'pull', (msg) => {
      t.is(msg.credit, 2);
      sendMessage(socket, { type: 'weights', jobId: 'J1', modelHash: 'a'.repeat(64), modelVersion: 3, weights: Tensor.float32(Float32Array.from({ length: D }, (_, j) => j * 0.5)) });
      sendMessage(socket, {
        type: 'lease', leaseId: 'L1', shardId: 'S1', jobId: 'J1', deadline: Date.now() + 30_000, attempt: 1,
        task: {
          kind: 'train', modelHash: 'a'.repeat(64), modelVersion: 3, client: 7,
          local: { steps: 1, batchSize: 8, lr: 0.1, momentum: 0 }, data: { source: 'worker', name: 'local' },
        },
      });
    }, onError, { direction: 'worker' });
    onMessage(socket, 'result', (msg) => {
      results.push(msg);
      resultsSeen();
    }, onError, { direction: 'worker' });
    onMessage(socket, 'heartbeat', () => {}, onError, { direction: 'worker' });
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address() as AddressInfo;
  const client: ClientSocket<CoordinatorToWorkerEvents, WorkerToCoordinatorEvents> = io(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false });
  t.teardown(() => {
    client.close();
    void server.close();
  });
  await new Promise<void>((resolve, reject) => {
    client.on('connect', resolve);
    client.on('connect_error', reject);
  });

  const reply = await client.timeout(5000).emitWithAck('hello', encodeMessage({ type: 'hello', protocolVersion: 1, name: 'a', capabilities: { backend: 'cpu', threads: 1, tasks: ['train'] } }));
  const welcome = decodeMessage(reply, { direction: 'coordinator' });
  t.is(welcome.type === 'welcome' ? welcome.workerId : '', 'w-a');

  // Hostile frames first: garbage, a message on the wrong event, NaN in an update. None may break the socket.
  client.emit('heartbeat', new Uint8Array([0xc1, 0xff, 0x00]));
  client.emit('heartbeat', encodeMessage({ type: 'pull', credit: 1 }));
  // encodeMessage refuses non-finite results, so patch a NaN into a valid frame: find 3.5's bytes in it.
  const valid = encodeMessage({ type: 'result', leaseId: 'L0', shardId: 'S0', payload: { kind: 'update', update: Tensor.float32(Float32Array.of(1.5, 2.5, 3.5, 4.5)), samples: 1, loss: 0, baseVersion: 0 } });
  const frame = Buffer.from(valid);
  const at = frame.indexOf(Buffer.from(Float32Array.of(3.5).buffer));
  t.true(at > 0);
  Buffer.from(Float32Array.of(Number.NaN).buffer).copy(frame, at);
  client.emit('result', frame);

  const weights = new Promise<MessageOf<'weights'>>((resolve) => onMessage(client, 'weights', resolve, (e) => t.fail(e.message), { direction: 'coordinator' }));
  const lease = new Promise<MessageOf<'lease'>>((resolve) => onMessage(client, 'lease', resolve, (e) => t.fail(e.message), { direction: 'coordinator' }));
  sendMessage(client, { type: 'pull', credit: 2 });
  const got = await lease;
  if (got.task.kind !== 'train') return t.fail('expected a train lease');
  const w = (await weights).weights.data;
  t.is(w.length, D);
  t.is(w.byteOffset % 4, 0);
  t.is(w[D - 1], (D - 1) * 0.5);

  sendMessage(client, { type: 'result', leaseId: got.leaseId, shardId: got.shardId, payload: { kind: 'update', update: Tensor.float32(w.map((v) => -v)), samples: 32, loss: 0.5, baseVersion: 3 } });
  await gotResults;
  t.is(results.length, 1, 'only the valid result arrives');
  const u = results[0].payload.kind === 'update' ? results[0].payload.update.data : new Float32Array();
  t.is(u.length, D);
  t.is(u[12345], -12345 * 0.5);
  t.deepEqual(errors.map((e) => e.code).sort(), ['malformed', 'malformed', 'non-finite']);
  t.true(client.connected, 'the worker stays connected after its bad frames were refused');
});
