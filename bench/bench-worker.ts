// A worker simulated on a raw socket.io-client socket with the protocol module: the tests' FakeWorker
// (test/server/helpers.ts gives it the tests' defaults) and the benchmarks' light workers (bench/open-pool.ts,
// bench/coordinator.ts), which also fetch models, pick a source address and take hooks for attacks. It imports nothing
// from ava, so benchmarks can use it outside the test runner.
import { createHash } from 'node:crypto';
import { io, type ManagerOptions, type Socket as ClientSocket, type SocketOptions } from 'socket.io-client';
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
} from '../shared/protocol/index.js';
import { HeldWeights, weightsKey } from '../shared/training/held-weights.js';

export type Lease = MessageOf<'lease'>;

/** What an honest simulated worker scores an item: the float32 sum of its features (or the text length). */
export function fakeScore(item: ScoreItem): number {
  if (item.features !== undefined) {
    let s = 0;
    for (const v of item.features.data as Float32Array) s += v;
    return Math.fround(s);
  }
  return (item.prompt?.length ?? 0) + (item.response?.length ?? 0);
}

export interface BenchWorkerOptions {
  name: string;
  /** The worker token. */
  token: string;
  threads?: number;
  /** Answer leases with the honest scores (default true; the field `auto` changes it later); `onLease` replaces this. */
  auto?: boolean;
  onLease?: (w: BenchWorker, lease: Lease) => void;
  /** Delay before each automatic answer. */
  delayMs?: number;
  heartbeat?: boolean;
  /** Fetch (and check) a lease's model blob before answering it, as a real worker does (default false). */
  fetchModels?: boolean;
  /** The inference server it claims to front (its hello's capabilities.scorer). */
  scorer?: { api: ScorerApi; model: string };
  /** What its automatic answers send instead of the honest scores (a liar). */
  lie?: (honest: Float32Array) => Float32Array;
  /** The source address of the connection (127.0.0.0/8 is all loopback on Linux). */
  localAddress?: string;
  /**
   * Take train leases too: answered at once with an update of the model's size (every value this), no training. The
   * weights are the ones the coordinator sent for the lease's version, held as a real worker holds them (held-weights.ts).
   */
  trainUpdate?: number;
}

export class BenchWorker {
  readonly held = new Map<string, Lease>();
  readonly leases: Lease[] = [];
  readonly errors: MessageOf<'error'>[] = [];
  readonly controls: MessageOf<'job-control'>[] = [];
  readonly blobs: MessageOf<'blob'>[] = [];
  /** The most leases it held at once, and the credit it last pulled. */
  maxHeld = 0;
  credit = 0;
  auto: boolean;
  delayMs: number;
  workerId = '';
  disconnected = false;
  disconnectedAt = 0;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  /** The sizes of the weights the coordinator sent, as a real worker keeps the weights. */
  private readonly weights = new HeldWeights<number>();
  /** Model blobs fetched and checked; leases waiting for one; chunks of the ones being fetched. */
  private readonly models = new Set<string>();
  private readonly waiting = new Map<string, Lease[]>();
  private readonly parts = new Map<string, Uint8Array[]>();
  missingModels = 0;

