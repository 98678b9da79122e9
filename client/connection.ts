// The worker's link to the coordinator: one socket.io-client socket per session, hello/welcome, and reconnection
// with exponential backoff. Leases belong to a session; once it ends nothing more is sent on its behalf.
import { io, type Socket } from 'socket.io-client';
import { Agent, fetch } from 'undici';
import { certificateAdvice, certificateRefusal } from '../shared/tls.js';
import {
  ProtocolError,
  assertProtocolVersion,
  decodeMessage,
  encodeMessage,
  onMessage,
  sendMessage,
  type CoordinatorMessageType,
  type CoordinatorToWorkerEvents,
  type HelloMessage,
  type MessageOf,
  type WelcomeMessage,
  type WorkerMessage,
  type WorkerToCoordinatorEvents,
} from '../shared/protocol/index.js';

export type WorkerSocket = Socket<CoordinatorToWorkerEvents, WorkerToCoordinatorEvents>;

// ---- backoff -----------------------------------------------------------------------------------

export interface BackoffOptions {
  /** First delay before jitter (ms). */
  initialMs?: number;
  /** Cap before jitter (ms). */
  maxMs?: number;
  factor?: number;
  /** Source of jitter in [0, 1); injectable for tests. */
  random?: () => number;
}

/**
 * Exponential backoff with "equal jitter": the n-th delay is uniform in [d/2, d] where d = min(max, initial·factor^n).
 * Jitter keeps a fleet of workers that lost the same coordinator from reconnecting in lockstep.
 */
export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly factor: number;
  private readonly random: () => number;
  private n = 0;

  constructor(options: BackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 500;
    this.maxMs = options.maxMs ?? 10_000;
    this.factor = options.factor ?? 2;
    this.random = options.random ?? Math.random;
  }

  /** Failed attempts since the last reset. */
  get attempts(): number {
    return this.n;
  }

  next(): number {
    const base = Math.min(this.maxMs, this.initialMs * this.factor ** Math.min(this.n, 64));
    this.n++;
    return Math.round(base / 2 + (this.random() * base) / 2);
  }

  reset(): void {
    this.n = 0;
  }
}

// ---- errors --------------------------------------------------------------------------------------

/** The coordinator refused our token; retrying cannot help. `reason` is the coordinator's own words. */
export class TokenRefusedError extends Error {
  override readonly name = 'TokenRefusedError';
  constructor(readonly reason: string) {
    super(`coordinator refused the token: ${reason}`);
  }
}

/** The coordinator speaks another protocol version; retrying cannot help either. */
export class VersionRefusedError extends Error {
  override readonly name = 'VersionRefusedError';
}

/** The coordinator's TLS certificate is not trusted (`--ca` missing or wrong, expired, another name): final too. */
export class CertificateRefusedError extends Error {
  override readonly name = 'CertificateRefusedError';
  constructor(url: string, readonly problem: string) {
    super(certificateAdvice(url, problem));
  }
}

/**
 * socket.io reports a middleware refusal as a connect_error carrying the server's message. The design fixes those
 * messages ("unauthorized: …", "… is a client token; workers need a worker token"), so the text is the signal.
 */
export function isTokenRefusal(message: string): boolean {
  return /unauthori[sz]ed|token/i.test(message);
}

/**
 * Why the coordinator refuses us for good: its refusal of `token` (GET /api/worker-auth, the check its websocket
 * upgrade makes), or our refusal of its TLS certificate (the probe uses the same CA as the socket). Undefined when
 * neither holds or it cannot say (unreachable, an older coordinator without the route): a retry may help.
 */
async function upgradeRefusal(url: string, token: string | undefined, ca: string | undefined): Promise<Error | undefined> {
  const agent = ca === undefined ? undefined : new Agent({ connect: { ca } });
  try {
    const res = await fetch(new URL('/api/worker-auth', url), {
      headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(10_000),
      ...(agent === undefined ? {} : { dispatcher: agent }),
    });
    if (res.status !== 401) return undefined;
    const body = (await res.json()) as { error?: unknown };
    return typeof body.error === 'string' ? new TokenRefusedError(body.error) : undefined;
  } catch (e) {
    const problem = certificateRefusal(e);
    return problem === undefined ? undefined : new CertificateRefusedError(url, problem);
  } finally {
    void agent?.close().catch(() => {});
  }
}

// ---- sessions ------------------------------------------------------------------------------------

/** One welcomed connection. `send` refuses (returns false) once the session is over. */
export interface Session {
  /** Increases with each welcome, so logs can tell sessions apart. */
  readonly id: number;
  readonly welcome: WelcomeMessage;
  readonly live: boolean;
  /** Validates, encodes and sends; false when the session is over. Throws ProtocolError for an invalid message. */
  send(message: WorkerMessage): boolean;
}

class LiveSession implements Session {
  live = true;
  /** Frames sent so far; the drain barrier repeats while frames keep being sent behind it. */
  sent = 0;
  constructor(
    readonly id: number,
    readonly welcome: WelcomeMessage,
    private readonly socket: WorkerSocket,
  ) {}

