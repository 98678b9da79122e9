import type { Server as HttpServer } from 'node:http';
import type { Logger } from 'pino';
import { Server, type Socket } from 'socket.io';
import {
  PROTOCOL_VERSION,
  ProtocolError,
  WORKER_MESSAGE_TYPES,
  assertTensor,
  errorMessage,
  messageTypeOfEvent,
  onMessage,
  sendMessage,
  type CoordinatorToWorkerEvents,
  type ErrorMessage,
  type LeaseMessage,
  type Message,
  type MessageHandler,
  type WorkerMessageType,
  type WorkerToCoordinatorEvents,
} from '../shared/protocol/index.js';
import type { Auth } from './auth.js';
import type { Metrics } from './metrics.js';
import { workerOffers, type LeaseSink, type Pool } from './pool.js';

/** A socket that sent more protocol errors than this is disconnected. */
export const MAX_PROTOCOL_ERRORS = 10;

export interface SocketOptions {
  leaseMs: number;
  heartbeatMs: number;
  maxFrameBytes: number;
  logger: Logger;
}

type WorkerSocket = Socket<WorkerToCoordinatorEvents, CoordinatorToWorkerEvents>;

const WORKER_TYPES: ReadonlySet<string> = new Set(WORKER_MESSAGE_TYPES);

/** Heartbeat period told to workers: a few per lease, at most every 5 s. */
export function heartbeatMsFor(leaseMs: number): number {
  return Math.max(50, Math.min(5000, Math.floor(leaseMs / 3)));
}

/**
 * The worker side of the coordinator: socket.io on the HTTP server, token check in the
 * handshake, one WorkerSession per connection translating frames into pool calls.
 */
export class WorkerSockets implements LeaseSink {
  readonly io: Server<WorkerToCoordinatorEvents, CoordinatorToWorkerEvents>;
  private readonly sessions = new Map<string, WorkerSession>();
  private readonly sweeper: NodeJS.Timeout;
  closing = false;

  constructor(
    http: HttpServer,
    readonly pool: Pool,
    auth: Auth,
    readonly metrics: Metrics,
    readonly options: SocketOptions,
  ) {
    this.io = new Server<WorkerToCoordinatorEvents, CoordinatorToWorkerEvents>(http, {
      transports: ['websocket'],
      serveClient: false,
      // Leases and model chunks are large binary frames; the protocol caps frames at maxFrameBytes.
      maxHttpBufferSize: options.maxFrameBytes,
      perMessageDeflate: false,
    });
    this.io.use((socket, next) => {
      const token: unknown = Reflect.get(socket.handshake.auth, 'token');
      const result = auth.check('worker', token);
      if (result.ok) next();
      else {
        options.logger.warn({ address: socket.handshake.address, reason: result.reason }, 'worker refused');
        next(new Error(result.reason));
      }
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
      for (const id of pool.registry.silent(options.leaseMs)) {
        options.logger.warn({ worker: id }, 'worker silent for longer than the lease; dropping it');
        this.sessions.get(id)?.socket.disconnect(true);
      }
    }, options.heartbeatMs);
    this.sweeper.unref();
  }

  register(workerId: string, session: WorkerSession): void {
    this.sessions.set(workerId, session);
  }

  unregister(workerId: string): void {
    this.sessions.delete(workerId);
  }

  sendLease(workerId: string, message: LeaseMessage): void {
    const session = this.sessions.get(workerId);
    if (session === undefined) throw new Error(`worker ${workerId} is not connected`);
    sendMessage(session.socket, message, { maxBytes: this.options.maxFrameBytes });
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

class WorkerSession {
  workerId: string | undefined;
  private errors = 0;
  private readonly log: Logger;

  constructor(
    private readonly owner: WorkerSockets,
    readonly socket: WorkerSocket,
  ) {
    this.log = owner.options.logger.child({ socket: socket.id });
    const decode = { direction: 'worker' as const, maxBytes: owner.options.maxFrameBytes };
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
          if (this.workerId !== undefined) owner.pool.registry.touch(this.workerId);
          return handler(message, reply);
        },
        (e) => this.protocolError(e),
        decode,
      );
    };

