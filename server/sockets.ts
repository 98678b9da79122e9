import type { Server as HttpServer } from 'node:http';
import type { Logger } from 'pino';
import { Server, type Socket } from 'socket.io';
import {
  PROTOCOL_VERSION,
  ProtocolError,
  WORKER_MESSAGE_TYPES,
  errorMessage,
  messageTypeOfEvent,
  onMessage,
  encodeMessage,
  sendEncoded,
  sendMessage,
  type CoordinatorToWorkerEvents,
  type ErrorMessage,
  type Message,
  type WeightsMessage,
  type MessageHandler,
  type WorkerMessageType,
  type WorkerToCoordinatorEvents,
} from '../shared/protocol/index.js';
import { bearerToken, type Auth } from './auth.js';
import { TokenBucket, type RateLimit } from './rate-limit.js';
import type { Metrics } from './metrics.js';
import type { LeaseSink, JobRegistry } from './job-registry.js';
import type { OutgoingLease } from './job-service.js';

/** A socket that sent more protocol errors than this is disconnected. */
export const MAX_PROTOCOL_ERRORS = 10;

export interface SocketOptions {
  leaseMs: number;
  heartbeatMs: number;
  maxFrameBytes: number;
  logger: Logger;
  /** Frames one connection may send: a sender over it is disconnected (default DEFAULT_FRAME_RATE). */
  frameRate?: RateLimit;
  /** Who a worker is for blame, records and votes: its name (default) or its worker token (docs/security.md). */
  workerIdentity?: 'name' | 'token';
}

/**
 * Per-connection frame budget. A busy honest worker sends a result, a pull and now and then a heartbeat per shard; at
 * the coordinator's target of tens of microseconds per shard a few thousand frames a second is the most one worker
 * earns, so a sender far above that is flooding (docs/security.md, "Rate limits"). The burst is small because a burst
 * that arrives at once is decoded in one stretch of the event loop (its credit cap bounds an honest worker's bursts).
 */
export const DEFAULT_FRAME_RATE: RateLimit = { perSecond: 5_000, burst: 2_000 };

type WorkerSocket = Socket<WorkerToCoordinatorEvents, CoordinatorToWorkerEvents>;

const WORKER_TYPES: ReadonlySet<string> = new Set(WORKER_MESSAGE_TYPES);

/** Heartbeat period told to workers: a few per lease, at most every 5 s. */
export function heartbeatMsFor(leaseMs: number): number {
  return Math.max(50, Math.min(5000, Math.floor(leaseMs / 3)));
}

/**
 * The worker side of the coordinator: socket.io on the HTTP server, token check in the
 * handshake, one WorkerSession per connection translating frames into job-registry calls.
 */
export class WorkerSockets implements LeaseSink {
  readonly io: Server<WorkerToCoordinatorEvents, CoordinatorToWorkerEvents>;
  /** Bytes blob transfers have queued and not yet written, over every connection, as last observed by each. */
  blobQueued = 0;
  /** Blob bytes sent in this turn of the event loop (blobTurn). */
  private turnBytes = 0;
  private turnReset = false;
  private readonly sessions = new Map<string, WorkerSession>();
  /** Encoded `weights` frames by message object (the training service keeps one per job and version). */
  private readonly weightFrames = new WeakMap<WeightsMessage, Uint8Array>();
  private readonly sweeper: NodeJS.Timeout;
  closing = false;

