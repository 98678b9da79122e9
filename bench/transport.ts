// Transport: 4 MB training updates and 100-byte round trips over loopback, through fedpool's protocol beside raw `ws`,
// measured alternately in one run. The receiving end is a child process (so each end has its own thread):
//   raw      — a `ws` server that counts bytes (throughput) or echoes (round trip); the client sends bare binary.
//   fedpool  — a socket.io server and client with the coordinator's and the worker's options (websocket only, no
//              compression), every frame made by encodeMessage and read by decodeMessage with its schema: a `result`
//              with a 1e6-float32 update (validated, finiteness included) and `heartbeat`s both ways.
// Throughput: the client sends N updates back to back and the clock stops at the receiver's small "done" message;
// MB/s = N × 4 MB / that time, after an untimed batch of 10. Round trip: the median of R sequential round trips after
// 200 untimed ones.
//
//   node --import=tsx bench/transport.ts [--updates 40] [--trips 2000] [--reps 3]
import { fork, type ChildProcess } from 'node:child_process';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { Server } from 'socket.io';
import { io, type Socket as ClientSocket } from 'socket.io-client';
import { WebSocket, WebSocketServer } from 'ws';
import { decodeMessage, encodeMessage } from '../shared/protocol/codec.js';
import { Tensor } from '../shared/protocol/tensor.js';

const D = 1_000_000;
const UPDATE_BYTES = 4 * D;
const MAX_FRAME = 64 << 20;
/** Updates sent untimed before each timed batch (the first large frames of a connection are slower). */
const WARM_UP_UPDATES = 10;

type Mode = 'raw' | 'fedpool';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 1) {
    console.error('usage: node --import=tsx bench/transport.ts [--updates N] [--trips N] [--reps N]');
    process.exit(2);
  }
  return v;
}

// ---- the receiving end (child process) ----------------------------------------------------------------------

function serveRaw(http: HttpServer): void {
  const wss = new WebSocketServer({ server: http, perMessageDeflate: false, maxPayload: MAX_FRAME });
  wss.on('connection', (ws) => {
    let bytes = 0;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (!isBinary) {
        // A text message: "count N" arms the counter, anything else is echoed (round trips).
        const text = data.toString();
        if (text.startsWith('count ')) bytes = -Number(text.slice(6));
        else ws.send(data, { binary: false });
        return;
      }
      if (bytes < 0) {
        bytes += data.byteLength;
        if (bytes >= 0) ws.send('done');
      } else ws.send(data);
    });
  });
}

function serveFedpool(http: HttpServer): void {
  const server = new Server(http, { transports: ['websocket'], serveClient: false, maxHttpBufferSize: MAX_FRAME, perMessageDeflate: false });
  server.on('connection', (socket) => {
    let expected = 0;
    socket.on('expect', (n: number) => (expected = n));
    socket.on('result', (frame: Uint8Array) => {
      const m = decodeMessage(frame, { direction: 'worker', tensorViews: true }); // as the coordinator decodes
      if (m.type !== 'result' || m.payload.kind !== 'update' || m.payload.update.size !== D) throw new Error('unexpected result');
      if (--expected === 0) socket.emit('done');
    });
    socket.on('heartbeat', (frame: Uint8Array) => {
      const m = decodeMessage(frame, { direction: 'worker' });
      if (m.type !== 'heartbeat') throw new Error('unexpected message');
      socket.emit('heartbeat', encodeMessage({ type: 'heartbeat', time: m.time }));
    });
  });
}

if (process.argv[2] === '--serve') {
  const mode = process.argv[3] as Mode;
  const http = createServer();
  if (mode === 'raw') serveRaw(http);
  else serveFedpool(http);
  http.listen(0, '127.0.0.1', () => process.send?.({ port: (http.address() as AddressInfo).port }));
  process.on('disconnect', () => process.exit(0));
} else {
  await main();
}

// ---- the sending end (this process) -------------------------------------------------------------------------

function startReceiver(mode: Mode): Promise<{ child: ChildProcess; port: number }> {
  const child = fork(fileURLToPath(import.meta.url), ['--serve', mode], { execArgv: process.execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve({ child, port: (m as { port: number }).port }));
    child.once('exit', (code) => reject(new Error(`receiver exited (${code})`)));
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

interface Figures {
  mbPerS: number;
  rttUs: number;
  frameBytes: number;
}

async function rawRun(port: number, updates: number, trips: number): Promise<Figures> {
  const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, maxPayload: MAX_FRAME });
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const payload = Buffer.from(Float32Array.from({ length: D }, (_, i) => Math.sin(i)).buffer);
  const next = (): Promise<Buffer> => new Promise((resolve) => ws.once('message', (d: Buffer) => resolve(d)));
  // Round trips: 100-byte text messages echoed.
  const ping = 'x'.repeat(100);
  const rtts: number[] = [];
  for (let i = 0; i < trips + 200; i++) {
    const t0 = performance.now();
    ws.send(ping);
    await next();
    if (i >= 200) rtts.push(performance.now() - t0);
  }
  // Throughput: a warm-up batch, then the timed one.
  const batch = async (n: number): Promise<number> => {
    ws.send(`count ${n * UPDATE_BYTES}`);
    const done = next();
    const t0 = performance.now();
    for (let i = 0; i < n; i++) ws.send(payload);
    await done;
    return (performance.now() - t0) / 1000;
  };
  await batch(WARM_UP_UPDATES);
  const seconds = await batch(updates);
  ws.close();
  return { mbPerS: (updates * UPDATE_BYTES) / 1e6 / seconds, rttUs: median(rtts) * 1000, frameBytes: ping.length };
}

