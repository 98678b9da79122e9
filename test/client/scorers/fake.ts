// Shared by the scorer tests: the fake inference server with its teardown, float32 comparisons, recorded retries.
import type { ExecutionContext } from 'ava';
import { startInferenceServer, type FakeServer, type FakeServerOptions } from '../../helpers/inference-servers.js';

export async function fake(t: ExecutionContext, options: FakeServerOptions): Promise<FakeServer> {
  const server = await startInferenceServer(options);
  t.teardown(() => server.close());
  return server;
}

/** `actual` (a float32) equals `expected` within float32 rounding. */
export function near(t: ExecutionContext, actual: number | undefined, expected: number, what = ''): void {
  const ok = actual !== undefined && Math.abs(actual - expected) <= 1e-6 * Math.max(1, Math.abs(expected));
  t.true(ok, `${what} expected ${expected}, got ${String(actual)}`);
}

export function nearAll(t: ExecutionContext, actual: Float32Array, expected: readonly number[], what = ''): void {
  t.is(actual.length, expected.length, `${what} length`);
  expected.forEach((e, i) => near(t, actual[i], e, `${what}[${i}]`));
}

/** Retry options whose sleeps return at once and are recorded. */
export function instantRetry(extra: { tries?: number; maxWaitMs?: number; baseMs?: number } = {}) {
  const waits: number[] = [];
  return { waits, retry: { sleep: async (ms: number) => void waits.push(ms), random: () => 0.5, ...extra } };
}

/** Items whose prompts and responses are all different. */
export function items(n: number, tag = 'q'): { prompt: string; response: string }[] {
  return Array.from({ length: n }, (_, i) => ({ prompt: `${tag} ${i}: what is ${i} + ${i}?`, response: ` It is ${2 * i}.` }));
}

/** The POST bodies the fake got on `path`. */
export function posts(server: FakeServer, path: string): Record<string, unknown>[] {
  return server.requests.filter((r) => r.method === 'POST' && r.path === path).map((r) => r.body as Record<string, unknown>);
}