  constructor(
    http: HttpServer,
    readonly jobs: JobRegistry,
    readonly auth: Auth,
    readonly metrics: Metrics,
    readonly options: SocketOptions,
  ) {
    this.io = new Server<WorkerToCoordinatorEvents, CoordinatorToWorkerEvents>(http, {
      transports: ['websocket'],
      serveClient: false,
      // Leases and model chunks are large binary frames; the protocol caps frames at maxFrameBytes.
      maxHttpBufferSize: options.maxFrameBytes,
      perMessageDeflate: false,
      // The worker token travels in the upgrade request's Authorization header and is checked before the websocket
      // exists: a stranger cannot make the coordinator buffer a single frame, let alone one of maxFrameBytes
      // (docs/security.md). The refusal is a bare HTTP 400; a worker learns why from GET /api/worker-auth.
      allowRequest: (req, callback) => {
        const result = auth.check('worker', bearerToken(req.headers.authorization));
        if (result.ok) {
          callback(null, true);
          return;
        }
        options.logger.warn({ address: req.socket.remoteAddress, reason: result.reason }, 'worker refused');
        metrics.protocolErrors.inc({ code: 'unauthorized' });
        callback(result.reason, false);
      },
    });
    this.io.on('connection', (socket) => {
      if (this.closing) {
        socket.disconnect(true);
        return;
      }
      new WorkerSession(this, socket);
    });
    // Drop workers that went silent: their connection may look open while the peer is gone.
    this.sweeper = setInterval(() => {
      const silent = jobs.workers.silent(options.leaseMs);
      if (silent.length === 0) return;
      options.logger.warn({ workers: silent.length, first: silent[0] }, 'workers silent for longer than the lease; dropping them');
      // None of them takes another lease (a lease freed by one removal must not go to the next silent one); then they
      // are dropped SWEEP_CHUNK at a time, one dispatch per chunk, so a thousand of them do not hold the event loop.
      for (const id of silent) if (jobs.workers.get(id) !== undefined) jobs.scheduler.setCredit(id, 0);
      const drop = (from: number): void => {
        jobs.batch(() => {
          for (const id of silent.slice(from, from + SWEEP_CHUNK)) this.sessions.get(id)?.socket.disconnect(true);
        });
        if (from + SWEEP_CHUNK < silent.length) setImmediate(() => drop(from + SWEEP_CHUNK));
      };
      drop(0);
    }, options.heartbeatMs);
    this.sweeper.unref();
  }

  /** Resolves when `bytes` more blob bytes may be sent in this turn of the event loop (BLOB_BYTES_PER_TURN). */
  async blobTurn(bytes: number): Promise<void> {
    for (;;) {
      if (!this.turnReset) {
        this.turnReset = true;
        setImmediate(() => {
          this.turnBytes = 0;
          this.turnReset = false;
        });
      }
      if (this.turnBytes === 0 || this.turnBytes + bytes <= BLOB_BYTES_PER_TURN) {
        this.turnBytes += bytes;
        return;
      }
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  register(workerId: string, session: WorkerSession): void {
    this.sessions.set(workerId, session);
  }

  unregister(workerId: string): void {
    this.sessions.delete(workerId);
  }

  sendLease(workerId: string, lease: OutgoingLease): void {
    const session = this.sessions.get(workerId);
    if (session === undefined) throw new Error(`worker ${workerId} is not connected`);
    const { message, weights } = lease;
    // A model version's weights are encoded once, then the same frame goes to every worker, before the lease that
    // needs it on the same ordered connection.
    if (weights !== undefined) {
      let frame = this.weightFrames.get(weights);
      if (frame === undefined) {
        // A copy of its own: encodeMessage's frame may be a view into msgpackr's output buffer, which it would pin.
        frame = encodeMessage(weights, { maxBytes: this.options.maxFrameBytes }).slice();
        this.weightFrames.set(weights, frame);
      }
      sendEncoded(session.socket, 'weights', frame);
    }
    // A score lease is built from items checked at submission (score-jobs.ts): not validated again on the way out. A
    // training lease (momentum, rows) is still validated.
    sendMessage(session.socket, message, { maxBytes: this.options.maxFrameBytes, trusted: message.task.kind === 'score' });
  }

  dropJob(workerId: string, jobId: string): void {
    const session = this.sessions.get(workerId);
    if (session !== undefined) sendMessage(session.socket, { type: 'job-control', jobId, action: 'cancel' });
  }

  /** Disconnects every worker and closes socket.io (not the HTTP server). */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    for (const socket of await this.io.fetchSockets()) socket.disconnect(true);
    this.io.engine.close();
  }
}

/** Silent workers dropped per turn of the event loop. */
const SWEEP_CHUNK = 128;

/** Blob transfers one connection may have under way at once. */
const MAX_BLOB_TRANSFERS = 4;
/** Bytes a connection may have queued for writing before a blob transfer waits for it to drain (about 2 chunks). */
const BLOB_BUFFER_BYTES = 2 * 1024 * 1024;
/** The same in engine.io's packet buffer (blob chunks are 1 MiB). */
const BLOB_BUFFER_PACKETS = 2;
/**
 * Bytes all blob transfers together may have queued and not yet written: past it, every transfer waits. With the
 * per-connection bound this caps what readers that stop reading can make the coordinator hold.
 */
const BLOB_QUEUED_TOTAL = 128 * 1024 * 1024;
/**
 * Blob bytes all transfers together send in one turn of the event loop: past it, a transfer waits for the next turn.
 * Sending a 1 MiB frame costs about 1 ms of copying into the socket, and 150 transfers that wake together would
 * otherwise send 150 of them in one turn (a 0.15–0.7 s stop of everything else).
 */
const BLOB_BYTES_PER_TURN = 8 * 1024 * 1024;
/** A transfer whose connection wrote nothing queued for this long is a reader that stopped: it is disconnected. */
const BLOB_STALL_MS = 30_000;

/** Whether an engine.io close description is the websocket's "frame over maxPayload" (ws closes before we decode). */
function overMaxPayload(description: unknown): boolean {
  for (let e = description, depth = 0; typeof e === 'object' && e !== null && depth < 4; depth++) {
    const message: unknown = Reflect.get(e, 'message');
    if (typeof message === 'string' && /max payload size exceeded/i.test(message)) return true;
    e = Reflect.get(e, 'description');
  }
  return false;
}

class WorkerSession {
  workerId: string | undefined;
  /** The identity it registered under (its record outlives the registration). */
  private who: string | undefined;
  /** Blobs being sent to this connection now. */
  private readonly transfers = new Set<string>();
  /** Its share of the owner's blobQueued (bytes queued at its last check). */
  private observed = 0;
  private errors = 0;
  private readonly log: Logger;

