// Test helpers for the coordinator: spawn the real CLI, talk HTTP, and simulate workers with raw
// socket.io-client sockets speaking the protocol module (the real worker lives in client/).
import type { ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io, type Socket as ClientSocket } from 'socket.io-client';
import {
  PROTOCOL_VERSION,
  Tensor,
  decodeMessage,
  encodeMessage,
  onMessage,
  sendMessage,
  type CoordinatorToWorkerEvents,
  type MessageOf,
  type ScoreItem,
  type ScorerApi,
  type WorkerToCoordinatorEvents,
} from '../../shared/protocol/index.js';
import { cleanEnv, startFedpool } from '../helpers/processes.js';

export const WORKER_TOKEN = 'w';
export const CLIENT_TOKEN = 'c';

export function tempDir(): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'fedpool-server-'));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface CoordinatorProcess {
  url: string;
  port: number;
  proc: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Sends `signal` (the process group is killed if it has not exited after a grace period) and resolves with the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>;
  exited: Promise<number | null>;
}

/**
 * Spawns `fedpool coordinator` from source and waits for its listening line (a loaded machine gets a generous
 * limit; past it, or if the process exits first, it is killed and this rejects). With `t`, the test's teardown
 * stops it; without, the caller does (and the file's exit backstop kills it if nobody did).
 */
export async function startCoordinatorProcess(args: string[] = [], env: Record<string, string> = {}, t: ExecutionContext | null = null): Promise<CoordinatorProcess> {
  const child = startFedpool(t, ['coordinator', '--port', '0', ...args], { env: cleanEnv(env) });
  const [, url] = await child.line(/^fedpool coordinator listening on (http:\/\/\S+)$/m, { stream: 'stdout', what: 'coordinator start' });
  return {
    url: url!,
    port: Number(new URL(url!).port),
    proc: child.proc,
    exited: child.exited.then((e) => e.code),
    stdout: child.stdout,
    stderr: child.stderr,
    stop: async (signal = 'SIGTERM') => {
      await child.stop(signal);
      return (await child.exited).code;
    },
  };
}

export async function api(url: string, path: string, init: RequestInit & { token?: string | null } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const token = init.token === undefined ? CLIENT_TOKEN : init.token;
  if (token !== null) headers.set('authorization', `Bearer ${token}`);
  return fetch(`${url}${path}`, { ...init, headers });
}

export async function uploadBlob(url: string, bytes: Uint8Array, token: string | null = CLIENT_TOKEN): Promise<string> {
  const hash = createHash('sha256').update(bytes).digest('hex');
  const res = await api(url, `/api/blobs/${hash}`, { method: 'PUT', body: bytes, token, headers: { 'content-type': 'application/octet-stream' } });
  if (res.status !== 201) throw new Error(`upload failed: ${res.status} ${await res.text()}`);
  return hash;
}

export interface JobBody {
  model: string;
  items: unknown[];
  shardSize?: number;
  redundancy?: number | 'adaptive';
  agreeTol?: number;
  batchSize?: number;
}

export async function submitJob(url: string, body: JobBody): Promise<string> {
  const res = await api(url, '/api/jobs', { method: 'POST', body: JSON.stringify({ kind: 'score', ...body }), headers: { 'content-type': 'application/json' } });
  const text = await res.text();
  if (res.status !== 201) throw new Error(`submit failed: ${res.status} ${text}`);
  return (JSON.parse(text) as { id: string }).id;
}

export interface JobStatusBody {
  id: string;
  state: string;
  progress: { done: number; total: number };
  error?: string;
}

export async function jobStatus(url: string, id: string): Promise<JobStatusBody> {
  const res = await api(url, `/api/jobs/${id}`);
  return (await res.json()) as JobStatusBody;
}

