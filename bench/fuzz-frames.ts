// Frame fuzzer (issue 13): random and mutated frames over real sockets against a running coordinator while an
// honest worker's jobs run, seeded. What a fuzzing connection sends:
//
// - socket.io connections authenticated as workers (most say hello first under one of two names, some never do):
//   random bytes on worker events; valid frames (encoded with the protocol's own encoder) with 1–4 byte mutations;
//   valid messages with one field made hostile (wrong types, huge numbers, NaN, ±Infinity, ids of 5,000 characters,
//   NaN tensors, wrong dtypes, unknown keys, missing keys, nesting past the limit), packed with msgpackr directly;
//   truncated frames; valid messages out of order or forged (a result before hello, a second hello, results,
//   failures and releases of lease ids that are not the sender's: made up, real ones issued earlier, and the honest
//   worker's live leases, with results that fit them);
//   unknown and coordinator-only events, and arguments that are not one binary frame; frames over the frame limit;
//   and now and then a flood of valid heartbeats past the connection's frame budget (rate limit);
// - socket.io connections without a token (refused at the upgrade);
// - raw TCP connections speaking websocket by hand, with and without the worker token: engine.io and socket.io
//   packets in text (events with JSON arguments, binary-attachment headers followed by random bytes, garbage,
//   invalid packet types, reserved event names) and malformed websocket frames (unmasked, reserved opcodes and bits,
//   invalid UTF-8, over-long control frames, a header claiming a payload of 2^40 bytes).
//
// The coordinator disconnects a connection after 10 protocol errors and when it outruns its frame budget, so the
// fuzzer opens connection after connection; `frames` counts the frames written on open connections.
//
//   node --import=tsx bench/fuzz-frames.ts [--frames 150000] [--seed 1] [--connections 6] [--max-frame-bytes 4194304]
//
// The benchmark runs the coordinator in a child process (this file with --serve-coordinator: startCoordinator with
// state ':memory:', a frame limit of --max-frame-bytes so oversize frames stay cheap, the default frame budget), and
// in this process the fuzzer, one honest worker that answers every lease correctly and a loop of honest jobs (each
// checked item by item) for as long as the fuzzer runs. It prints frames sent by kind, connections and the disconnects
// they suffered, protocol errors by code from /metrics, the honest jobs' outcome, the coordinator's RSS before, after
// and at its peak, and /healthz latency (probed from a third process, every 20 ms). test/server/fuzz-frames.test.ts runs fuzzFrames in the suite against an in-process coordinator.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Packr } from 'msgpackr';
import { io, type Socket } from 'socket.io-client';
import {
  EVENT_NAMES,
  PROTOCOL_VERSION,
  TENSOR_EXT_TYPE,
  Tensor,
  WORKER_MESSAGE_TYPES,
  decodeMessage,
  encodeMessage,
  onMessage,
  sendMessage,
  type LeaseMessage,
  type ScoreItem,
  type WorkerMessage,
  type WorkerMessageType,
} from '../shared/protocol/index.js';
import { Random } from '../shared/random.js';
import { integerFlag } from './flags.js';

// ---- seeded draws -------------------------------------------------------------------------------

class Draw {
  constructor(private readonly r: Random) {}

  u(): number {
    return this.r.next();
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.r.next() * n);
  }

  chance(p: number): boolean {
    return this.r.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)] as T;
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i += 4) {
      const v = (this.r.next() * 4294967296) >>> 0;
      out[i] = v & 255;
      if (i + 1 < n) out[i + 1] = (v >>> 8) & 255;
      if (i + 2 < n) out[i + 2] = (v >>> 16) & 255;
      if (i + 3 < n) out[i + 3] = v >>> 24;
    }
    return out;
  }

  text(n: number): string {
    const chars = 'abcdefghijklmnopqrstuvwxyz0123456789-._~:/"{}[],\\ é漢🙂';
    let s = '';
    for (let i = 0; i < n; i++) s += chars[this.int(chars.length)];
    return s;
  }
}

// ---- options and report ---------------------------------------------------------------------------

export interface FuzzOptions {
  /** The coordinator, e.g. http://127.0.0.1:PORT. */
  url: string;
  /** A worker token (fuzzing connections authenticate as workers; some deliberately do not). */
  workerToken: string;
  /** Frames to write in all (socket.io emits plus raw websocket frames). */
  frames: number;
  seed: number;
  /** Fuzzing connections open at once (default 4). */
  connections?: number;
  /** The coordinator's frame limit: frames a little over it are sent when it is at most 8 MiB (default: none sent). */
  maxFrameBytes?: number;
  /** Most frames of one heartbeat flood, which goes on until the coordinator cuts it off (default 30,000). */
  floodFrames?: number;
  /**
   * Heartbeat floods: this many, first thing on the first lane. Default: now and then at random (one connection in
   * 200), while floods are under a tenth of the frames.
   */
  floods?: number;
  /**
   * The honest job's shard size: results the fuzzer forges for lease ids it makes up never have that many scores
   * (one of them might be a lease the fuzzing connection itself holds, where such a result would fit).
   */
  avoidScoreLength?: number;
  /**
   * Leases an honest worker holds now (the test and the benchmark read them from their honest worker): the fuzzer
   * sends results of the right length but wrong scores, failures that no retry can fix, and releases for them, from
   * connections that do not hold them. Only the coordinator's check of who holds a lease keeps those out.
   */
  victims?: () => readonly VictimLease[];
  /** Called after every connection, e.g. to log progress. */
  onConnectionEnd?: (report: FuzzReport) => void;
}