  constructor(
    private readonly owner: WorkerSockets,
    readonly socket: WorkerSocket,
  ) {
    this.log = owner.options.logger.child({ socket: socket.id });
    // Every incoming packet, before it is decoded or dispatched, spends from the connection's budget.
    const bucket = new TokenBucket(owner.options.frameRate ?? DEFAULT_FRAME_RATE);
    let flooded = false;
    socket.use((_packet, next) => {
      if (flooded) return;
      if (bucket.take()) {
        next();
        return;
      }
      flooded = true;
      this.log.warn({ worker: this.workerId }, 'frame rate over the limit; disconnecting');
      owner.metrics.protocolErrors.inc({ code: 'rate-limited' });
      this.send({ type: 'error', code: 'rate-limited', message: 'more frames per second than this coordinator allows one connection; disconnecting' });
      setImmediate(() => socket.disconnect(true));
    });
    // A frame socket.io hands us is ours alone: large tensors (updates) are read where they lie in it, not copied.
    const decode = { direction: 'worker' as const, maxBytes: owner.options.maxFrameBytes, tensorViews: true };
    const on = <T extends WorkerMessageType>(type: T, handler: MessageHandler<T>, needsHello = true): void => {
      onMessage(
        socket,
        type,
        (message, reply) => {
          if (owner.closing) return;
          if (needsHello && this.workerId === undefined) {
            this.refuse({ type: 'error', code: 'not-registered', message: `send hello before ${type}` });
            return;
          }
          if (this.workerId !== undefined) owner.jobs.workers.touch(this.workerId);
          return handler(message, reply);
        },
        (e) => this.protocolError(e),
        decode,
      );
    };

    on('hello', (m, reply) => this.hello(m, reply), false);
    // An acked heartbeat is a worker's drain barrier: answering it confirms every earlier frame was handled.
    on('heartbeat', (_m, reply) => reply?.({ type: 'heartbeat', time: Date.now() }));
    on('pull', (m) => owner.jobs.pull(this.id(), m.credit));
    on('result', (m) => {
      const ignored = owner.jobs.result(this.id(), m);
      if (ignored !== null) this.log.debug({ worker: this.workerId, lease: m.leaseId, reason: ignored }, 'result ignored');
    });
    on('failure', (m) => {
      if (owner.jobs.failure(this.id(), m)) this.log.warn({ lease: m.leaseId, retryable: m.retryable, reason: m.reason }, 'worker reported a failure');
    });
    on('release', (m) => {
      const n = owner.jobs.releaseLeases(this.id(), m.leaseIds);
      this.log.info({ worker: this.workerId, released: n }, 'worker released leases');
    });
    on('blob-request', (m) => this.requestBlob(m.hash));
    on('error', (m) => {
      this.log.warn({ worker: this.workerId, code: m.code, ref: m.ref, message: m.message }, 'worker reported an error');
    }, false);

    // Events that are not worker messages at all (or coordinator-only ones) get an error too.
    socket.onAny((event: unknown) => {
      const type = typeof event === 'string' ? messageTypeOfEvent(event) : undefined;
      if (type === undefined || !WORKER_TYPES.has(type)) {
        const name = typeof event === 'string' ? JSON.stringify(event.slice(0, 40)) : 'non-string';
        this.protocolError(new ProtocolError('unknown-type', `unknown event ${name} from a worker`));
      }
    });

    // A frame over the size limit is refused by the websocket itself, which closes the connection before the decoder
    // sees a byte: count it like the decoder's 'oversize', against the sender's record.
    socket.conn.once('close', (_reason: string, description?: unknown) => {
      if (!overMaxPayload(description)) return;
      this.log.warn({ worker: this.workerId, identity: this.who }, 'frame over the size limit; the websocket was closed');
      owner.metrics.protocolErrors.inc({ code: 'oversize' });
      if (this.who !== undefined) owner.jobs.records.bad(this.who, 'protocolErrors');
    });

    socket.on('disconnect', (reason) => {
      const id = this.workerId;
      if (id === undefined) return;
      this.workerId = undefined;
      owner.unregister(id);
      owner.jobs.removeWorker(id);
      this.log.info({ worker: id, reason }, 'worker disconnected');
    });
  }

