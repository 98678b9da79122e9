// A fedpool worker: registers with the coordinator, pulls leases up to its credit, scores them through a Scorer,
// heartbeats, and drains on request. Transport details live in connection.ts, blobs in blob-cache.ts, lease
// execution in lease-runner.ts; this module wires them together per session.
import { totalmem } from 'node:os';
import {
  MAX_CREDIT,
  MAX_DATASETS,
  PROTOCOL_VERSION,
  errorMessage,
  type Backend,
  type HelloMessage,
  type ProtocolError,
  type WelcomeMessage,
} from '../shared/protocol/index.js';
import { BlobCache, BlobReceiver } from './blob-cache.js';
import { Connection, type BackoffOptions, type RetryInfo, type Session } from './connection.js';
import { LeaseRunner, type DatasetSource, type LeaseChannel, type Scorer, type ServerScorer, type Trainer } from './lease-runner.js';

export { CertificateRefusedError, TokenRefusedError, VersionRefusedError } from './connection.js';
export type { DatasetSource, Scorer, ScorerItem, ServerScorer, Trainer } from './lease-runner.js';

export interface WorkerLog {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

export interface WorkerOptions {
  url: string;
  token?: string | undefined;
  /** PEM CA certificate(s) to trust for an https/wss coordinator (`--ca`). */
  ca?: string | undefined;
  name: string;
  /** Scoring threads: leases scored at once. */
  threads: number;
  /** Leases held at once; default threads × 2 (+ 4 with an inference server), so the next batch is ready when one finishes. */
  credit?: number;
  backend: Backend;
  device?: string | undefined;
  scorer: Scorer;
  /**
   * The inference server this worker fronts (`--scorer-url`); announced in the hello, runs scorer tasks, and embeds
   * the text of bundles over embeddings (those leases count as bundle leases: their head runs on the threads).
   */
  server?: ServerScorer;
  /** Runs fine-tuning (train) leases; when given, the worker advertises 'train' besides 'score'. */
  trainer?: Trainer;
  /** The worker's own datasets (`--data NAME=PATH`) that train leases may name. */
  datasets?: DatasetSource;
  /** Extra milliseconds before each result (experiments with slow or heterogeneous workers). */
  delayMs?: number;
  /** Shared blob cache (memory + optional disk); default: memory only. */
  blobs?: BlobCache;
  log?: WorkerLog;
  /** Called on every welcome (first connection and each reconnection). */
  onConnected?: (welcome: WelcomeMessage) => void;
  backoff?: BackoffOptions;
  helloTimeoutMs?: number;
  blobIdleTimeoutMs?: number;
  /** After draining, wait this long (ms) before disconnecting so the last results are processed (connection.ts). */
  disconnectLingerMs?: number;
  /** Connection retries are logged at most this often (ms). Default 3 s. */
  retryLogIntervalMs?: number;
}

/** Scorer-task shards in flight at once: two keep the server busy while one shard's results travel. */
const SERVER_SHARDS = 2;

const quiet: WorkerLog = { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} };

interface SessionState {
  channel: LeaseChannel & { live: boolean };
  blobs: BlobReceiver;
  heartbeat: NodeJS.Timeout;
}

/**
 * Lifecycle: `start()` connects (and reconnects) until `drain()` or `close()`; the promise it returns resolves then,
 * or rejects with TokenRefusedError / VersionRefusedError, which no retry can fix.
 */
export class Worker {
  readonly credit: number;
  private readonly log: WorkerLog;
  private readonly blobs: BlobCache;
  private readonly runner: LeaseRunner;
  private readonly connection: Connection;
  private readonly sessions = new Map<Session, SessionState>();
  private draining: Promise<void> | undefined;
  private lastRetryLog = Number.NEGATIVE_INFINITY;

  constructor(private readonly options: WorkerOptions) {
    if (!Number.isInteger(options.threads) || options.threads < 1) throw new RangeError(`threads must be a positive integer, got ${options.threads}`);
    this.credit = Math.min(MAX_CREDIT, options.credit ?? options.threads * 2 + (options.server === undefined ? 0 : 2 * SERVER_SHARDS));
    this.log = options.log ?? quiet;
    this.blobs = options.blobs ?? new BlobCache();
    this.runner = new LeaseRunner({
      scorer: options.scorer,
      server: options.server,
      maxServerRunning: SERVER_SHARDS,
      trainer: options.trainer,
      datasets: options.datasets,
      ...(options.delayMs === undefined ? {} : { delayMs: options.delayMs }),
      credit: this.credit,
      maxRunning: options.threads,
      log: this.log,
    });
    this.connection = new Connection({
      url: options.url,
      token: options.token,
      ca: options.ca,
      hello: () => this.hello(),
      handlers: {
        lease: (lease, session) => {
          const state = this.sessions.get(session);
          if (state !== undefined) this.runner.accept(lease, state.channel);
        },
        weights: (m) => this.runner.weights(m),
        blob: (chunk, session) => {
          if (this.sessions.get(session)?.blobs.onChunk(chunk) === false) this.log.debug(`unrequested blob chunk for ${chunk.hash.slice(0, 12)}…`);
        },
        'job-control': (control) => {
          if (control.action === 'cancel') this.runner.cancelJob(control.jobId);
          else if (control.action === 'pause') this.runner.pauseJob(control.jobId);
          else this.runner.resumeJob(control.jobId);
        },
        error: (error, session) => {
          const blobs = this.sessions.get(session)?.blobs;
          if (error.code === 'not-found' && error.ref !== undefined && blobs?.onNotFound(error.ref, error.message) === true) return;
          this.log.warn(`coordinator reported ${error.code}${error.ref === undefined ? '' : ` (${error.ref})`}: ${error.message}`);
        },
        heartbeat: () => {},
      },
      onSession: (session) => this.onSession(session),
      onSessionEnd: (session, reason) => this.onSessionEnd(session, reason),
      onRetry: (info) => this.onRetry(info),
      onProtocolError: (error) => this.onProtocolError(error),
      backoff: options.backoff,
      helloTimeoutMs: options.helloTimeoutMs,
    });
  }

