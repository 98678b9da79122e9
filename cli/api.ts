// The coordinator's HTTP API as job submitters use it (fedpool score, train). One line per failure, naming the
// coordinator and what went wrong, so every command reports connection and token problems the same way.
import { createHash } from 'node:crypto';
import { Agent, Response, fetch, request, type Dispatcher } from 'undici';
import { TextBlobError, encodeTextBlob } from '../shared/data/text-blob.js';
import { certificateAdvice, certificateRefusal } from '../shared/tls.js';
import { credentials } from './credentials.js';
import { UserError } from './errors.js';
import type { ColumnsBody, PlannedItems } from './score/plan.js';

/** A job as GET /api/jobs(/:id) shows it (the coordinator sends more fields; commands read these). */
export interface JobStatus {
  id: string;
  kind: string;
  state: 'queued' | 'running' | 'done' | 'failed' | 'cancelled';
  /** Items of a score job, server steps of a training job. */
  progress: { done: number; total: number };
  createdAt: string;
  finishedAt?: string;
  error?: string;
  /** Why no connected worker can take it, while that is so. */
  waiting?: string;
  /** A short id of the submitter token that created it; null for an ownerless job. */
  owner?: string | null;
  /** GET /api/jobs/:id only: shards each worker delivered, since the coordinator started. */
  workers?: Array<{ worker: string; shards: number }>;
}

/** The coordinator did not answer at all (down, restarting, wrong address): a caller may retry. */
export class UnreachableError extends UserError {}

export interface CoordinatorApiOptions {
  /** PEM CA certificate(s) to trust for an https coordinator (`--ca`), instead of the system's. */
  ca?: string | undefined;
}

/** How often a request answered 503 with Retry-After (the coordinator is busy) is sent again. */
const BUSY_RETRIES = 5;

export class CoordinatorApi {
  /** undici's fetch with this agent when a CA is given; its global dispatcher otherwise. */
  private readonly dispatcher: Dispatcher | undefined;

  constructor(
    readonly url: string,
    private readonly token: string | undefined,
    options: CoordinatorApiOptions = {},
  ) {
    this.dispatcher = options.ca === undefined ? undefined : new Agent({ connect: { ca: options.ca } });
  }

  private async request(method: string, path: string, body?: Uint8Array | string, contentType?: string): Promise<Response> {
    const headers: Record<string, string> = {};
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    if (contentType) headers['content-type'] = contentType;
    let res: Response;
    try {
      res = await this.send(method, path, headers, body);
      // A busy coordinator (its budget for request bodies in flight is spent) says when to come back: do, a few times.
      for (let attempt = 1; res.status === 503 && res.headers.has('retry-after') && attempt <= BUSY_RETRIES; attempt++) {
        await res.body?.cancel();
        const seconds = Math.min(30, Math.max(1, Number(res.headers.get('retry-after')) || 5));
        process.stderr.write(`coordinator at ${this.url} is busy; retrying ${method} ${path} in ${seconds} s (${attempt}/${BUSY_RETRIES})\n`);
        await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
        res = await this.send(method, path, headers, body);
      }
    } catch (e) {
      const refused = certificateRefusal(e);
      if (refused !== undefined) throw new UserError(certificateAdvice(this.url, refused));
      // fetch wraps the socket's error in a cause; undici.request throws it as it is.
      const cause = (e as { cause?: { code?: string; message?: string } }).cause ?? (e as { code?: string; message?: string });
      throw new UnreachableError(`cannot reach the coordinator at ${this.url} (${cause?.code ?? cause?.message ?? String(e)})`);
    }
    if (res.status === 401 || res.status === 403) {
      // A HEAD answer has no body to say why: ask a cheap GET route for the reason.
      const why = method === 'HEAD' ? await errorText(await fetch(new URL('/api/workers', this.url), { headers, ...this.via() })) : await errorText(res);
      throw new UserError(`the coordinator at ${this.url} refused the token: ${why}`);
    }
    return res;
  }