async function fedpoolRun(port: number, updates: number, trips: number): Promise<Figures> {
  const socket: ClientSocket = io(`http://127.0.0.1:${port}`, { transports: ['websocket'], reconnection: false, forceNew: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', () => resolve());
    socket.once('connect_error', reject);
  });
  const update = Float32Array.from({ length: D }, (_, i) => Math.sin(i));
  const rtts: number[] = [];
  let frameBytes = 0;
  for (let i = 0; i < trips + 200; i++) {
    const t0 = performance.now();
    const frame = encodeMessage({ type: 'heartbeat', time: Date.now(), inFlight: 3 });
    frameBytes = frame.byteLength;
    const back = new Promise<Uint8Array>((resolve) => socket.once('heartbeat', (f: Uint8Array) => resolve(f)));
    socket.emit('heartbeat', frame);
    decodeMessage(await back, { direction: 'coordinator' });
    if (i >= 200) rtts.push(performance.now() - t0);
  }
  // Each update is encoded as a worker encodes its result: the encoder's one copy of the tensor into the frame.
  const batch = async (n: number): Promise<number> => {
    socket.emit('expect', n);
    const done = new Promise<void>((resolve) => socket.once('done', () => resolve()));
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      socket.emit('result', encodeMessage({ type: 'result', leaseId: `l${i}`, shardId: `s${i}`, payload: { kind: 'update', update: Tensor.float32(update), samples: 64, loss: 0.5, baseVersion: 3 } }));
    }
    await done;
    return (performance.now() - t0) / 1000;
  };
  await batch(WARM_UP_UPDATES);
  const seconds = await batch(updates);
  socket.close();
  return { mbPerS: (updates * UPDATE_BYTES) / 1e6 / seconds, rttUs: median(rtts) * 1000, frameBytes };
}

async function main(): Promise<void> {
  const updates = flag('updates', 40);
  const trips = flag('trips', 2000);
  const reps = flag('reps', 3);
  const results: Record<Mode, Figures[]> = { raw: [], fedpool: [] };
  for (let r = 0; r < reps; r++) {
    for (const mode of ['raw', 'fedpool'] as const) {
      const { child, port } = await startReceiver(mode);
      try {
        const f = mode === 'raw' ? await rawRun(port, updates, trips) : await fedpoolRun(port, updates, trips);
        results[mode].push(f);
        process.stderr.write(`${mode} rep ${r + 1}: ${f.mbPerS.toFixed(0)} MB/s, round trip ${f.rttUs.toFixed(0)} µs\n`);
      } finally {
        child.disconnect();
        await new Promise((resolve) => (child.exitCode !== null ? resolve(null) : child.once('exit', resolve)));
      }
    }
  }
  const mb = (m: Mode): number => median(results[m].map((f) => f.mbPerS));
  const rtt = (m: Mode): number => median(results[m].map((f) => f.rttUs));
  const range = (m: Mode, k: 'mbPerS' | 'rttUs'): string => `${Math.min(...results[m].map((f) => f[k])).toFixed(0)}–${Math.max(...results[m].map((f) => f[k])).toFixed(0)}`;
  console.log(`\nTransport on loopback, ${updates} updates of 4 MB and ${trips} round trips per run, median of ${reps} alternating runs (node ${process.version})\n`);
  console.log('| path | 4 MB updates, MB/s (range) | round trip p50, µs (range) | round-trip frame |');
  console.log('|:--|--:|--:|--:|');
  console.log(`| raw ws (bare binary; 100-byte text echo) | ${mb('raw').toFixed(0)} (${range('raw', 'mbPerS')}) | ${rtt('raw').toFixed(0)} (${range('raw', 'rttUs')}) | 100 B |`);
  console.log(`| fedpool protocol (socket.io, encode + decode with schemas) | ${mb('fedpool').toFixed(0)} (${range('fedpool', 'mbPerS')}) | ${rtt('fedpool').toFixed(0)} (${range('fedpool', 'rttUs')}) | ${results.fedpool[0]?.frameBytes ?? 0} B + socket.io framing |`);
  console.log(`\nfedpool / raw: throughput ${(mb('fedpool') / mb('raw')).toFixed(2)}×, round trip +${(rtt('fedpool') - rtt('raw')).toFixed(0)} µs`);
}
