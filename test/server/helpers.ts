// Test helpers for the coordinator: spawn the real CLI, talk HTTP, and simulate workers with raw
// socket.io-client sockets speaking the protocol module (bench/bench-worker.ts; the real worker lives in client/).
import type { ExecutionContext } from 'ava';
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cleanEnv, startFedpool } from '../helpers/processes.js';
import { BenchWorker, type BenchWorkerOptions } from '../../bench/bench-worker.js';

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
 * Spawns `fedpool coordinator` and waits for its listening line (a loaded machine gets a generous
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

export function expectedScore(item: { features?: number[]; prompt?: string; response?: string }): number {
  if (item.features !== undefined) {
    let s = 0;
    for (const v of item.features) s += Math.fround(v);
    return Math.fround(s);
  }
  return (item.prompt?.length ?? 0) + (item.response?.length ?? 0);
}

export type FakeWorkerOptions = Partial<BenchWorkerOptions>;

/**
 * A worker simulated with a raw socket.io-client socket and the protocol module (bench/bench-worker.ts), with the
 * tests' token and name unless given others; it answers leases with fakeScore and does not fetch models.
 */
export type FakeWorker = BenchWorker;
export const FakeWorker = {
  connect: (url: string, options: FakeWorkerOptions = {}): Promise<FakeWorker> => BenchWorker.connect(url, { token: WORKER_TOKEN, name: 'fake', ...options }),
};

/** A feature job's results are every item, in input order, with the fake workers' score (within float32 rounding). */
export async function checkResults(t: { deepEqual: (a: unknown, b: unknown) => void; true: (v: boolean) => void }, url: string, id: string, items: { id: string; features: number[] }[]): Promise<void> {
  const r = await results(url, id);
  t.deepEqual(r.map((x) => x.id), items.map((x) => x.id));
  t.true(r.every((x, i) => Math.abs(x.score - expectedScore(items[i] as { features: number[] })) <= 1e-6));
}
