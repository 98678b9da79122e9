import * as z from 'zod';
import { ScorerError, oneLine } from './errors.js';
import type { Limiter } from './limiter.js';

/**
 * JSON over HTTP to an inference server, with the retry rules of docs/scorers.md ("Retries"): 429, 503, 424,
 * connection errors and timeouts are retried with exponential backoff and full jitter (or the server's
 * Retry-After), at most `tries` tries and `maxWaitMs` of waiting per request; any other 5xx is a retryable error
 * at once (the shard goes back to the coordinator); a 4xx is a non-retryable error quoting the server's message.
 * Every attempt holds one slot of the scorer's limiter, but not while it sleeps between tries.
 */

export interface RetryPolicy {
  tries: number;
  maxWaitMs: number;
  baseMs: number;
  capMs: number;
  sleep: (ms: number) => Promise<void>;
  random: () => number;
}

export interface RequestStats {
  requests: number;
  retries: number;
  requestMs: number;
}

export interface HttpClientOptions {
  api: string;
  /** Base URL without a trailing slash (and without credentials). */
  url: string;
  key?: string;
  timeoutMs: number;
  limiter: Limiter;
  retry: RetryPolicy;
  log: (line: string) => void;
  stats: RequestStats;
}

/** Largest successful response body read (an embedding batch of 2,048 × 4,096 floats as JSON is ~170 MB; we batch
 * far smaller). A bigger body is an error rather than unbounded memory. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** Largest error body read; the rest is discarded. */
const MAX_ERROR_BODY_BYTES = 64 * 1024;
const RETRIED_STATUSES = new Set([424, 429, 503]);
const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN',
  'UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT',
]);

type Outcome =
  | { ok: true; json: unknown }
  | { ok: false; status?: number; reason: string; retryAfterMs?: number; cause?: unknown };

// The three error shapes of docs/scorers.md ("Errors"), plus FastAPI's `detail` (OpenRLHF, SGLang).
const NestedError = z.object({ error: z.object({ message: z.string() }) });
const FlatError = z.object({ message: z.string() });
const PlainError = z.object({ error: z.string() });
const DetailError = z.object({ detail: z.string() });
const DetailListError = z.object({ detail: z.array(z.object({ msg: z.string() })).min(1) });

/** The server's own message from an error body, or the first 200 characters of the body, or the status text. */
export function serverMessage(body: string, statusText: string): string {
  let json: unknown;
  try {
    json = JSON.parse(body) as unknown;
  } catch {
    json = undefined;
  }
  if (json !== undefined) {
    const nested = NestedError.safeParse(json);
    if (nested.success) return oneLine(nested.data.error.message);
    const plain = PlainError.safeParse(json);
    if (plain.success) return oneLine(plain.data.error);
    const flat = FlatError.safeParse(json);
    if (flat.success) return oneLine(flat.data.message);
    const detail = DetailError.safeParse(json);
    if (detail.success) return oneLine(detail.data.detail);
    const list = DetailListError.safeParse(json);
    if (list.success) return oneLine(list.data.detail.map((d) => d.msg).join('; '));
  }
  const text = oneLine(body, 200);
  return text === '' ? statusText : text;
}

/** Retry-After as milliseconds from now: delay-seconds or an HTTP-date; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  if (/^\d+(\.\d+)?$/.test(text)) return Math.round(Number(text) * 1000);
  const date = Date.parse(text);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function errorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** A one-line reason for a failed exchange: the innermost cause's message, e.g. "connect ECONNREFUSED 127.0.0.1:9". */
export function describeError(err: unknown): string {
  let inner: unknown = err;
  for (let depth = 0; depth < 5; depth++) {
    const cause = (inner as { cause?: unknown } | null)?.cause;
    if (cause === undefined || cause === null) break;
    inner = cause;
  }
  if (inner instanceof AggregateError && inner.errors.length > 0) inner = inner.errors[0];
  const message = inner instanceof Error ? inner.message : String(inner);
  const code = errorCode(inner);
  const text = message !== '' ? message : (code ?? String(err));
  return oneLine(code !== undefined && !text.includes(code) ? `${code} ${text}` : text, 300);
}

