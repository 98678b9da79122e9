// A minimal coordinator for worker tests: real socket.io on 127.0.0.1, the real protocol module, token middleware,
// hello/welcome, lease top-up to the pulled credit (score or train leases), blob serving in chunks, and a record of
// everything the worker sent.
import { createHash } from 'node:crypto';
import { createServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server, type Socket } from 'socket.io';
import {
  PROTOCOL_VERSION,
  Tensor,
  onMessage,
  sendMessage,
  type CoordinatorToWorkerEvents,
  type FailureMessage,
  type HeartbeatMessage,
  type HelloMessage,
  type LeaseMessage,
  type ProtocolError,
  type ResultMessage,
  type ResultPayload,
  type ScoreItem,
  type TrainTask,
  type WorkerToCoordinatorEvents,
} from '../../../shared/protocol/index.js';

type CoordSocket = Socket<WorkerToCoordinatorEvents, CoordinatorToWorkerEvents>;

export interface FakeCoordinatorOptions {
  /** Tokens admitting workers; undefined admits anyone. */
  workerTokens?: string[];
  clientTokens?: string[];
  heartbeatMs?: number;
  leaseMs?: number;
  /** Blob chunk size (small, so tests cover multi-chunk assembly). */
  chunkBytes?: number;
  /** Send this many leases beyond the pulled credit (to test that the worker refuses them). */
  overshoot?: number;
  /** Answer hello with this error (then disconnect), as the coordinator does for a protocol version mismatch. */
  refuseHello?: { code: string; message: string };
  /** Listen on this port (0 = any free one). */
  port?: number;
}

export interface Shard {
  jobId: string;
  modelHash: string;
  items: ScoreItem[];
  batchSize?: number;
  /** A fine-tuning shard: the lease carries this task instead of scoring `items`. */
  train?: TrainTask;
  /** A `weights` message for the train task's job and version, sent right before its lease. */
  weights?: Float32Array;
}

/** A train shard for `task` (its modelHash is the task's), preceded by a `weights` message when `weights` is given. */
export function trainShard(jobId: string, task: TrainTask, weights?: Float32Array): Shard {
  return { jobId, modelHash: task.modelHash, items: [], train: task, ...(weights === undefined ? {} : { weights }) };
}

export type UpdatePayload = Extract<ResultPayload, { kind: 'update' }>;

interface Peer {
  socket: CoordSocket;
  /** Connection number, 1-based. */
  n: number;
  credit: number;
  welcomed: boolean;
  outstanding: Map<string, LeaseMessage>;
}

export interface Received<M> {
  message: M;
  /** Which connection it arrived on. */
  connection: number;
}

function shardOf(lease: LeaseMessage): Shard {
  if (lease.task.kind === 'train') return trainShard(lease.jobId, lease.task);
  return { jobId: lease.jobId, modelHash: lease.task.modelHash ?? '', items: lease.task.items ?? [], batchSize: lease.task.batchSize };
}

export const sha256 = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Features items: `count` items of `dim` floats, item i holding i, i+1, … (scores are easy to predict). */
export function featureItems(prefix: string, count: number, dim = 4): ScoreItem[] {
  return Array.from({ length: count }, (_, i) => ({
    id: `${prefix}-${i}`,
    features: Tensor.float32(Float32Array.from({ length: dim }, (_, j) => i + j)),
  }));
}

export class FakeCoordinator {
  readonly blobs = new Map<string, Uint8Array>();
  readonly queue: Shard[] = [];
  readonly hellos: Received<HelloMessage>[] = [];
  readonly pulls: Received<number>[] = [];
  readonly results: Received<ResultMessage>[] = [];
  readonly failures: Received<FailureMessage>[] = [];
  readonly releases: Received<string[]>[] = [];
  readonly heartbeats: Received<HeartbeatMessage>[] = [];
  readonly blobRequests: Received<string>[] = [];
  readonly protocolErrors: ProtocolError[] = [];
  readonly leasesSent: Received<LeaseMessage>[] = [];
  readonly peers = new Map<string, Peer>();
  /** For each disconnect: leases the worker held, neither answered nor released. */
  readonly outstandingAtDisconnect: number[] = [];
  authRefusals = 0;
  connections = 0;
  url = '';
  port = 0;
  /** While set, acked heartbeats (a draining worker's barrier) are answered only once it resolves. */
  private barrierHold: Promise<void> | undefined;
  private readonly http: HttpServer;
  private readonly io: Server<WorkerToCoordinatorEvents, CoordinatorToWorkerEvents>;
  private nextLease = 1;
  private waiters: (() => void)[] = [];