export interface FuzzReport {
  /** Frames written on open connections, by kind. */
  frames: number;
  byKind: Record<string, number>;
  /** Connections opened (socket.io and raw), and those the coordinator refused at the upgrade. */
  connections: number;
  refused: number;
  /** Connections the coordinator closed while the fuzzer still had frames to send on them. */
  disconnects: number;
  /** Disconnected for their frame rate (a `rate-limited` error came first). */
  rateLimited: number;
  /** Error messages the coordinator sent back, by code. */
  errorsReceived: Record<string, number>;
  /** Leases fuzzing connections were given (and handed back at once). */
  leasesTaken: number;
  /** Heartbeat floods sent. */
  floods: number;
  seconds: number;
}

// ---- frames -------------------------------------------------------------------------------------------

/** msgpackr as the codec configures it, without validation: hostile messages are packed as they are. */
const rawPackr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false });
const pack = (value: unknown): Uint8Array => {
  const b = rawPackr.pack(value);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength).slice();
};

/** What the fuzzer knows of real leases: the coordinator's boot prefix, the highest sequence number seen, its own. */
interface LeaseKnowledge {
  boot: string | undefined;
  maxSeq: number;
}

/** A lease an honest worker holds: its ids and how many scores its result has. */
export interface VictimLease {
  leaseId: string;
  shardId: string;
  count: number;
}

interface Conn {
  /** Lease ids this connection was given: never forged into a result of its own (it might fit). */
  own: Set<string>;
  /** The highest lease sequence number known when this connection said hello: leases up to it are not its own. */
  seqBound: number;
  registered: boolean;
  name: string;
}

const NAMES = ['fuzz-a', 'fuzz-b'] as const;