export async function waitForJob(url: string, id: string, states = ['done', 'failed', 'cancelled'], timeoutMs = 120_000): Promise<JobStatusBody> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await jobStatus(url, id);
    if (states.includes(s.state)) return s;
    if (Date.now() > end) throw new Error(`job ${id} still ${s.state} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

export async function results(url: string, id: string, follow = false): Promise<{ id: string; score: number }[]> {
  const res = await api(url, `/api/jobs/${id}/results${follow ? '?follow=1' : ''}`);
  if (res.status !== 200) throw new Error(`results: ${res.status} ${await res.text()}`);
  const text = await res.text();
  return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { id: string; score: number });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** `n` feature items whose expected fake score is the sum of their features. */
export function featureItems(n: number, dim = 4, prefix = 'i'): { id: string; features: number[] }[] {
  return Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, features: Array.from({ length: dim }, (_, j) => ((i * 7 + j * 3) % 11) / 4) }));
}

/** What fake workers return for an item: the float32 sum of its features (or the text length). */
export function fakeScore(item: ScoreItem): number {
  if (item.features !== undefined) {
    let s = 0;
    for (const v of item.features.data as Float32Array) s += v;
    return Math.fround(s);
  }
  return (item.prompt?.length ?? 0) + (item.response?.length ?? 0);
}

export function expectedScore(item: { features?: number[]; prompt?: string; response?: string }): number {
  if (item.features !== undefined) {
    let s = 0;
    for (const v of item.features) s += Math.fround(v);
    return Math.fround(s);
  }
  return (item.prompt?.length ?? 0) + (item.response?.length ?? 0);
}

type Lease = MessageOf<'lease'>;

export interface FakeWorkerOptions {
  name?: string;
  token?: string;
  /** Answer leases automatically with fakeScore (default true). */
  auto?: boolean;
  /** Delay before each automatic answer. */
  delayMs?: number;
  heartbeat?: boolean;
  /** The inference server it claims to front (its hello's capabilities.scorer). */
  scorer?: { api: ScorerApi; model: string };
  /** What its automatic answers send instead of the honest scores (a liar). */
  lie?: (honest: Float32Array) => Float32Array;
}

/** A worker simulated with a raw socket.io-client socket and the protocol module. */
export class FakeWorker {
  readonly held = new Map<string, Lease>();
  readonly leases: Lease[] = [];
  readonly errors: MessageOf<'error'>[] = [];
  readonly controls: MessageOf<'job-control'>[] = [];
  readonly blobs: MessageOf<'blob'>[] = [];
  maxHeld = 0;
  credit = 0;
  workerId = '';
  auto: boolean;
  delayMs: number;
  disconnected = false;
  private readonly lie: ((honest: Float32Array) => Float32Array) | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;

  private constructor(
    readonly socket: ClientSocket<CoordinatorToWorkerEvents, WorkerToCoordinatorEvents>,
    options: FakeWorkerOptions,
  ) {
    this.auto = options.auto ?? true;
    this.delayMs = options.delayMs ?? 0;
    this.lie = options.lie;
    const opts = { direction: 'coordinator' as const };
    const fail = (e: Error): void => void this.errors.push({ type: 'error', code: 'local', message: e.message });
    onMessage(socket, 'lease', (m) => this.onLease(m), fail, opts);
    onMessage(socket, 'error', (m) => void this.errors.push(m), fail, opts);
    onMessage(socket, 'job-control', (m) => {
      this.controls.push(m);
      for (const [id, l] of this.held) if (l.jobId === m.jobId) this.held.delete(id);
    }, fail, opts);
    onMessage(socket, 'blob', (m) => void this.blobs.push(m), fail, opts);
    socket.on('disconnect', () => {
      this.disconnected = true;
      if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer);
    });
  }

  static async connect(url: string, options: FakeWorkerOptions = {}): Promise<FakeWorker> {
    const socket: ClientSocket<CoordinatorToWorkerEvents, WorkerToCoordinatorEvents> = io(url, {
      auth: { token: options.token ?? WORKER_TOKEN }, extraHeaders: { authorization: `Bearer ${options.token ?? WORKER_TOKEN}` },
      transports: ['websocket'], reconnection: false, forceNew: true,
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', () => resolve());
      socket.once('connect_error', (e) => reject(e));
    });
    const w = new FakeWorker(socket, options);
    const reply = await socket.timeout(30_000).emitWithAck('hello', encodeMessage({
      type: 'hello', protocolVersion: PROTOCOL_VERSION, name: options.name ?? 'fake', capabilities: { backend: 'cpu', threads: 1, tasks: ['score'], ...(options.scorer === undefined ? {} : { scorer: options.scorer }) },
    }));
    const welcome = decodeMessage(reply, { direction: 'coordinator' });
    if (welcome.type !== 'welcome') throw new Error(`expected welcome, got ${JSON.stringify(welcome)}`);
    w.workerId = welcome.workerId;
    if (options.heartbeat ?? true) {
      w.heartbeatTimer = setInterval(() => {
        if (socket.connected) sendMessage(socket, { type: 'heartbeat', time: Date.now(), inFlight: w.held.size });
      }, welcome.heartbeatMs);
    }
    return w;
  }

  pull(credit: number): void {
    this.credit = credit;
    sendMessage(this.socket, { type: 'pull', credit });
  }

  private onLease(m: Lease): void {
    this.leases.push(m);
    this.held.set(m.leaseId, m);
    this.maxHeld = Math.max(this.maxHeld, this.held.size);
    if (this.auto) {
      const answer = (): void => {
        if (this.held.has(m.leaseId) && this.socket.connected) this.answer(m, this.lie === undefined ? undefined : this.lie(this.scoresFor(m)));
      };
      if (this.delayMs > 0) setTimeout(answer, this.delayMs);
      else setImmediate(answer);
    }
  }

  scoresFor(lease: Lease): Float32Array {
    if (lease.task.kind !== 'score') throw new Error('not a score lease');
    const task = lease.task;
    // Feature shards arrive as one matrix: score its rows as items.
    const items: ScoreItem[] =
      task.matrix !== undefined
        ? task.matrix.ids.map((id, i) => {
            const dim = task.matrix?.features.shape[1] ?? 0;
            return { id, features: Tensor.float32((task.matrix?.features.data as Float32Array).slice(i * dim, (i + 1) * dim)) };
          })
        : (task.items ?? []);
    // A log-prob task takes three values per item: the fake score, then its double and its negation.
    if (task.scorer?.output === 'logprobs') return Float32Array.from(items.flatMap((it) => [fakeScore(it), 2 * fakeScore(it), -fakeScore(it)]));
    return Float32Array.from(items.map((it) => fakeScore(it)));
  }

  /** Sends the (fake) result of a lease it holds, or of any lease given. */
  answer(lease: Lease, scores = this.scoresFor(lease)): void {
    this.held.delete(lease.leaseId);
    sendMessage(this.socket, { type: 'result', leaseId: lease.leaseId, shardId: lease.shardId, payload: { kind: 'scores', scores: Tensor.float32(scores) }, elapsedMs: 1 });
  }

  close(): void {
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer);
    this.socket.close();
  }
}

/** A feature job's results are every item, in input order, with the fake workers' score (within float32 rounding). */
export async function checkResults(t: { deepEqual: (a: unknown, b: unknown) => void; true: (v: boolean) => void }, url: string, id: string, items: { id: string; features: number[] }[]): Promise<void> {
  const r = await results(url, id);
  t.deepEqual(r.map((x) => x.id), items.map((x) => x.id));
  t.true(r.every((x, i) => Math.abs(x.score - expectedScore(items[i] as { features: number[] })) <= 1e-6));
}