  constructor(private readonly options: FakeCoordinatorOptions = {}) {
    this.http = createServer();
    this.io = new Server(this.http, { maxHttpBufferSize: 64 * 1024 * 1024, transports: ['websocket'] });
    this.io.use((socket, next) => {
      const token: unknown = socket.handshake.auth['token'];
      const { workerTokens, clientTokens } = this.options;
      if (workerTokens === undefined) return next();
      if (typeof token === 'string' && clientTokens?.includes(token)) {
        this.authRefusals++;
        this.changed();
        return next(new Error('unauthorized: that is a client token; workers need a worker token'));
      }
      if (typeof token !== 'string' || !workerTokens.includes(token)) {
        this.authRefusals++;
        this.changed();
        return next(new Error('unauthorized: unknown worker token'));
      }
      next();
    });
    this.io.on('connection', (socket) => this.onConnection(socket));
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.http.once('error', reject);
      this.http.listen(this.options.port ?? 0, '127.0.0.1', resolve);
    });
    this.port = (this.http.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => void this.io.close(() => resolve()));
  }

  /** Update results (fine-tuning shards), by shard id, in arrival order. */
  get updates(): { shardId: string; payload: UpdatePayload; connection: number }[] {
    return this.results.flatMap(({ message, connection }) =>
      message.payload.kind === 'update' ? [{ shardId: message.shardId, payload: message.payload, connection }] : [],
    );
  }

  addBlob(bytes: Uint8Array, hash = sha256(bytes)): string {
    this.blobs.set(hash, bytes);
    return hash;
  }

  enqueue(...shards: Shard[]): void {
    this.queue.push(...shards);
    for (const peer of this.peers.values()) this.topUp(peer);
  }

  /** Resolves once `predicate` holds (checked on every event); rejects after `timeoutMs`. */
  /**
   * Holds every drain barrier until the returned function is called: a worker told to drain stays in its drain
   * (waiting for the answer, up to its own barrier timeout) for as long as a test needs it there.
   */
  holdDrainBarriers(): () => void {
    let release!: () => void;
    this.barrierHold = new Promise<void>((resolve) => (release = resolve));
    return () => {
      this.barrierHold = undefined;
      release();
    };
  }

  async until(predicate: () => boolean, what: string, timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Server-side disconnect of every worker ("io server disconnect" on the worker). */
  disconnectAll(): void {
    for (const peer of this.peers.values()) peer.socket.disconnect(true);
  }

  /** Kills the underlying transports ("transport close" on the worker), as a network failure would. */
  dropTransports(): void {
    for (const peer of this.peers.values()) peer.socket.conn.close();
  }

  control(jobId: string, action: 'cancel' | 'pause' | 'resume'): void {
    for (const peer of this.peers.values()) sendMessage(peer.socket, { type: 'job-control', jobId, action });
  }

  /** Sends a lease directly (bypassing credit), e.g. to simulate a coordinator that overshoots. */
  sendLease(shard: Shard): LeaseMessage | undefined {
    const peer = [...this.peers.values()].find((p) => p.welcomed);
    return peer === undefined ? undefined : this.lease(peer, shard);
  }

  private changed(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private lease(peer: Peer, shard: Shard): LeaseMessage {
    const n = this.nextLease++;
    const lease: LeaseMessage = {
      type: 'lease',
      leaseId: `L${n}`,
      shardId: `S${n}`,
      jobId: shard.jobId,
      deadline: Date.now() + (this.options.leaseMs ?? 30_000),
      attempt: 1,
      task: shard.train ?? { kind: 'score', modelHash: shard.modelHash, batchSize: shard.batchSize ?? 64, items: shard.items },
    };
    peer.outstanding.set(lease.leaseId, lease);
    this.leasesSent.push({ message: lease, connection: peer.n });
    if (shard.train !== undefined && shard.weights !== undefined) {
      const { modelHash, modelVersion } = shard.train;
      sendMessage(peer.socket, { type: 'weights', jobId: shard.jobId, modelHash, modelVersion, weights: Tensor.float32(shard.weights) });
    }
    sendMessage(peer.socket, lease);
    return lease;
  }

  private topUp(peer: Peer): void {
    if (!peer.welcomed || peer.credit === 0) return;
    const limit = peer.credit + (this.options.overshoot ?? 0);
    while (peer.outstanding.size < limit && this.queue.length > 0) this.lease(peer, this.queue.shift()!);
  }

  private settle(peer: Peer, leaseId: string): void {
    peer.outstanding.delete(leaseId);
    this.topUp(peer);
  }

  private onConnection(socket: CoordSocket): void {
    const peer: Peer = { socket, n: ++this.connections, credit: 0, welcomed: false, outstanding: new Map() };
    this.peers.set(socket.id, peer);
    const onError = (e: ProtocolError): void => {
      this.protocolErrors.push(e);
      this.changed();
    };
    const opts = { direction: 'worker' as const };
    const on = <M>(list: Received<M>[], value: M): void => {
      list.push({ message: value, connection: peer.n });
      this.changed();
    };
    onMessage(socket, 'hello', (hello, reply) => {
      on(this.hellos, hello);
      const refusal = this.options.refuseHello;
      if (refusal !== undefined) {
        reply?.({ type: 'error', ...refusal });
        socket.disconnect(true);
        return;
      }
      peer.welcomed = true;
      reply?.({
        type: 'welcome',
        protocolVersion: PROTOCOL_VERSION,
        workerId: `w${peer.n}`,
        leaseMs: this.options.leaseMs ?? 30_000,
        heartbeatMs: this.options.heartbeatMs ?? 5_000,
        maxFrameBytes: 64 * 1024 * 1024,
      });
    }, onError, opts);
    onMessage(socket, 'pull', (pull) => {
      peer.credit = pull.credit;
      on(this.pulls, pull.credit);
      this.topUp(peer);
    }, onError, opts);
    onMessage(socket, 'result', (result) => {
      on(this.results, result);
      this.settle(peer, result.leaseId);
    }, onError, opts);
    onMessage(socket, 'failure', (failure) => {
      on(this.failures, failure);
      this.settle(peer, failure.leaseId);
    }, onError, opts);
    onMessage(socket, 'release', (release) => {
      // Released shards go to the back of the queue. Like the real coordinator, a worker that releases gets no
      // more leases until it pulls again (otherwise a draining worker and its coordinator play ping-pong).
      peer.credit = 0;
      for (const id of release.leaseIds) {
        const lease = peer.outstanding.get(id);
        peer.outstanding.delete(id);
        if (lease !== undefined) this.queue.push(shardOf(lease));
      }
      on(this.releases, release.leaseIds);
    }, onError, opts);
    onMessage(socket, 'heartbeat', (hb, reply) => {
      on(this.heartbeats, hb);
      if (reply === undefined) return;
      // The drain barrier, as the real coordinator answers it (held back while a test keeps a worker draining).
      const answer = (): void => reply({ type: 'heartbeat', time: Date.now() });
      if (this.barrierHold === undefined) answer();
      else void this.barrierHold.then(answer);
    }, onError, opts);
    onMessage(socket, 'blob-request', ({ hash }) => {
      on(this.blobRequests, hash);
      const bytes = this.blobs.get(hash);
      if (bytes === undefined) {
        sendMessage(socket, { type: 'error', code: 'not-found', message: 'no such blob', ref: hash });
        return;
      }
      const size = this.options.chunkBytes ?? 1024 * 1024;
      for (let offset = 0; offset === 0 || offset < bytes.length; offset += size) {
        const data = bytes.slice(offset, offset + size);
        sendMessage(socket, { type: 'blob', hash, offset, total: bytes.length, data, final: offset + data.length === bytes.length });
      }
    }, onError, opts);
    onMessage(socket, 'error', () => {}, onError, opts);
    socket.on('disconnect', () => {
      this.peers.delete(socket.id);
      this.outstandingAtDisconnect.push(peer.outstanding.size);
      // Like the real coordinator: a lost worker's leases go back to the queue (front, so they run next).
      this.queue.unshift(...[...peer.outstanding.values()].map(shardOf));
      this.changed();
    });
    this.changed();
  }
}

/** A Scorer double: score = sum of the item's features (or prompt+response length); counts calls and concurrency. */
export class FakeScorer {
  calls = 0;
  running = 0;
  maxRunning = 0;
  readonly bundles = new Set<string>();
  /** While set, score() waits for it before answering. */
  gate: Promise<void> | undefined;
  /** Make score() reject with this error. */
  failWith: Error | undefined;
  /** Observes each call (e.g. to sample the worker's state while a batch computes). */
  onCall: (() => void) | undefined;
  closed = false;

  async score(hash: string, bundle: Uint8Array, items: ({ features: Float32Array } | { prompt: string; response: string })[]): Promise<Float32Array> {
    this.calls++;
    this.running++;
    this.maxRunning = Math.max(this.maxRunning, this.running);
    this.bundles.add(`${hash}:${bundle.length}`);
    this.onCall?.();
    try {
      await new Promise((resolve) => setImmediate(resolve));
      if (this.gate !== undefined) await this.gate;
      if (this.failWith !== undefined) throw this.failWith;
      return Float32Array.from(items, (item) =>
        'features' in item ? item.features.reduce((a, b) => a + b, 0) : item.prompt.length + item.response.length,
      );
    } finally {
      this.running--;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** Expected fake score of featureItems(…)[i] with `dim` features. */
export const expectedScore = (i: number, dim = 4): number => dim * i + (dim * (dim - 1)) / 2;