const INTERESTING: readonly number[][] = [
  [0xc1],
  [0xdd, 0xff, 0xff, 0xff, 0xff],
  [0xdf, 0x7f, 0xff, 0xff, 0xff],
  [0xdb, 0xff, 0xff, 0xff, 0xf0],
  [0xc6, 0x7f, 0xff, 0xff, 0xff],
  [0xc9, 0xff, 0xff, 0xff, 0xff, TENSOR_EXT_TYPE],
  [0xd4, TENSOR_EXT_TYPE, 0x00],
  [0xc7, 0x06, TENSOR_EXT_TYPE, 0x00, 0x01, 0x01, 0x00, 0x00],
  [0xd4, 0x72, 0x40],
  [0xd6, 0x70, 0, 0, 0, 1],
  [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
  [0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0],
  [0xca, 0x7f, 0x80, 0, 0],
  new Array<number>(64).fill(0x91),
  [0x80],
];

function deepArray(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

function hostileValue(d: Draw): unknown {
  switch (d.int(26)) {
    case 0: return Number.NaN;
    case 1: return Number.POSITIVE_INFINITY;
    case 2: return Number.NEGATIVE_INFINITY;
    case 3: return -1;
    case 4: return 0;
    case 5: return 1.5;
    case 6: return 2 ** 53 + 2;
    case 7: return 1e308;
    case 8: return -1e308;
    case 9: return '';
    case 10: return d.text(1 + d.int(20));
    case 11: return 'y'.repeat(257);
    case 12: return 'z'.repeat(5000);
    case 13: return null;
    case 14: return d.chance(0.5);
    case 15: return [];
    case 16: return [1, 'two', { three: 3 }];
    case 17: return {};
    case 18: return { type: 'hello', nested: { deeper: [1, 2] } };
    case 19: return d.bytes(d.int(64));
    case 20: return Tensor.float32(Float32Array.of(Number.NaN, 1, Number.POSITIVE_INFINITY));
    case 21: return Tensor.int32(Int32Array.of(1, 2, 3));
    case 22: return Tensor.float32(new Float32Array(6), [2, 3]);
    case 23: return undefined;
    case 24: return deepArray(40);
    default: return Array.from({ length: 2000 }, (_, i) => `id-${i}`);
  }
}

function hex64(d: Draw): string {
  return Array.from(d.bytes(32), (b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * A lease id that is not this connection's: random, or a real one issued before the connection said hello (so never
 * its own, even one still on its way to it).
 */
function forgedLeaseId(d: Draw, known: LeaseKnowledge, conn: Conn): string {
  if (known.boot !== undefined && conn.seqBound > 0 && d.chance(0.5)) {
    for (let tries = 0; tries < 4; tries++) {
      const seq = Math.max(1, conn.seqBound - d.int(64));
      const id = `${known.boot}.${seq}`;
      if (!conn.own.has(id)) return id;
    }
  }
  return d.chance(0.8) ? `fz.${d.int(1_000_000)}` : d.text(1 + d.int(30));
}

function scoreLength(d: Draw, avoid: number | undefined): number {
  const n = d.int(40);
  return n === avoid ? n + 1 : n;
}

/** A valid worker message of `type` (a hello only under one of the fuzzers' names). */
function validMessage(d: Draw, type: WorkerMessageType, known: LeaseKnowledge, conn: Conn, avoid: number | undefined): WorkerMessage {
  switch (type) {
    case 'hello':
      return { type: 'hello', protocolVersion: d.chance(0.95) ? PROTOCOL_VERSION : 2 + d.int(5), name: conn.name, capabilities: { backend: d.pick(['cpu', 'wasm'] as const), threads: 1 + d.int(8), tasks: d.chance(0.5) ? ['score'] : ['score', 'train'] } };
    case 'heartbeat':
      return { type: 'heartbeat', time: Date.now(), ...(d.chance(0.5) ? { inFlight: d.int(5) } : {}) };
    case 'pull':
      return { type: 'pull', credit: 1 + d.int(4) };
    case 'result':
      if (d.chance(0.8)) {
        return { type: 'result', leaseId: forgedLeaseId(d, known, conn), shardId: `job.${d.int(100)}`, payload: { kind: 'scores', scores: Tensor.float32(Float32Array.from({ length: scoreLength(d, avoid) }, () => d.u() * 10 - 5)) }, ...(d.chance(0.5) ? { elapsedMs: d.int(1000) } : {}) };
      }
      return { type: 'result', leaseId: forgedLeaseId(d, known, conn), shardId: `job.${d.int(100)}`, payload: { kind: 'update', update: Tensor.float32(new Float32Array(1 + d.int(32)).fill(0.01)), samples: d.int(100), loss: d.u(), baseVersion: d.int(10) } };
    case 'failure':
      return { type: 'failure', leaseId: forgedLeaseId(d, known, conn), shardId: `job.${d.int(100)}`, reason: d.text(d.int(50)), retryable: d.chance(0.5) };
    case 'release':
      return { type: 'release', leaseIds: Array.from({ length: 1 + d.int(4) }, () => forgedLeaseId(d, known, conn)) };
    case 'blob-request':
      return { type: 'blob-request', hash: hex64(d) };
    case 'error':
      return { type: 'error', code: d.pick(['internal', 'malformed', 'whatever']), message: d.text(d.int(80)), ...(d.chance(0.3) ? { ref: d.text(8) } : {}) };
  }
}

/** Flip, set, insert, delete, truncate, splice: 1–4 of them on an encoded frame. */
function mutateBytes(d: Draw, frame: Uint8Array): Uint8Array {
  let bytes = Array.from(frame);
  const n = 1 + d.int(4);
  for (let k = 0; k < n; k++) {
    const at = (): number => (bytes.length === 0 ? 0 : d.int(bytes.length));
    switch (d.int(6)) {
      case 0:
        if (bytes.length > 0) bytes[at()]! ^= 1 << d.int(8);
        break;
      case 1:
        if (bytes.length > 0) bytes[at()] = d.int(256);
        break;
      case 2:
        bytes.splice(at(), 0, ...d.bytes(1 + d.int(8)));
        break;
      case 3:
        bytes.splice(at(), 1 + d.int(16));
        break;
      case 4:
        bytes = bytes.slice(0, at());
        break;
      default: {
        const insert = d.pick(INTERESTING);
        bytes.splice(at(), d.chance(0.5) ? insert.length : 0, ...insert);
      }
    }
  }
  return Uint8Array.from(bytes);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Tensor) && !ArrayBuffer.isView(v);
}

/** Paths to every value in a message (through plain objects), e.g. ['payload', 'scores']. */
function paths(o: Record<string, unknown>, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  for (const [k, v] of Object.entries(o)) {
    out.push([...prefix, k]);
    if (isPlainObject(v)) out.push(...paths(v, [...prefix, k]));
  }
  return out;
}

/** One field of a valid message made hostile: replaced, removed, or joined by an unknown key; or the type changed. */
function mutateField(d: Draw, message: WorkerMessage): Uint8Array {
  const o = structuredClone(message) as unknown as Record<string, unknown>;
  // structuredClone keeps typed arrays but not the Tensor class: put tensors back.
  const restore = (src: Record<string, unknown>, dst: Record<string, unknown>): void => {
    for (const [k, v] of Object.entries(src)) {
      if (v instanceof Tensor) dst[k] = v;
      else if (isPlainObject(v) && isPlainObject(dst[k])) restore(v, dst[k] as Record<string, unknown>);
    }
  };
  restore(message as unknown as Record<string, unknown>, o);
  const all = paths(o);
  const p = d.pick(all);
  let parent: Record<string, unknown> = o;
  for (const k of p.slice(0, -1)) parent = parent[k] as Record<string, unknown>;
  const key = p.at(-1) as string;
  const op = d.int(10);
  if (op < 6) parent[key] = hostileValue(d);
  else if (op < 7) delete parent[key];
  else if (op < 9) parent[d.chance(0.5) ? 'extra' : d.text(1 + d.int(10))] = hostileValue(d);
  else o['type'] = d.chance(0.5) ? d.pick(['lease', 'welcome', 'blob', 'job-control', 'nope', '']) : hostileValue(d);
  try {
    return pack(o);
  } catch {
    return d.bytes(d.int(64));
  }
}

const WORKER_EVENTS: readonly string[] = WORKER_MESSAGE_TYPES.map((t) => EVENT_NAMES[t]);
const OTHER_EVENTS: readonly string[] = ['lease', 'welcome', 'blob', 'job-control', 'error-x', 'HELLO', 'hello ', 'message', 'x'.repeat(300), '', '__proto__', 'constructor'];

interface Frame {
  kind: string;
  event: string;
  args: unknown[];
  ack?: boolean;
}

function frameFor(d: Draw, conn: Conn, known: LeaseKnowledge, options: FuzzOptions): Frame {
  const avoid = options.avoidScoreLength;
  // Never a hello before registration: a mutated hello could register a fresh name (one party, many names, is a
  // known open problem: docs/security.md), which is not what this fuzzer measures.
  const types = conn.registered ? WORKER_MESSAGE_TYPES : WORKER_MESSAGE_TYPES.filter((t) => t !== 'hello');
  const type = d.pick(types);
  const event = EVENT_NAMES[type];
  const u = d.u();
  if (u < 0.25) {
    const n = d.chance(0.05) ? d.int(65536) : d.int(300);
    return { kind: 'random', event: d.chance(0.85) ? d.pick(conn.registered ? WORKER_EVENTS : WORKER_EVENTS.filter((e) => e !== 'hello')) : d.pick(OTHER_EVENTS), args: [d.bytes(n)] };
  }
  if (u < 0.5) return { kind: 'mutated', event, args: [mutateBytes(d, encodeMessage(validMessage(d, type, known, conn, avoid)).slice())] };
  if (u < 0.7) return { kind: 'field', event, args: [mutateField(d, validMessage(d, type, known, conn, avoid))] };
  if (u < 0.77) {
    const frame = encodeMessage(validMessage(d, type, known, conn, avoid)).slice();
    return { kind: 'truncated', event, args: [frame.subarray(0, d.int(frame.length))] };
  }
  if (u < 0.9) {
    const victims = options.victims?.() ?? [];
    if (victims.length > 0 && d.chance(0.3)) {
      // Another worker's live lease: a result that fits it (wrong scores), a failure that no retry can fix, a release.
      const v = d.pick(victims);
      const forged: WorkerMessage = d.chance(0.6)
        ? { type: 'result', leaseId: v.leaseId, shardId: v.shardId, payload: { kind: 'scores', scores: Tensor.float32(new Float32Array(v.count).fill(1e6 + d.int(1000))) } }
        : d.chance(0.5)
          ? { type: 'failure', leaseId: v.leaseId, shardId: v.shardId, reason: 'forged', retryable: false }
          : { type: 'release', leaseIds: [v.leaseId] };
      return { kind: 'forged', event: EVENT_NAMES[forged.type], args: [encodeMessage(forged).slice()] };
    }
    // Valid frames: forged or out of order (before hello, a second hello), or plain heartbeats.
    const m = validMessage(d, type, known, conn, avoid);
    return { kind: 'valid', event, args: [encodeMessage(m).slice()], ack: type === 'hello' || (type === 'heartbeat' && d.chance(0.3)) };
  }
  if (u < 0.995 || options.maxFrameBytes === undefined || options.maxFrameBytes > 8 << 20) {
    const frame = encodeMessage(validMessage(d, type, known, conn, avoid)).slice();
    switch (d.int(7)) {
      case 0: return { kind: 'event', event: d.pick(OTHER_EVENTS), args: [frame] };
      case 1: return { kind: 'event', event, args: [d.text(d.int(100))] };
      case 2: return { kind: 'event', event, args: [d.int(1000)] };
      case 3: return { kind: 'event', event, args: [{ type, frame: d.text(5) }] };
      case 4: return { kind: 'event', event, args: [] };
      case 5: return { kind: 'event', event, args: [frame, frame] };
      default: return { kind: 'event', event, args: [null] };
    }
  }
  return { kind: 'oversize', event, args: [d.bytes(options.maxFrameBytes + 1 + d.int(65536))] };
}

// ---- socket.io fuzzing connections ---------------------------------------------------------------------

interface Tally {
  report: FuzzReport;
  known: LeaseKnowledge;
  /** Frames still to send. */
  left: number;
}

function count(t: Tally, kind: string, n = 1): void {
  t.report.frames += n;
  t.report.byKind[kind] = (t.report.byKind[kind] ?? 0) + n;
  t.left -= n;
}

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

type Mode = 'hello' | 'no-hello' | 'no-token' | 'flood';

async function ioConnection(d: Draw, options: FuzzOptions, t: Tally, mode: Mode): Promise<void> {
  const token = mode === 'no-token' ? (d.chance(0.5) ? 'not-the-token' : undefined) : options.workerToken;
  const socket: Socket = io(options.url, {
    ...(token === undefined ? {} : { auth: { token }, extraHeaders: { authorization: `Bearer ${token}` } }),
    transports: ['websocket'], reconnection: false, forceNew: true, timeout: 30_000,
  });
  t.report.connections++;
  const up = await new Promise<boolean>((resolve) => {
    socket.once('connect', () => resolve(true));
    socket.once('connect_error', () => resolve(false));
  });
  if (!up) {
    t.report.refused++;
    socket.close();
    return;
  }
  let closing = false;
  let rateLimited = false;
  const closed = new Promise<void>((resolve) => socket.once('disconnect', () => resolve()));
  socket.once('disconnect', () => {
    if (!closing) t.report.disconnects++;
    if (rateLimited) t.report.rateLimited++;
  });
  const conn: Conn = { own: new Set(), seqBound: 0, registered: false, name: d.pick(NAMES) };
  const ignore = (): void => {};
  onMessage(socket, 'error', (m) => {
    t.report.errorsReceived[m.code] = (t.report.errorsReceived[m.code] ?? 0) + 1;
    if (m.code === 'rate-limited') rateLimited = true;
  }, ignore, { direction: 'coordinator' });
  // Leases (a hello connection that pulled): remembered as this connection's own, and handed back at once.
  onMessage(socket, 'lease', (m: LeaseMessage) => {
    conn.own.add(m.leaseId);
    t.report.leasesTaken++;
    const dot = m.leaseId.lastIndexOf('.');
    const seq = Number(m.leaseId.slice(dot + 1));
    if (dot > 0 && Number.isInteger(seq)) {
      t.known.boot = m.leaseId.slice(0, dot);
      t.known.maxSeq = Math.max(t.known.maxSeq, seq);
    }
    if (socket.connected && t.left > 0) {
      sendMessage(socket, { type: 'release', leaseIds: [m.leaseId] });
      count(t, 'valid');
    }
  }, ignore, { direction: 'coordinator' });

  try {
    if (mode === 'hello' || mode === 'flood') {
      const reply: unknown = await socket.timeout(30_000).emitWithAck('hello', encodeMessage(validMessage(d, 'hello', t.known, { ...conn, name: conn.name }, undefined)).slice()).catch(() => undefined);
      count(t, 'valid');
      if (reply === undefined || !socket.connected) return;
      conn.registered = true;
      conn.seqBound = t.known.maxSeq;
      // Some take leases (and hand them straight back), which teaches the fuzzer real lease ids to forge.
      if (d.chance(0.15) && socket.connected) {
        sendMessage(socket, { type: 'pull', credit: 1 + d.int(4) });
        count(t, 'valid');
      }
    }
    if (mode === 'flood') {
      // Valid heartbeats as fast as the socket takes them, until the coordinator cuts the connection off for its rate.
      const beat = encodeMessage({ type: 'heartbeat', time: Date.now() }).slice();
      t.report.floods++;
      const n = Math.min(t.left, options.floodFrames ?? 30_000);
      let sent = 0;
      while (sent < n && socket.connected && !rateLimited) {
        const burst = Math.min(1000, n - sent);
        for (let i = 0; i < burst; i++) socket.emit('heartbeat', beat);
        sent += burst;
        count(t, 'flood', burst);
        await tick();
      }
      await Promise.race([closed, sleep(1000)]);
      return;
    }
    const budget = 10 + d.int(400);
    for (let i = 0; i < budget && t.left > 0 && socket.connected; i++) {
      const f = frameFor(d, conn, t.known, options);
      if (f.ack === true) socket.emit(f.event, ...f.args, ignore);
      else socket.emit(f.event, ...f.args);
      count(t, f.kind);
      if (f.kind === 'oversize') await Promise.race([closed, sleep(1000)]);
      else if (i % 8 === 7) await tick();
    }
    // Give the coordinator a moment to answer (and to disconnect us) before we leave.
    await Promise.race([closed, sleep(20)]);
  } finally {
    closing = true;
    if (socket.connected) socket.disconnect();
  }
}

// ---- raw websocket connections ---------------------------------------------------------------------

/** One websocket frame, client to server: masked unless told otherwise; `claim` lies about the payload length. */
function wsFrame(d: Draw, opcode: number, payload: Uint8Array, o: { mask?: boolean; fin?: boolean; rsv?: number; claim?: number } = {}): Buffer {
  const len = o.claim ?? payload.length;
  const mask = o.mask ?? true;
  const head: number[] = [((o.fin ?? true) ? 0x80 : 0) | ((o.rsv ?? 0) << 4) | (opcode & 0x0f)];
  const m = mask ? 0x80 : 0;
  if (len < 126) head.push(m | len);
  else if (len < 65536) head.push(m | 126, len >> 8, len & 255);
  else {
    head.push(m | 127);
    const big = Buffer.alloc(8);
    big.writeBigUInt64BE(BigInt(len));
    head.push(...big);
  }
  const key = d.bytes(4);
  const body = Buffer.from(payload);
  if (mask) for (let i = 0; i < body.length; i++) body[i]! ^= key[i % 4]!;
  return Buffer.concat([Buffer.from(head), mask ? Buffer.from(key) : Buffer.alloc(0), body]);
}

const text = (s: string): Uint8Array => new TextEncoder().encode(s);

function rawFrame(d: Draw): { kind: string; bytes: Buffer } {
  const ev = (): string => d.pick([...WORKER_EVENTS, ...OTHER_EVENTS, 'disconnect', 'connect', 'disconnecting', 'newListener', 'error']);
  switch (d.int(14)) {
    case 0: return { kind: 'raw', bytes: wsFrame(d, 1, text('40')) };
    case 1: return { kind: 'raw', bytes: wsFrame(d, 1, text(`42${JSON.stringify([ev(), d.chance(0.5) ? d.text(20) : { type: 'hello', name: 'x' }])}`)) };
    case 2: return { kind: 'raw', bytes: wsFrame(d, 1, text(`451-${JSON.stringify([ev(), { _placeholder: true, num: 0 }])}`)) };
    case 3: return { kind: 'raw', bytes: wsFrame(d, 2, d.bytes(d.int(300))) };
    case 4: return { kind: 'raw', bytes: wsFrame(d, 1, text(`${d.pick(['4', '9', '6', '1', '2', '3', '5', 'x', ''])}${d.text(d.int(40))}`)) };
    case 5: return { kind: 'raw', bytes: wsFrame(d, 1, text(`42${'['.repeat(1 + d.int(3000))}`)) };
    case 6: return { kind: 'raw', bytes: wsFrame(d, 1, text(`4${d.int(10)}${d.chance(0.5) ? '/admin,' : ''}${d.int(100)}${JSON.stringify(['hello', d.int(5)])}`)) };
    case 7: return { kind: 'raw-malformed', bytes: wsFrame(d, 1, text('42["hello"]'), { mask: false }) };
    case 8: return { kind: 'raw-malformed', bytes: wsFrame(d, d.pick([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]), d.bytes(d.int(20))) };
    case 9: return { kind: 'raw-malformed', bytes: wsFrame(d, 1, text('42["pull"]'), { rsv: 1 + d.int(7) }) };
    case 10: return { kind: 'raw-malformed', bytes: wsFrame(d, 1, Uint8Array.of(0x34, 0x32, 0xc3, 0x28, 0xff)) };
    case 11: return { kind: 'raw-malformed', bytes: wsFrame(d, 9, d.bytes(200)) };
    case 12: return { kind: 'raw-oversize', bytes: wsFrame(d, 2, d.bytes(16), { claim: 2 ** 40 }) };
    default: return { kind: 'raw', bytes: wsFrame(d, 0, d.bytes(d.int(30)), { fin: d.chance(0.5) }) };
  }
}

async function rawConnection(d: Draw, options: FuzzOptions, t: Tally): Promise<void> {
  const u = new URL(options.url);
  const token = d.chance(0.7) ? options.workerToken : d.chance(0.5) ? 'wrong' : undefined;
  const sock = netConnect(Number(u.port), u.hostname);
  t.report.connections++;
  let closed = false;
  const gone = new Promise<void>((resolve) => sock.once('close', () => {
    closed = true;
    resolve();
  }));
  sock.on('error', () => {});
  let head = '';
  const status = await new Promise<number>((resolve) => {
    sock.once('connect', () => {
      const key = Buffer.from(d.bytes(16)).toString('base64');
      sock.write(
        `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
        `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n${token === undefined ? '' : `Authorization: Bearer ${token}\r\n`}\r\n`,
      );
    });
    const onData = (chunk: Buffer): void => {
      head += chunk.toString('latin1');
      if (head.includes('\r\n')) {
        sock.off('data', onData);
        resolve(Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1] ?? 0));
      }
    };
    sock.on('data', onData);
    void gone.then(() => resolve(0));
  });
  if (status !== 101) {
    t.report.refused++;
    if (!closed) sock.destroy();
    await gone;
    return;
  }
  sock.resume(); // discard what the server sends
  const budget = 1 + d.int(40);
  for (let i = 0; i < budget && t.left > 0 && !closed; i++) {
    const f = rawFrame(d);
    sock.write(f.bytes);
    count(t, f.kind);
    if (i % 4 === 3) await tick();
  }
  await Promise.race([gone, sleep(20)]);
  if (closed) t.report.disconnects++;
  else {
    sock.destroy();
    await gone;
  }
}

// ---- the fuzzer ---------------------------------------------------------------------------------------

/** Runs `options.connections` fuzzing connections at a time until `options.frames` frames were written. */
export async function fuzzFrames(options: FuzzOptions): Promise<FuzzReport> {
  const started = performance.now();
  const t: Tally = {
    report: { frames: 0, byKind: {}, connections: 0, refused: 0, disconnects: 0, rateLimited: 0, errorsReceived: {}, leasesTaken: 0, floods: 0, seconds: 0 },
    known: { boot: undefined, maxSeq: 0 },
    left: options.frames,
  };
  const lanes = options.connections ?? 4;
  const lane = async (k: number): Promise<void> => {
    const d = new Draw(new Random((options.seed * 7919 + k * 104_729) >>> 0));
    if (k === 0) for (let i = 0; i < (options.floods ?? 0) && t.left > 0; i++) await ioConnection(d, options, t, 'flood');
    while (t.left > 0) {
      const u = d.u();
      if (u < 0.1) await rawConnection(d, options, t);
      else if (u < 0.13) await ioConnection(d, options, t, 'no-token');
      else if (u < 0.135 && options.floods === undefined && (t.report.byKind['flood'] ?? 0) < 0.1 * options.frames) await ioConnection(d, options, t, 'flood');
      else await ioConnection(d, options, t, u < 0.75 ? 'hello' : 'no-hello');
      options.onConnectionEnd?.(t.report);
    }
  };
  await Promise.all(Array.from({ length: lanes }, (_, k) => lane(k)));
  t.report.seconds = (performance.now() - started) / 1000;
  return t.report;
}

// ---- /healthz -------------------------------------------------------------------------------------------

export interface HealthProbe {
  probes: number;
  /** Probes answered with anything but 200, or not at all. */
  failures: string[];
  /** Milliseconds per probe, in order. */
  latencies: number[];
}

/** GET /healthz every `everyMs`, one at a time, until `stop.done`; records each answer's latency. */
export async function probeHealth(url: string, stop: { done: boolean }, everyMs = 20): Promise<HealthProbe> {
  const out: HealthProbe = { probes: 0, failures: [], latencies: [] };
  while (!stop.done) {
    const t0 = performance.now();
    try {
      const res = await fetch(`${url}/healthz`);
      await res.arrayBuffer();
      if (res.status !== 200) out.failures.push(`status ${res.status}`);
    } catch (e) {
      out.failures.push(e instanceof Error ? e.message : String(e));
    }
    out.latencies.push(performance.now() - t0);
    out.probes++;
    await sleep(everyMs);
  }
  return out;
}

/**
 * The same probe in a process of its own (the fuzzing process is busy, and its own delays would count as the
 * coordinator's): GET /healthz every 20 ms until `stop()`, which resolves with what it measured.
 */
function probeHealthInChild(url: string): { stop: () => Promise<HealthProbe> } {
  const code = `
    const out = { probes: 0, failures: [], latencies: [] };
    let done = false;
    process.stdin.on('data', () => {}).on('end', () => { done = true; });
    while (!done) {
      const t0 = performance.now();
      try {
        const res = await fetch(${JSON.stringify(`${url}/healthz`)});
        await res.arrayBuffer();
        if (res.status !== 200) out.failures.push('status ' + res.status);
      } catch (e) {
        out.failures.push(String(e));
      }
      out.latencies.push(performance.now() - t0);
      out.probes++;
      await new Promise((r) => setTimeout(r, 20));
    }
    process.stdout.write(JSON.stringify(out));
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
  const kill = (): void => void child.kill('SIGKILL');
  process.once('exit', kill);
  let text = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (text += d));
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  return {
    stop: async () => {
      child.stdin.end();
      await exited;
      process.off('exit', kill);
      return JSON.parse(text) as HealthProbe;
    },
  };
}

/** Protocol errors by code, from the coordinator's /metrics. */
export async function protocolErrors(url: string, clientToken: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${clientToken}` } })).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^fedpool_protocol_errors_total\{code="([^"]*)"\} (\S+)$/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

// ---- the benchmark: a coordinator process, an honest worker, jobs, the fuzzer -------------------------------

const WORKER_TOKEN = 'fuzz-w';
const CLIENT_TOKEN = 'fuzz-c';
const SHARD = 7;

/** Answers every lease with the float32 sum of each item's features, as test/server/helpers.ts's FakeWorker does. */
class HonestWorker {
  private timer: NodeJS.Timeout | undefined;
  answered = 0;
  /** Leases received and not answered yet. */
  readonly held = new Map<string, VictimLease>();
  disconnected = false;

  private constructor(readonly socket: Socket) {}

  static async connect(url: string): Promise<HonestWorker> {
    const socket: Socket = io(url, { auth: { token: WORKER_TOKEN }, extraHeaders: { authorization: `Bearer ${WORKER_TOKEN}` }, transports: ['websocket'], reconnection: false, forceNew: true });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', reject);
    });
    const w = new HonestWorker(socket);
    socket.once('disconnect', () => {
      w.disconnected = true;
      clearInterval(w.timer);
    });
    onMessage(socket, 'lease', (m) => {
      w.held.set(m.leaseId, { leaseId: m.leaseId, shardId: m.shardId, count: m.task.kind === 'score' ? (m.task.matrix?.ids.length ?? m.task.items?.length ?? 0) : 0 });
      setImmediate(() => w.answer(m));
    }, (e) => console.error(`honest worker: ${e.message}`), { direction: 'coordinator' });
    const reply: unknown = await socket.timeout(30_000).emitWithAck('hello', encodeMessage({ type: 'hello', protocolVersion: PROTOCOL_VERSION, name: 'honest', capabilities: { backend: 'cpu', threads: 1, tasks: ['score'] } }));
    const welcome = decodeMessage(reply, { direction: 'coordinator' });
    if (welcome.type !== 'welcome') throw new Error(`honest worker: ${JSON.stringify(welcome)}`);
    w.timer = setInterval(() => {
      if (socket.connected) sendMessage(socket, { type: 'heartbeat', time: Date.now() });
    }, welcome.heartbeatMs);
    sendMessage(socket, { type: 'pull', credit: 2 });
    return w;
  }

  private answer(m: LeaseMessage): void {
    this.held.delete(m.leaseId);
    if (m.task.kind !== 'score' || !this.socket.connected) return;
    const task = m.task;
    const items: ScoreItem[] = task.matrix !== undefined
      ? task.matrix.ids.map((id, i) => {
          const dim = task.matrix?.features.shape[1] ?? 0;
          return { id, features: Tensor.float32((task.matrix?.features.data as Float32Array).slice(i * dim, (i + 1) * dim)) };
        })
      : (task.items ?? []);
    const scores = Float32Array.from(items, (it) => {
      let s = 0;
      for (const v of (it.features?.data ?? new Float32Array(0)) as Float32Array) s += v;
      return Math.fround(s);
    });
    sendMessage(this.socket, { type: 'result', leaseId: m.leaseId, shardId: m.shardId, payload: { kind: 'scores', scores: Tensor.float32(scores) }, elapsedMs: 1 });
    this.answered++;
  }

  close(): void {
    clearInterval(this.timer);
    this.socket.close();
  }
}

/** 301 items (43 full shards of 7) of 4 features; an item's right score is the float32 sum of its features. */
const items = Array.from({ length: 43 * SHARD }, (_, i) => ({ id: `i${i}`, features: Array.from({ length: 4 }, (_, j) => ((i * 7 + j * 3) % 11) / 4) }));
const expected = items.map((it) => Math.fround(it.features.reduce((s, v) => s + Math.fround(v), 0)));

async function api(url: string, route: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`${url}${route}`, { ...init, headers: { ...(init.headers as Record<string, string> | undefined), authorization: `Bearer ${CLIENT_TOKEN}` } });
}

/** Submits one honest job and waits for it: 'done' with every item once, in order, with its right score, or why not. */
async function honestJob(url: string, model: string): Promise<string> {
  const res = await api(url, '/api/jobs', { method: 'POST', body: JSON.stringify({ kind: 'score', model, items, shardSize: SHARD }), headers: { 'content-type': 'application/json' } });
  if (res.status !== 201) return `submit ${res.status}: ${await res.text()}`;
  const { id } = (await res.json()) as { id: string };
  for (const end = Date.now() + 600_000; ;) {
    const s = (await (await api(url, `/api/jobs/${id}`)).json()) as { state: string; error?: string };
    if (s.state === 'done') break;
    if (s.state === 'failed' || s.state === 'cancelled') return `${s.state}: ${s.error ?? ''}`;
    if (Date.now() > end) return `still ${s.state} after 600 s`;
    await sleep(20);
  }
  const lines = (await (await api(url, `/api/jobs/${id}/results`)).text()).split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { id: string; score: number });
  if (lines.length !== items.length || lines.some((l, i) => l.id !== items[i]!.id)) return `results: ${lines.length} lines, not the items in order`;
  const wrong = lines.findIndex((l, i) => Math.abs(l.score - expected[i]!) > 1e-6);
  return wrong < 0 ? 'done' : `item ${wrong} scored ${lines[wrong]!.score}, expected ${expected[wrong]}`;
}

/** VmRSS and VmHWM (peak) of a process, in MiB. */
function memoryOf(pid: number): { rss: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status)?.[1] ?? Number.NaN);
  return { rss: kib('VmRSS') / 1024, peak: kib('VmHWM') / 1024 };
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}


/** This file with --serve-coordinator: the coordinator, in a process of its own, until SIGTERM. */
async function serveCoordinator(args: readonly string[]): Promise<void> {
  const [{ startCoordinator }, { default: pino }] = await Promise.all([import('../server/coordinator.js'), import('pino')]);
  const c = await startCoordinator({ port: 0, state: ':memory:', logger: pino({ level: 'silent' }), workerTokens: [WORKER_TOKEN], clientTokens: [CLIENT_TOKEN], maxFrameBytes: integerFlag(args, 'max-frame-bytes', 4 << 20) });
  process.stdout.write(`listening on ${c.url}\n`);
  process.once('SIGTERM', () => void c.close().then(() => process.exit(0)));
}

async function main(args: readonly string[]): Promise<number> {
  const frames = integerFlag(args, 'frames', 150_000);
  const seed = integerFlag(args, 'seed', 1);
  const connections = integerFlag(args, 'connections', 6);
  const maxFrameBytes = integerFlag(args, 'max-frame-bytes', 4 << 20);
  const self = fileURLToPath(import.meta.url);
  const child = spawn(process.execPath, [`--import=${import.meta.resolve('tsx')}`, self, '--serve-coordinator', '--max-frame-bytes', String(maxFrameBytes)], { stdio: ['ignore', 'pipe', 'inherit'], detached: true });
  const pid = child.pid;
  if (pid === undefined) throw new Error('cannot start the coordinator');
  const killGroup = (): void => {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone
    }
  };
  process.on('exit', killGroup);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let crashed = false;
  void exited.then(() => (crashed = true));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const m = /^listening on (\S+)$/m.exec(out);
      if (m) resolve(m[1]!);
    });
    void exited.then((code) => reject(new Error(`the coordinator exited (${code}) before listening`)));
  });
  let honest: HonestWorker | undefined;
  try {
    const bytes = Uint8Array.of(9, 9, 9);
    const model = createHash('sha256').update(bytes).digest('hex');
    const put = await api(url, `/api/blobs/${model}`, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
    if (put.status !== 201) throw new Error(`blob upload: ${put.status}`);
    honest = await HonestWorker.connect(url);
    const warm = await honestJob(url, model);
    if (warm !== 'done') throw new Error(`the warm-up job: ${warm}`);
    const before = memoryOf(pid);
    const errorsBefore = await protocolErrors(url, CLIENT_TOKEN);

    const stop = { done: false };
    const health = probeHealthInChild(url);
    const jobs: string[] = [];
    const jobLoop = (async () => {
      do jobs.push(await honestJob(url, model));
      while (!stop.done);
    })();
    let last = 0;
    const fuzz = await fuzzFrames({
      url, workerToken: WORKER_TOKEN, frames, seed, connections, maxFrameBytes, avoidScoreLength: SHARD, victims: () => [...(honest?.held.values() ?? [])],
      onConnectionEnd: (r) => {
        if (r.frames - last >= 25_000) {
          last = r.frames;
          process.stderr.write(`fuzz: ${r.frames} frames, ${r.connections} connections, ${jobs.length} honest jobs\n`);
        }
      },
    });
    stop.done = true;
    await jobLoop;
    const probe = await health.stop();
    const after = memoryOf(pid);
    await sleep(1100); // /metrics is rendered at most once a second
    const errorsAfter = await protocolErrors(url, CLIENT_TOKEN);
    const finalHealth = await fetch(`${url}/healthz`).then((r) => r.status, () => 0);

    const lat = [...probe.latencies].sort((a, b) => a - b);
    const diff: Record<string, number> = {};
    for (const [k, v] of Object.entries(errorsAfter)) if (v - (errorsBefore[k] ?? 0) > 0) diff[k] = v - (errorsBefore[k] ?? 0);
    const errorTotal = Object.values(diff).reduce((s, v) => s + v, 0);
    const doneJobs = jobs.filter((j) => j === 'done').length;
    const mutatedKinds = ['random', 'mutated', 'field', 'truncated', 'oversize', 'raw', 'raw-malformed', 'raw-oversize', 'event'];
    const randomAndMutated = mutatedKinds.reduce((s, k) => s + (fuzz.byKind[k] ?? 0), 0);
    console.log(`| measure | value |`);
    console.log(`|:--|--:|`);
    console.log(`| frames sent (seed ${seed}, ${connections} connections at a time) | ${fuzz.frames.toLocaleString('en-US')} |`);
    console.log(`| … random, mutated, hostile-field, truncated, unknown-event, oversize and raw websocket frames | ${randomAndMutated.toLocaleString('en-US')} |`);
    console.log(`| … valid but out of order or forged / forged for the honest worker's live leases / heartbeat floods | ${(fuzz.byKind['valid'] ?? 0).toLocaleString('en-US')} / ${(fuzz.byKind['forged'] ?? 0).toLocaleString('en-US')} / ${(fuzz.byKind['flood'] ?? 0).toLocaleString('en-US')} |`);
    console.log(`| frames by kind | ${Object.entries(fuzz.byKind).map(([k, v]) => `${k} ${v}`).join(', ')} |`);
    console.log(`| fuzzing time | ${fuzz.seconds.toFixed(1)} s (${Math.round(fuzz.frames / fuzz.seconds).toLocaleString('en-US')} frames/s) |`);
    console.log(`| connections opened / refused at the upgrade | ${fuzz.connections} / ${fuzz.refused} |`);
    console.log(`| disconnects suffered (of which for their frame rate) | ${fuzz.disconnects} (${fuzz.rateLimited}, of ${fuzz.floods} heartbeat flood${fuzz.floods === 1 ? '' : 's'}) |`);
    console.log(`| protocol errors counted by /metrics | ${errorTotal.toLocaleString('en-US')}: ${Object.entries(diff).map(([k, v]) => `${k} ${v}`).join(', ')} |`);
    console.log(`| leases the fuzzers took (and handed back) | ${fuzz.leasesTaken} |`);
    console.log(`| honest jobs (301 items each) done with exactly the right scores | ${doneJobs} of ${jobs.length}${doneJobs === jobs.length ? '' : `: ${jobs.filter((j) => j !== 'done').join('; ')}`} |`);
    console.log(`| coordinator RSS before / after / peak | ${before.rss.toFixed(0)} / ${after.rss.toFixed(0)} / ${after.peak.toFixed(0)} MiB |`);
    console.log(`| /healthz probes, failed | ${probe.probes}, ${probe.failures.length} |`);
    console.log(`| /healthz latency p50 / p99 / max | ${percentile(lat, 50).toFixed(1)} / ${percentile(lat, 99).toFixed(1)} / ${(lat.at(-1) ?? Number.NaN).toFixed(1)} ms |`);
    console.log(`| coordinator up at the end | ${!crashed && finalHealth === 200 ? 'yes' : 'NO'} |`);
    const ok = !crashed && finalHealth === 200 && probe.failures.length === 0 && doneJobs === jobs.length && jobs.length > 0 && randomAndMutated >= 100_000 && errorTotal > 0;
    return ok ? 0 : 1;
  } finally {
    honest?.close();
    if (!crashed) {
      child.kill('SIGTERM');
      const timer = setTimeout(killGroup, 20_000);
      await exited;
      clearTimeout(timer);
    }
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  if (args.includes('--serve-coordinator')) await serveCoordinator(args);
  else process.exitCode = await main(args);
}