  send(message: WorkerMessage): boolean {
    // A disconnected socket.io socket buffers emits and flushes them on reconnect; ours never reconnects (a new
    // session gets a new socket), but checking here keeps anything from queueing on a dying one.
    if (!this.live || !this.socket.connected) return false;
    sendMessage(this.socket, message, { maxBytes: this.welcome.maxFrameBytes });
    this.sent++;
    return true;
  }
}

export type MessageHandlers = {
  [T in CoordinatorMessageType]?: (message: MessageOf<T>, session: Session) => void;
};

export interface RetryInfo {
  /** 1 for the first retry since the last welcome. */
  attempt: number;
  delayMs: number;
  reason: string;
}

export interface ConnectionOptions {
  url: string;
  token?: string | undefined;
  /** PEM CA certificate(s) to trust for an https/wss coordinator, instead of the system's (`--ca`). */
  ca?: string | undefined;
  /** Built afresh for every attempt, so capabilities (e.g. measured items/s) stay current. */
  hello: () => HelloMessage;
  handlers: MessageHandlers;
  onSession: (session: Session) => void;
  onSessionEnd: (session: Session, reason: string) => void;
  onRetry?: (info: RetryInfo) => void;
  /** A frame from the coordinator that could not be decoded or handled. */
  onProtocolError?: (error: ProtocolError) => void;
  backoff?: BackoffOptions;
  /** How long to wait for the welcome (ms). */
  helloTimeoutMs?: number;
  /** socket.io's connection timeout (ms). */
  connectTimeoutMs?: number;
}

/**
 * Keeps one session with the coordinator alive until closed. Retries everything except a refused token or protocol
 * version, which reject `done`. socket.io's own reconnection is off: it skips server-initiated disconnects and
 * middleware refusals, and would flush emits buffered for the old connection onto the new one; a fresh socket per
 * attempt with our own backoff has neither problem.
 */
export class Connection {
  readonly done: Promise<void>;
  private resolveDone!: () => void;
  private rejectDone!: (error: Error) => void;
  private readonly backoff: Backoff;
  private socket: WorkerSocket | undefined;
  private endAttempt: ((reason: string, retry: boolean) => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private current: LiveSession | undefined;
  private sessions = 0;
  private started = false;
  private stopped = false;
  private noRetry = false;

  constructor(private readonly options: ConnectionOptions) {
    this.backoff = new Backoff(options.backoff);
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
  }

  get session(): Session | undefined {
    return this.current;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.attempt();
  }

  /** Keeps the current session (if any) but never reconnects; closes at once when there is no session. */
  stopRetrying(): void {
    this.noRetry = true;
    if (this.current === undefined) this.close();
  }

  /**
   * Like close(), but first lets what was already sent reach the coordinator's handlers. socket.io's server
   * dispatches each event on process.nextTick and drops it if the socket disconnected in the meantime, so a final
   * result read in the same tick as our DISCONNECT would be lost (and its shard redone after the lease expires).
   * Waiting for the transport to flush, then `lingerMs`, makes them arrive in separate reads.
   */
  async closeGracefully(lingerMs: number): Promise<void> {
    const socket = this.socket;
    if (this.current !== undefined && socket !== undefined && lingerMs > 0) {
      const engine = socket.io.engine;
      const wait = (ms: number, until?: Promise<void>) =>
        new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, ms);
          void until?.then(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      if (engine !== undefined && engine.writeBuffer.length > 0) {
        await wait(30_000, new Promise<void>((resolve) => engine.once('drain', () => resolve())));
      }
      // The barrier: the coordinator answers an acked heartbeat only after handling every frame sent before it.
      // A lease already on its way when we drained arrives before the answer and is released behind the barrier,
      // so repeat until a barrier has nothing sent after it. An older coordinator without the ack leaves us the
      // plain linger.
      const session = this.current;
      for (let round = 0; round < 8; round++) {
        const before = session instanceof LiveSession ? session.sent : 0;
        const answered = await socket
          .timeout(10_000)
          .emitWithAck('heartbeat', encodeMessage({ type: 'heartbeat', time: Date.now(), inFlight: 0 }))
          .then(
            () => true,
            () => false,
          );
        if (!answered) {
          await wait(lingerMs);
          break;
        }
        if (!(session instanceof LiveSession) || session.sent === before) break;
      }
    }
    this.close();
  }

  /** Disconnects and stops; `done` resolves. */
  close(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.endAttempt?.('closed', false);
    this.resolveDone();
  }

  private fatal(error: Error): void {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.timer);
    this.endAttempt?.(error.message, false);
    this.rejectDone(error);
  }

  private scheduleRetry(reason: string): void {
    if (this.stopped) return;
    if (this.noRetry) {
      this.close();
      return;
    }
    const delayMs = this.backoff.next();
    this.options.onRetry?.({ attempt: this.backoff.attempts, delayMs, reason });
    this.timer = setTimeout(() => this.attempt(), delayMs);
  }