  /**
   * One HTTP request. Bytes (a blob upload) go through undici.request, which writes them as they are: fetch copies a
   * body twice on the way, 0.15 s of a 100 MB upload's 0.5 s. Its answer is turned into a Response like fetch's.
   */
  private async send(method: string, path: string, headers: Record<string, string>, body: Uint8Array | string | undefined): Promise<Response> {
    const url = new URL(path, this.url);
    if (!(body instanceof Uint8Array)) return fetch(url, { method, headers, body, ...this.via() });
    const answer = await request(url, { method, headers: { ...headers, 'content-length': String(body.byteLength) }, body, ...this.via() });
    const text = await answer.body.text();
    const pairs: Array<[string, string]> = [];
    for (const [k, v] of Object.entries(answer.headers)) for (const one of Array.isArray(v) ? v : v === undefined ? [] : [v]) pairs.push([k, one]);
    const empty = [101, 204, 205, 304].includes(answer.statusCode) || method === 'HEAD';
    return new Response(empty ? null : text, { status: answer.statusCode, headers: pairs });
  }

  private via(): { dispatcher?: Dispatcher } {
    return this.dispatcher === undefined ? {} : { dispatcher: this.dispatcher };
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.request(method, path, body === undefined ? undefined : JSON.stringify(body), body === undefined ? undefined : 'application/json');
    if (!res.ok) throw new UserError(`coordinator: ${method} ${path} failed (${res.status}): ${await errorText(res)}`);
    return (await res.json()) as T;
  }

  /** Lets a quarantined worker take leases again. */
  async unquarantine(name: string): Promise<void> {
    await this.json('POST', `/api/workers/${encodeURIComponent(name)}/unquarantine`);
  }

  async hasBlob(hash: string): Promise<boolean> {
    const res = await this.request('HEAD', `/api/blobs/${hash}`);
    return res.ok;
  }

  async putBlob(hash: string, bytes: Uint8Array): Promise<void> {
    const res = await this.request('PUT', `/api/blobs/${hash}`, bytes, 'application/octet-stream');
    if (!res.ok) throw new UserError(`coordinator: uploading blob ${hash.slice(0, 12)}… failed (${res.status}): ${await errorText(res)}`);
  }

  /** Uploads unless the coordinator already holds it (blobs are content-addressed). */
  async ensureBlob(hash: string, bytes: Uint8Array): Promise<void> {
    if (!(await this.hasBlob(hash))) await this.putBlob(hash, bytes);
  }

  /**
   * A job's items as the coordinator takes them: features as a content-addressed blob of float32, prompts and
   * responses as a text blob; never parsed as JSON, and the coordinator slices each shard from the blob file.
   */
  async columnsBody(items: PlannedItems): Promise<ColumnsBody> {
    const bytes = 'features' in items ? new Uint8Array(items.features.buffer, items.features.byteOffset, items.features.byteLength) : textBlob(items.prompts, items.responses);
    const hash = createHash('sha256').update(bytes).digest('hex');
    await this.ensureBlob(hash, bytes);
    return 'features' in items ? { ids: items.ids, features: { dim: items.dim, blob: hash } } : { ids: items.ids, text: { blob: hash } };
  }

  createJob(spec: unknown): Promise<{ id: string }> {
    return this.json('POST', '/api/jobs', spec);
  }

  job(id: string): Promise<JobStatus & Record<string, unknown>> {
    return this.json('GET', `/api/jobs/${encodeURIComponent(id)}`);
  }

  /** A job's status, or undefined when the coordinator has no job of that id that this token may see. */
  async findJob(id: string): Promise<(JobStatus & Record<string, unknown>) | undefined> {
    const path = `/api/jobs/${encodeURIComponent(id)}`;
    const res = await this.request('GET', path);
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (!res.ok) throw new UserError(`coordinator: GET ${path} failed (${res.status}): ${await errorText(res)}`);
    return (await res.json()) as JobStatus & Record<string, unknown>;
  }

  /** The connected workers (GET /api/workers). */
  workers(): Promise<unknown[]> {
    return this.json('GET', '/api/workers');
  }