  /** Its name, or with `--worker-identity token` its token's digest: many names or machines of one token count once. */
  private identity(name: string): string {
    if (this.owner.options.workerIdentity !== 'token') return name;
    const result = this.owner.auth.check('worker', bearerToken(this.socket.request.headers.authorization));
    const digest = result.ok ? result.principal.owner : null;
    return digest === null ? name : `token:${digest.slice(0, 16)}`;
  }

  private id(): string {
    if (this.workerId === undefined) throw new Error('not registered');
    return this.workerId;
  }

  private hello(m: Extract<Message, { type: 'hello' }>, reply: ((m: Message) => void) | undefined): void {
    const answer = (msg: Message): void => {
      if (reply !== undefined) reply(msg);
      else sendMessage(this.socket, msg);
    };
    if (m.protocolVersion !== PROTOCOL_VERSION) {
      answer({ type: 'error', code: 'unsupported-version', message: `this coordinator speaks protocol version ${PROTOCOL_VERSION}, the worker ${m.protocolVersion}` });
      this.log.warn({ version: m.protocolVersion }, 'worker speaks another protocol version; disconnecting');
      // Let the ack go out first.
      setImmediate(() => this.socket.disconnect(true));
      return;
    }
    if (this.workerId !== undefined) {
      // Answered the way the hello asked (its ack, if it wanted one), and counted as a protocol error.
      this.count('already-registered');
      answer({ type: 'error', code: 'already-registered', message: 'hello was already received on this connection', ref: this.workerId });
      return;
    }
    const { jobs, options } = this.owner;
    const info = jobs.addWorker(m.name, m.capabilities, this.identity(m.name));
    this.workerId = info.id;
    this.who = info.identity;
    this.owner.register(info.id, this);
    this.log.info({ worker: info.id, name: m.name, backend: m.capabilities.backend, threads: m.capabilities.threads }, 'worker connected');
    answer({ type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: info.id, leaseMs: options.leaseMs, heartbeatMs: options.heartbeatMs, maxFrameBytes: options.maxFrameBytes });
  }

  /**
   * A worker's request for a blob. One transfer per blob per connection (a repeat while it is under way is dropped)
   * and at most MAX_BLOB_TRANSFERS at once; between chunks the transfer waits until the connection has written what
   * it buffered, so a worker that stops reading cannot make the coordinator queue a blob hundreds of times over
   * (docs/security.md, "Rate limits").
   */
  private requestBlob(hash: string): void {
    if (this.transfers.has(hash)) return;
    if (this.transfers.size >= MAX_BLOB_TRANSFERS) {
      this.send({ type: 'error', code: 'busy', message: `at most ${MAX_BLOB_TRANSFERS} blob transfers at once per connection; ask again when one ends`, ref: hash });
      return;
    }
    this.transfers.add(hash);
    void this.sendBlob(hash).finally(() => {
      this.transfers.delete(hash);
      if (this.transfers.size === 0) {
        this.owner.blobQueued -= this.observed;
        this.observed = 0;
      }
    });
  }