  private attempt(): void {
    if (this.stopped) return;
    const { url, token, ca, handlers } = this.options;
    const socket: WorkerSocket = io(url, {
      // The coordinator checks the token in the websocket upgrade (the header), before any frame is read; `auth`
      // carries it too, for coordinators that check it in the socket.io handshake.
      auth: token === undefined ? {} : { token },
      extraHeaders: token === undefined ? {} : { authorization: `Bearer ${token}` },
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      autoConnect: false,
      timeout: this.options.connectTimeoutMs ?? 10_000,
      ...(ca === undefined ? {} : { ca }),
    });
    this.socket = socket;
    let session: LiveSession | undefined;
    let ended = false;
    const end = (reason: string, retry: boolean): void => {
      if (ended) return;
      ended = true;
      if (this.socket === socket) {
        this.socket = undefined;
        this.endAttempt = undefined;
      }
      socket.removeAllListeners();
      socket.disconnect();
      if (session !== undefined) {
        session.live = false;
        if (this.current === session) this.current = undefined;
        this.options.onSessionEnd(session, reason);
      }
      if (retry) this.scheduleRetry(reason);
    };
    this.endAttempt = end;

    socket.on('connect_error', (err) => {
      // `active` is false when the server refused us in its middleware (no transport problem): a token refusal is
      // final; anything else the server said is retried like a network error.
      if (!socket.active && isTokenRefusal(err.message)) {
        this.fatal(new TokenRefusedError(err.message));
        return;
      }
      if (Reflect.get(err, 'type') !== 'TransportError') {
        end(`cannot connect: ${err.message}`, true);
        return;
      }
      // A refused websocket upgrade is a bare HTTP 400, like a broken transport: ask the coordinator whether it was
      // the token (final) or something a retry may fix. A certificate we refuse fails that probe too (final).
      void upgradeRefusal(url, token, ca).then((refusal) => {
        if (ended || this.stopped) return;
        if (refusal !== undefined) this.fatal(refusal);
        else end(`cannot connect: ${err.message}`, true);
      });
    });
    socket.on('disconnect', (reason) => end(`connection lost: ${reason}`, true));
    socket.on('connect', () => {
      void (async () => {
        try {
          const welcome = await this.handshake(socket, () => ended);
          if (welcome === undefined || ended) return;
          this.backoff.reset();
          session = new LiveSession(++this.sessions, welcome, socket);
          this.current = session;
          this.options.onSession(session);
        } catch (error) {
          if (error instanceof TokenRefusedError || error instanceof VersionRefusedError) this.fatal(error);
          else end(error instanceof Error ? error.message : String(error), true);
        }
      })();
    });

    const onError = (error: ProtocolError): void => this.options.onProtocolError?.(error);
    for (const type of Object.keys(handlers) as CoordinatorMessageType[]) {
      this.listen(socket, type, () => session, onError);
    }
    socket.connect();
  }

  private listen<T extends CoordinatorMessageType>(
    socket: WorkerSocket,
    type: T,
    session: () => LiveSession | undefined,
    onError: (error: ProtocolError) => void,
  ): void {
    const handler = this.options.handlers[type] as ((message: MessageOf<T>, session: Session) => void) | undefined;
    if (handler === undefined) return;
    onMessage(
      socket,
      type,
      (message) => {
        const s = session();
        // Before the welcome there is nothing to act on (the coordinator only sends work after `pull`).
        if (s !== undefined && s.live) handler(message, s);
      },
      onError,
      { direction: 'coordinator' },
    );
  }

  /** hello → welcome. Resolves undefined if the attempt ended meanwhile; throws to end (or fail) the attempt. */
  private async handshake(socket: WorkerSocket, ended: () => boolean): Promise<WelcomeMessage | undefined> {
    const timeoutMs = this.options.helloTimeoutMs ?? 10_000;
    let reply: unknown;
    try {
      reply = await socket.timeout(timeoutMs).emitWithAck('hello', encodeMessage(this.options.hello()));
    } catch {
      if (ended()) return undefined;
      throw new Error(`no welcome within ${timeoutMs} ms`);
    }
    const message = decodeMessage(reply, { direction: 'coordinator' });
    // A refusal counts even if the coordinator's disconnect, read in the same tick, already ended this attempt.
    if (message.type === 'error') {
      const text = `${message.code}: ${message.message}`;
      if (message.code === 'unsupported-version') throw new VersionRefusedError(`coordinator refused our protocol version: ${text}`);
      if (message.code === 'unauthorized') throw new TokenRefusedError(text);
      throw new Error(`coordinator refused hello: ${text}`);
    }
    if (ended()) return undefined;
    if (message.type !== 'welcome') throw new Error(`expected welcome, got ${message.type}`);
    try {
      assertProtocolVersion(message.protocolVersion);
    } catch (e) {
      throw new VersionRefusedError(e instanceof Error ? e.message : String(e));
    }
    return message;
  }
}
