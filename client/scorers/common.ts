import type * as z from 'zod';
import { ScorerError, oneLine } from './errors.js';
import type { HttpClient, RetryPolicy } from './http.js';

/** What every API adapter gets from createServerScorer (see ./index.ts). */
export interface ScorerContext {
  readonly api: string;
  readonly http: HttpClient;
  /** The retry policy of check(): few tries, short waits. */
  readonly checkRetry: RetryPolicy;
  /** --scorer-concurrency: the width of a score() call's request pool (the instance's limiter bounds them all). */
  readonly concurrency: number;
  /** --scorer-batch, when given. */
  readonly batch: number | undefined;
  readonly log: (line: string) => void;
  /** The model: --scorer-model, else set by check() (or the first score()) from what the server reports. */
  model: string | undefined;
}

/** What an adapter implements; ./index.ts wraps it into a ServerScorer. */
export interface Adapter {
  /** Resolves what is unknown (model, route, batch cap) and sends one tiny request of the real kind. */
  check(): Promise<void>;
  /** Resolves what score()/embed() cannot do without (the model name), with the normal retry policy. */
  prepare(): Promise<void>;
  score?(items: readonly { prompt: string; response: string }[]): Promise<Float32Array>;
  embed?(texts: readonly string[]): Promise<{ dim: number; data: Float32Array }>;
  /** Drops what it holds (caches). */
  close?(): void;
}

/** The error for an answer of the wrong shape (non-retryable): "<api> server <url> answered something that is not a
 * <api> response: <what is wrong>". */
export function notA(ctx: ScorerContext, what: string): ScorerError {
  return new ScorerError(`${ctx.http.where} answered something that is not a ${ctx.api} response: ${ctx.http.redact(oneLine(what, 300))}`, { retryable: false });
}

/** `json` validated by `schema`, or notA() naming the first problems (one line). */
export function parseShape<T>(ctx: ScorerContext, schema: z.ZodType<T>, json: unknown, where: string): T {
  const result = schema.safeParse(json);
  if (result.success) return result.data;
  const problems = result.error.issues.slice(0, 3).map((issue) => `${issue.path.length === 0 ? '(body)' : issue.path.join('.')}: ${issue.message}`);
  throw notA(ctx, `${where}: ${problems.join('; ')}`);
}

/** `value` when it is a finite number; else a non-retryable error naming the item and what came back. */
export function finiteAt(ctx: ScorerContext, value: unknown, item: number, what = 'a score'): number {
  if (typeof value === 'number' && Number.isFinite(value)) return value;
  const shown = value === undefined ? 'nothing' : JSON.stringify(value) ?? String(value);
  throw new ScorerError(`${ctx.http.where}: item ${item}: expected ${what} (a finite number), the server returned ${oneLine(shown, 100)}`, { retryable: false });
}

/** `err` with " (items a–b)" (or " (item a)") added to its message, other fields kept: tells which input it was. */
export function atItems(err: unknown, start: number, end: number): unknown {
  if (!(err instanceof ScorerError) || err.retryable || /\bitems? \d/.test(err.message)) return err;
  const which = end - start === 1 ? `item ${start}` : `items ${start}–${end - 1}`;
  return new ScorerError(`${err.message} (${which})`, {
    retryable: err.retryable,
    ...(err.status === undefined ? {} : { status: err.status }),
    ...(err.serverMessage === undefined ? {} : { serverMessage: err.serverMessage }),
    cause: err.cause,
  });
}

/** [start, end) ranges of at most `size` covering 0..n. */
export function chunks(n: number, size: number): [number, number][] {
  const out: [number, number][] = [];
  for (let start = 0; start < n; start += size) out.push([start, Math.min(n, start + size)]);
  return out;
}

/**
 * Runs task(0) … task(count − 1) with at most `width` running at once and stops starting new ones after the first
 * failure, which it then rethrows (after the running ones settle): a bad item does not send the rest of a shard.
 */
export async function runPool(count: number, width: number, task: (index: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failure: { err: unknown } | undefined;
  const runner = async (): Promise<void> => {
    while (failure === undefined && next < count) {
      const index = next++;
      try {
        await task(index);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, count) }, runner));
  if (failure !== undefined) throw failure.err;
}