  /**
   * What this connection has queued and not yet written: engine.io's packet buffer and the websocket's bytes (read
   * through their public-but-untyped fields; 0 when a field is not there).
   */
  private queued(): { packets: number; bytes: number } {
    const conn: unknown = this.socket.conn;
    const field = (o: unknown, key: string): unknown => (typeof o === 'object' && o !== null ? Reflect.get(o, key) : undefined);
    const buffer = field(conn, 'writeBuffer');
    const bytes = field(field(field(conn, 'transport'), 'socket'), 'bufferedAmount');
    return { packets: Array.isArray(buffer) ? buffer.length : 0, bytes: typeof bytes === 'number' ? bytes : 0 };
  }

  /**
   * Waits until this connection has written all but a couple of MiB of what it queued and all transfers together hold
   * less than BLOB_QUEUED_TOTAL (or it is gone). A connection that writes nothing for BLOB_STALL_MS is disconnected.
   */
  private async drained(): Promise<void> {
    let since = Date.now();
    let last = Infinity;
    for (;;) {
      const q = this.queued();
      this.owner.blobQueued += q.bytes - this.observed;
      this.observed = q.bytes;
      if (!this.socket.connected) return;
      if (q.bytes <= BLOB_BUFFER_BYTES && q.packets <= BLOB_BUFFER_PACKETS && this.owner.blobQueued <= BLOB_QUEUED_TOTAL) return;
      if (q.bytes < last) since = Date.now();
      last = q.bytes;
      if (q.bytes > 0 && Date.now() - since > BLOB_STALL_MS) {
        this.log.warn({ worker: this.workerId, queued: q.bytes }, 'blob transfer stalled: the worker stopped reading; disconnecting');
        this.count('slow-reader');
        this.socket.disconnect(true);
        return;
      }
      await new Promise<void>((resolve) => setTimeout(resolve, 5));
    }
  }

  private async sendBlob(hash: string): Promise<void> {
    const { jobs, metrics } = this.owner;
    const present = jobs.blobs.has(hash);
    if (!present || !(await jobs.blobs.verify(hash))) {
      sendMessage(this.socket, { type: 'error', code: 'not-found', message: `no blob ${hash}`, ref: hash });
      // A blob that was there but no longer hashes to its name was removed: the jobs that need it cannot go on.
      if (present) jobs.blobDamaged(hash);
      return;
    }
    for (const { frame, bytes } of jobs.blobs.frames(hash)) {
      await this.drained();
      await this.owner.blobTurn(frame.byteLength);
      if (!this.socket.connected) return;
      sendEncoded(this.socket, 'blob', frame);
      metrics.blobBytesServed.inc(bytes);
      // Yield between chunks so a large model never monopolises the event loop.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  private refuse(message: ErrorMessage): void {
    this.count(message.code);
    this.send(message);
  }

  private protocolError(e: ProtocolError): void {
    this.log.warn({ worker: this.workerId, code: e.code, err: e.message }, 'protocol error');
    this.count(e.code);
    this.send(errorMessage(e));
  }

  private count(code: string): void {
    this.owner.metrics.protocolErrors.inc({ code });
    if (this.workerId !== undefined) this.owner.jobs.protocolError(this.workerId);
    this.errors++;
    if (this.errors === MAX_PROTOCOL_ERRORS + 1) {
      this.log.warn({ worker: this.workerId, errors: this.errors }, 'too many protocol errors; disconnecting');
      this.send({ type: 'error', code: 'too-many-errors', message: `more than ${MAX_PROTOCOL_ERRORS} protocol errors; disconnecting` });
      setImmediate(() => this.socket.disconnect(true));
    }
  }

  private send(message: ErrorMessage): void {
    try {
      sendMessage(this.socket, message);
    } catch (e) {
      this.log.error({ err: e instanceof Error ? e.message : String(e) }, 'cannot send error message');
    }
  }
}