  private constructor(
    readonly socket: ClientSocket<CoordinatorToWorkerEvents, WorkerToCoordinatorEvents>,
    readonly options: BenchWorkerOptions,
  ) {
    this.auto = options.auto ?? true;
    this.delayMs = options.delayMs ?? 0;
    const opts = { direction: 'coordinator' as const };
    const fail = (e: Error): void => void this.errors.push({ type: 'error', code: 'local', message: e.message });
    onMessage(socket, 'lease', (m) => this.onLease(m), fail, opts);
    onMessage(socket, 'weights', (m) => this.weights.add(weightsKey(m.jobId, m.modelHash, m.modelVersion), m.weights.size), fail, opts);
    onMessage(socket, 'error', (m) => this.onError(m), fail, opts);
    onMessage(socket, 'job-control', (m) => {
      this.controls.push(m);
      for (const [id, l] of this.held) if (l.jobId === m.jobId) this.held.delete(id);
      for (const [hash, ls] of this.waiting) this.waiting.set(hash, ls.filter((l) => l.jobId !== m.jobId));
    }, fail, opts);
    onMessage(socket, 'blob', (m) => this.onBlob(m), fail, opts);
    socket.on('disconnect', () => {
      this.disconnected = true;
      this.disconnectedAt = Date.now();
      if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer);
    });
  }

  static async connect(url: string, options: BenchWorkerOptions): Promise<BenchWorker> {
    const { token } = options;
    // localAddress reaches engine.io-client's websocket transport (ws) although its option types leave it out.
    const socketOptions: Partial<ManagerOptions & SocketOptions> & { localAddress?: string } = {
      auth: { token }, extraHeaders: { authorization: `Bearer ${token}` },
      transports: ['websocket'], reconnection: false, forceNew: true, timeout: 30_000,
      ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }),
    };
    const socket: ClientSocket<CoordinatorToWorkerEvents, WorkerToCoordinatorEvents> = io(url, socketOptions);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('connect', () => resolve());
        socket.once('connect_error', (e) => reject(e));
      });
      const w = new BenchWorker(socket, options);
      const reply = await socket.timeout(30_000).emitWithAck('hello', encodeMessage({
        type: 'hello', protocolVersion: PROTOCOL_VERSION, name: options.name, capabilities: { backend: 'cpu', threads: options.threads ?? 1, tasks: options.trainUpdate === undefined ? ['score'] : ['score', 'train'], ...(options.scorer === undefined ? {} : { scorer: options.scorer }) },
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
    } catch (e) {
      socket.close();
      throw e;
    }
  }

  pull(credit: number): void {
    this.credit = credit;
    if (this.socket.connected) sendMessage(this.socket, { type: 'pull', credit });
  }

  private onLease(m: Lease): void {
    this.leases.push(m);
    this.held.set(m.leaseId, m);
    this.maxHeld = Math.max(this.maxHeld, this.held.size);
    if (this.options.onLease !== undefined) {
      this.options.onLease(this, m);
      return;
    }
    if (!this.auto) return;
    const hash = m.task.kind === 'score' ? m.task.modelHash : undefined;
    if ((this.options.fetchModels ?? false) && hash !== undefined && !this.models.has(hash)) {
      const waiting = this.waiting.get(hash);
      if (waiting !== undefined) waiting.push(m);
      else {
        this.waiting.set(hash, [m]);
        sendMessage(this.socket, { type: 'blob-request', hash });
      }
      return;
    }
    this.schedule(m);
  }

  private schedule(m: Lease): void {
    const answer = (): void => {
      if (!this.held.has(m.leaseId) || !this.socket.connected) return;
      if (m.task.kind === 'train') this.answerTrain(m);
      else this.answer(m, this.options.lie === undefined ? undefined : this.options.lie(this.scoresFor(m)));
    };
    if (this.delayMs > 0) setTimeout(answer, this.delayMs);
    else setImmediate(answer);
  }

  private onBlob(m: MessageOf<'blob'>): void {
    this.blobs.push(m);
    if (!this.waiting.has(m.hash)) return;
    const parts = this.parts.get(m.hash) ?? [];
    parts.push(m.data);
    this.parts.set(m.hash, parts);
    if (!m.final) return;
    this.parts.delete(m.hash);
    const got = createHash('sha256').update(Buffer.concat(parts)).digest('hex');
    const leases = this.waiting.get(m.hash) ?? [];
    this.waiting.delete(m.hash);
    if (got !== m.hash) {
      this.errors.push({ type: 'error', code: 'local', message: `blob ${m.hash} arrived hashing to ${got}` });
      return;
    }
    this.models.add(m.hash);
    for (const l of leases) this.schedule(l);
  }

  private onError(m: MessageOf<'error'>): void {
    this.errors.push(m);
    if (m.code === 'not-found' && m.ref !== undefined && this.waiting.has(m.ref)) {
      // A real worker could not score these; the coordinator fails the jobs that need a damaged blob.
      this.missingModels++;
      this.waiting.delete(m.ref);
      this.parts.delete(m.ref);
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

  /** Answers a train lease with a constant update of the model's size (that of the weights held for its version). */
  answerTrain(lease: Lease): void {
    const task = lease.task;
    if (task.kind !== 'train') throw new Error('not a train lease');
    this.held.delete(lease.leaseId);
    const size = this.weights.get(weightsKey(lease.jobId, task.modelHash, task.modelVersion));
    if (size === undefined) {
      sendMessage(this.socket, { type: 'failure', leaseId: lease.leaseId, shardId: lease.shardId, reason: 'no weights held for this version', retryable: true });
      return;
    }
    const update = new Float32Array(size).fill(this.options.trainUpdate ?? 0);
    sendMessage(this.socket, { type: 'result', leaseId: lease.leaseId, shardId: lease.shardId, payload: { kind: 'update', update: Tensor.float32(update), samples: 64, loss: 0.5, baseVersion: task.modelVersion }, elapsedMs: 1 });
  }

  /** The websocket under socket.io-client (ws in Node), to pause and resume its reading. */
  rawWebSocket(): { pause: () => void; resume: () => void } | undefined {
    const field = (o: unknown, key: string): unknown => (typeof o === 'object' && o !== null ? Reflect.get(o, key) : undefined);
    const ws = field(field(field(this.socket, 'io'), 'engine'), 'transport');
    const raw = field(ws, 'ws');
    const pause = field(raw, 'pause');
    const resume = field(raw, 'resume');
    if (typeof pause !== 'function' || typeof resume !== 'function') return undefined;
    return { pause: () => void Reflect.apply(pause, raw, []), resume: () => void Reflect.apply(resume, raw, []) };
  }

  close(): void {
    if (this.heartbeatTimer !== undefined) clearInterval(this.heartbeatTimer);
    this.socket.close();
  }
}