  /** Leases held for the current connection. */
  get inFlight(): number {
    return this.runner.inFlight;
  }

  get connected(): boolean {
    return this.connection.session !== undefined;
  }

  /** Connects and works until drained or closed; rejects when the coordinator refuses us for good. */
  start(): Promise<void> {
    this.connection.start();
    return this.connection.done;
  }

  /**
   * Graceful stop: hands back leases not started yet (`release`), finishes the running ones and sends their results,
   * then disconnects. Never reconnects meanwhile: a lost connection's results would be ignored anyway.
   */
  drain(): Promise<void> {
    this.draining ??= (async () => {
      this.connection.stopRetrying();
      await this.runner.drain();
      await this.connection.closeGracefully(this.options.disconnectLingerMs ?? 250);
    })();
    return this.draining;
  }

  /** Immediate stop: disconnects; running leases finish in the scorer but send nothing. */
  close(): void {
    this.connection.close();
  }

  private hello(): HelloMessage {
    const { name, threads, backend, device } = this.options;
    const itemsPerSecond = this.runner.itemsPerSecond;
    return {
      type: 'hello',
      protocolVersion: PROTOCOL_VERSION,
      name,
      capabilities: {
        backend,
        threads,
        ...(device === undefined ? {} : { device: device.slice(0, 256) }),
        memoryBytes: totalmem(),
        ...(itemsPerSecond === undefined ? {} : { itemsPerSecond }),
        tasks: this.options.trainer === undefined ? ['score'] : ['score', 'train'],
        ...(this.options.trainer !== undefined && this.options.datasets !== undefined && this.options.datasets.names.length > 0
          ? { datasets: this.options.datasets.names.slice(0, MAX_DATASETS) }
          : {}),
        ...(this.options.server === undefined ? {} : { scorer: { api: this.options.server.api, model: this.options.server.model } }),
      },
    };
  }

  private onSession(session: Session): void {
    const blobs = new BlobReceiver({
      request: (hash) => session.send({ type: 'blob-request', hash }),
      ...(this.options.blobIdleTimeoutMs === undefined ? {} : { idleTimeoutMs: this.options.blobIdleTimeoutMs }),
    });
    const channel: LeaseChannel & { live: boolean } = {
      get live() {
        return session.live;
      },
      send: (message) => session.send(message),
      bundle: (hash) => this.blobs.get(hash, (h) => blobs.fetch(h)),
    };
    const heartbeat = setInterval(() => {
      try {
        session.send({ type: 'heartbeat', time: Date.now(), inFlight: this.runner.inFlight });
      } catch (e) {
        this.log.warn(`heartbeat not sent: ${(e as Error).message}`);
      }
    }, session.welcome.heartbeatMs);
    this.sessions.set(session, { channel, blobs, heartbeat });
    this.log.debug(`session ${session.id}: worker id ${session.welcome.workerId}, lease ${session.welcome.leaseMs} ms, heartbeat ${session.welcome.heartbeatMs} ms`);
    this.options.onConnected?.(session.welcome);
    session.send({ type: 'pull', credit: this.credit });
  }

  private onSessionEnd(session: Session, reason: string): void {
    const state = this.sessions.get(session);
    if (state === undefined) return;
    this.sessions.delete(session);
    clearInterval(state.heartbeat);
    state.blobs.abort(reason);
    const abandoned = this.runner.abandon(state.channel);
    // The coordinator re-queues them; the retry line (or the drain) says the rest.
    if (abandoned > 0) this.log.warn(`${reason}: abandoned ${abandoned} lease(s) held on that connection`);
  }

  private onRetry(info: RetryInfo): void {
    const now = Date.now();
    if (now - this.lastRetryLog < (this.options.retryLogIntervalMs ?? 3000)) return;
    this.lastRetryLog = now;
    this.log.warn(`${this.options.url}: ${info.reason}; retrying in ${(info.delayMs / 1000).toFixed(1)} s (attempt ${info.attempt})`);
  }

  private onProtocolError(error: ProtocolError): void {
    this.log.warn(`bad message from the coordinator: ${error.message}`);
    try {
      this.connection.session?.send(errorMessage(error));
    } catch {
      // Reporting is best effort.
    }
  }
}