  /** A job's status; a job the coordinator does not have (for this token) is one line naming `command`. */
  async requireJob(id: string, command: string): Promise<JobStatus & Record<string, unknown>> {
    const job = await this.findJob(id);
    if (job === undefined) throw new UserError(`fedpool ${command}: no job ${id} on the coordinator at ${this.url} (fedpool jobs lists yours)`);
    return job;
  }

  /** Every job this token may see. */
  jobs(): Promise<Array<JobStatus & Record<string, unknown>>> {
    return this.json('GET', '/api/jobs');
  }

  /** The owner id the coordinator gives this token's jobs: the hex sha-256 of the token (undefined without one). */
  get owner(): string | undefined {
    return this.token ? createHash('sha256').update(this.token).digest('hex') : undefined;
  }

  async meta(id: string): Promise<unknown> {
    return (await this.json<{ meta: unknown }>('GET', `/api/jobs/${encodeURIComponent(id)}/meta`)).meta;
  }

  /** Cancels a queued or running job; never deletes one that has ended meanwhile (`?only=cancel`). */
  cancel(id: string): Promise<unknown> {
    return this.json('DELETE', `/api/jobs/${encodeURIComponent(id)}?only=cancel`);
  }

  /**
   * Deletes a job that has ended, with everything stored for it. Only for a job the caller saw ended (an ended job
   * never runs again): for a queued or running one, the same route cancels it instead. One gone meanwhile is no error.
   */
  async deleteEndedJob(id: string): Promise<void> {
    const path = `/api/jobs/${encodeURIComponent(id)}`;
    const res = await this.request('DELETE', path);
    if (res.status === 404) await res.body?.cancel();
    else if (!res.ok) throw new UserError(`coordinator: DELETE ${path} failed (${res.status}): ${await errorText(res)}`);
    else await res.body?.cancel();
  }

  /** Raw bytes of a GET (e.g. a training job's model bundle). */
  async bytes(path: string): Promise<Uint8Array> {
    const res = await this.request('GET', path);
    if (!res.ok) throw new UserError(`coordinator: GET ${path} failed (${res.status}): ${await errorText(res)}`);
    return new Uint8Array(await res.arrayBuffer());
  }

  /** Streams a JSONL route, calling onLine for each parsed line, until the stream ends. */
  async followLines(path: string, onLine: (value: unknown) => void): Promise<void> {
    const res = await this.request('GET', path);
    if (!res.ok || res.body === null) throw new UserError(`coordinator: GET ${path} failed (${res.status}): ${await errorText(res)}`);
    const decoder = new TextDecoder();
    let buffered = '';
    for await (const chunk of res.body) {
      buffered += decoder.decode(chunk as Uint8Array, { stream: true });
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.trim() !== '') onLine(JSON.parse(line));
      }
    }
    if (buffered.trim() !== '') onLine(JSON.parse(buffered));
  }

  /** Streams the job's results JSONL in input order, calling onLine for each parsed line, until the stream ends. */
  followResults(id: string, onLine: (value: unknown) => void): Promise<void> {
    return this.followLines(`/api/jobs/${encodeURIComponent(id)}/results?follow=1`, onLine);
  }

}

/** The API of a command's `--url`, `--token`/`--token-file` and `--ca` (cli/credentials.ts). */
export function coordinatorApi(options: Record<string, unknown>, command: string): CoordinatorApi {
  const { token, ca } = credentials(options, command);
  return new CoordinatorApi(String(options['url']), token, { ca });
}

/** The text blob of a job's items; its one limit (4 GiB of text) as one line, not a stack trace. */
function textBlob(prompts: readonly string[], responses: readonly string[]): Uint8Array {
  try {
    return encodeTextBlob(prompts, responses);
  } catch (e) {
    if (e instanceof TextBlobError) throw new UserError(`fedpool score: the input's texts cannot go in one job (${e.message}); split the input`);
    throw e;
  }
}

async function errorText(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { error?: unknown };
    if (typeof body.error === 'string') return body.error;
  } catch {
    // not JSON
  }
  return text.trim().split('\n')[0] || res.statusText;
}