    on('hello', (m, reply) => this.hello(m, reply), false);
    // An acked heartbeat is a worker's drain barrier: answering it confirms every earlier frame was handled.
    on('heartbeat', (_m, reply) => reply?.({ type: 'heartbeat', time: Date.now() }));
    on('pull', (m) => {
      const id = this.id();
      owner.pool.registry.setDraining(id, false);
      owner.pool.scheduler.setCredit(id, m.credit);
      owner.pool.pump();
    });
    on('result', (m) => this.result(m));
    on('failure', (m) => {
      if (owner.pool.training.fail(this.id(), m.leaseId, m.reason, m.retryable)) return;
      const outcome = owner.pool.fail(this.id(), m.leaseId, m.retryable, m.reason);
      if (outcome.kind === 'accepted') this.log.warn({ lease: m.leaseId, retryable: m.retryable, reason: m.reason }, 'worker reported a failure');
    });
    on('release', (m) => {
      const id = this.id();
      const n = owner.pool.scheduler.release(id, owner.pool.training.release(id, m.leaseIds));
      owner.pool.registry.setDraining(id, true);
      this.log.info({ worker: id, released: n }, 'worker released leases');
      owner.pool.pump();
    });
    on('blob-request', (m) => this.sendBlob(m.hash));
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

    socket.on('disconnect', (reason) => {
      const id = this.workerId;
      if (id === undefined) return;
      this.workerId = undefined;
      owner.unregister(id);
      owner.pool.registry.remove(id);
      owner.pool.scheduler.removeWorker(id);
      owner.pool.training.removeWorker(id);
      this.log.info({ worker: id, reason }, 'worker disconnected');
      owner.pool.pump();
    });
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
      this.refuse({ type: 'error', code: 'already-registered', message: 'hello was already received on this connection', ref: this.workerId });
      return;
    }
    const { pool, options } = this.owner;
    const info = pool.registry.add(m.name, m.capabilities, 'w');
    this.workerId = info.id;
    pool.scheduler.addWorker(info.id, workerOffers(m.capabilities));
    this.owner.register(info.id, this);
    this.log.info({ worker: info.id, name: m.name, backend: m.capabilities.backend, threads: m.capabilities.threads }, 'worker connected');
    answer({ type: 'welcome', protocolVersion: PROTOCOL_VERSION, workerId: info.id, leaseMs: options.leaseMs, heartbeatMs: options.heartbeatMs, maxFrameBytes: options.maxFrameBytes });
  }

  private result(m: Extract<Message, { type: 'result' }>): void {
    const id = this.id();
    const pool = this.owner.pool;
    if (pool.training.owns(m.leaseId)) {
      const ignored = pool.training.result(id, m);
      if (ignored === null) pool.registry.recordTrainResult(id);
      else this.log.debug({ worker: id, lease: m.leaseId, reason: ignored }, 'training result ignored');
      return;
    }
    const lease = pool.scheduler.lease(m.leaseId);
    if (lease !== undefined && lease.workerId === id) {
      if (lease.shardId !== m.shardId) {
        throw new ProtocolError('invalid-field', `invalid field "shardId": lease ${m.leaseId} is for shard ${lease.shardId}`, { path: 'shardId' });
      }
      try {
        if (m.payload.kind !== 'scores') throw new ProtocolError('invalid-field', 'invalid field "payload.kind": a score lease needs "scores"', { path: 'payload.kind' });
        assertTensor(m.payload.scores, 'float32', [lease.count * lease.width], 'payload.scores');
      } catch (e) {
        // A wrong-shaped result is that lease's failure: the shard goes back to the queue.
        pool.fail(id, m.leaseId, true, e instanceof Error ? e.message : 'invalid result');
        throw e;
      }
    }
    const scores = m.payload.kind === 'scores' ? m.payload.scores.data : new Float32Array(0);
    const outcome = pool.complete(id, m.leaseId, scores, m.elapsedMs);
    if (outcome.kind === 'ignored') this.log.debug({ worker: id, lease: m.leaseId, reason: outcome.reason }, 'result ignored');
  }

  private async sendBlob(hash: string): Promise<void> {
    const { pool, metrics } = this.owner;
    if (!pool.blobs.has(hash)) {
      sendMessage(this.socket, { type: 'error', code: 'not-found', message: `no blob ${hash}`, ref: hash });
      return;
    }
    for (const chunk of pool.blobs.chunks(hash)) {
      if (!this.socket.connected) return;
      sendMessage(this.socket, chunk);
      metrics.blobBytesServed.inc(chunk.data.byteLength);
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