function isNetworkError(err: unknown): boolean {
  for (let e: unknown = err, depth = 0; e !== undefined && e !== null && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = errorCode(e);
    if (code !== undefined && NETWORK_CODES.has(code)) return true;
    if (e instanceof AggregateError && e.errors.some((x) => NETWORK_CODES.has(errorCode(x) ?? ''))) return true;
  }
  // undici's "fetch failed" and "terminated" (a socket closed mid-body) are TypeErrors with the socket error as cause.
  return err instanceof TypeError && (err as { cause?: unknown }).cause !== undefined;
}

function isTimeout(err: unknown): boolean {
  const name = (err as { name?: unknown } | null)?.name;
  return name === 'TimeoutError' || name === 'AbortError';
}

/** Reads at most `max` bytes of the body. Past `max`: undefined (the rest is cancelled). */
async function readBody(response: Response, max: number): Promise<string | undefined> {
  const length = Number(response.headers.get('content-length') ?? NaN);
  if (length > max) {
    await response.body?.cancel().catch(() => undefined);
    return undefined;
  }
  if (response.body === null) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel().catch(() => undefined);
      return undefined;
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(Buffer.concat(chunks, total));
}

async function abortableSleep(sleep: (ms: number) => Promise<void>, ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<void>((resolve) => {
    onAbort = resolve;
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    await Promise.race([sleep(ms), aborted]);
  } finally {
    if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
  }
}

export function defaultSleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export class HttpClient {
  /** "<api> server <url>", how every message names the server. */
  readonly where: string;
  private readonly closer = new AbortController();
  private readonly headers: Record<string, string>;

  constructor(private readonly options: HttpClientOptions) {
    this.where = `${options.api} server ${options.url}`;
    this.headers = { accept: 'application/json' };
    if (options.key !== undefined && options.key !== '') this.headers.authorization = `Bearer ${options.key}`;
  }

  /** `text` with the key (if any) blanked out, for anything that goes into a message. */
  redact(text: string): string {
    const key = this.options.key;
    return key !== undefined && key.length > 0 ? text.split(key).join('***') : text;
  }

  get closed(): boolean {
    return this.closer.signal.aborted;
  }

  closedError(): ScorerError {
    return new ScorerError(`${this.where}: the scorer was closed`, { retryable: true });
  }

  /** Aborts requests in flight and sleeps between tries; later requests fail with closedError(). */
  close(): void {
    if (this.closed) return;
    this.closer.abort();
    this.options.limiter.close(this.closedError());
  }

  /**
   * Sends one request (retrying as the policy allows) and returns the parsed JSON body of a 2xx answer. Throws
   * ScorerError: retryable after the tries or the waiting budget ran out, or on a 5xx other than 503; not retryable
   * on a 4xx (other than 424/429), or a body that is not JSON or is too large.
   */
  async request(method: 'GET' | 'POST', path: string, body?: unknown, retry: RetryPolicy = this.options.retry): Promise<unknown> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    let waited = 0;
    for (let attempt = 1; ; attempt++) {
      const outcome = await this.attempt(method, path, payload);
      if (outcome.ok) return outcome.json;
      const giveUp = (why: string): ScorerError => {
        const what = outcome.status === undefined ? `cannot reach ${this.where}: ${outcome.reason}` : `${this.where}: ${outcome.status} ${outcome.reason}`;
        return new ScorerError(`${what} (${why})`, {
          retryable: true,
          ...(outcome.status === undefined ? {} : { status: outcome.status, serverMessage: outcome.reason }),
          cause: outcome.cause,
        });
      };
      const tried = `gave up after ${attempt} ${attempt === 1 ? 'try' : 'tries'}, ${(waited / 1000).toFixed(1)} s of waiting`;
      if (attempt >= retry.tries) throw giveUp(tried);
      const left = retry.maxWaitMs - waited;
      let wait: number;
      if (outcome.retryAfterMs !== undefined) {
        wait = outcome.retryAfterMs;
        if (wait > left) throw giveUp(`the server asked to retry after ${(wait / 1000).toFixed(1)} s, beyond the ${(retry.maxWaitMs / 1000).toFixed(0)} s budget; ${tried}`);
      } else {
        if (left <= 0) throw giveUp(tried);
        wait = Math.min(left, Math.floor(retry.random() * Math.min(retry.capMs, retry.baseMs * 2 ** (attempt - 1))));
      }
      this.options.stats.retries++;
      const failure = outcome.status === undefined ? outcome.reason : `${outcome.status} ${outcome.reason}`;
      this.options.log(`${this.where}: ${method} ${path}: ${failure}; try ${attempt + 1}/${retry.tries} in ${(wait / 1000).toFixed(2)} s`);
      await abortableSleep(retry.sleep, wait, this.closer.signal);
      if (this.closed) throw this.closedError();
      waited += wait;
    }
  }

  private async attempt(method: string, path: string, payload: string | undefined): Promise<Outcome> {
    const release = await this.options.limiter.acquire();
    const started = performance.now();
    this.options.stats.requests++;
    // One signal for this try: its timeout, or close(). Not AbortSignal.any(): Node 20 keeps every signal derived
    // from a long-lived source (the close signal) alive; these listeners are removed in `finally` instead.
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    const controller = new AbortController();
    const onTimeout = (): void => controller.abort(timeout.reason);
    const onClose = (): void => controller.abort(this.closer.signal.reason);
    timeout.addEventListener('abort', onTimeout, { once: true });
    this.closer.signal.addEventListener('abort', onClose, { once: true });
    const signal = controller.signal;
    try {
      const headers = payload === undefined ? this.headers : { ...this.headers, 'content-type': 'application/json' };
      const response = await fetch(`${this.options.url}${path}`, { method, headers, body: payload, signal });
      if (response.ok) {
        const text = await readBody(response, MAX_BODY_BYTES);
        if (text === undefined) {
          throw new ScorerError(`${this.where}: ${method} ${path} answered more than ${MAX_BODY_BYTES / 1024 / 1024} MiB`, { retryable: false });
        }
        try {
          return { ok: true, json: JSON.parse(text) as unknown };
        } catch {
          throw new ScorerError(
            `${this.where} answered something that is not a ${this.options.api} response: ${method} ${path} answered a body that is not JSON: ${this.redact(oneLine(text, 200))}`,
            { retryable: false },
          );
        }
      }
      const status = response.status;
      const text = (await readBody(response, MAX_ERROR_BODY_BYTES)) ?? '';
      const message = this.redact(serverMessage(text, response.statusText));
      if (RETRIED_STATUSES.has(status)) {
        const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
        return { ok: false, status, reason: message, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
      }
      throw new ScorerError(`${this.where}: ${status} ${message}`, { retryable: status >= 500, status, serverMessage: message });
    } catch (err) {
      if (err instanceof ScorerError) throw err;
      if (this.closed) throw this.closedError();
      if (isTimeout(err)) return { ok: false, reason: `no answer within ${this.options.timeoutMs} ms`, cause: err };
      if (isNetworkError(err)) return { ok: false, reason: this.redact(describeError(err)), cause: err };
      throw new ScorerError(`${this.where}: ${method} ${path}: ${this.redact(describeError(err))}`, { retryable: false, cause: err });
    } finally {
      timeout.removeEventListener('abort', onTimeout);
      this.closer.signal.removeEventListener('abort', onClose);
      release();
      this.options.stats.requestMs += performance.now() - started;
    }
  }
}
