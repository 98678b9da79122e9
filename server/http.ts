import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import { bearerToken, ownerId, type Auth, type Principal } from './auth.js';
import { BlobHashMismatchError, BlobTooLargeError, isSha256 } from './blobs.js';
import { dashboardHtml } from './dashboard.js';
import { MAX_JOB_ITEMS, parseJobRequest, type ParsedJob } from './jobs.js';
import { counted, type BodyBudget } from './body-budget.js';
import { readJsonBody } from './json-body.js';
import { CollectedItems, parseJobRequestInSlices } from './job-request-slices.js';
import { RequestRefused } from './request-refused.js';
import { resultLines } from './result-lines.js';
import { workerViews } from './worker-view.js';
import type { Metrics } from './metrics.js';
import type { JobRegistry } from './job-registry.js';
import { SubmitError } from './score-jobs.js';
import { isTerminal } from './store.js';
import { parseTrainJobRequest } from './training/job-request.js';
import { TrainSubmitError } from './training/training-service.js';

export interface ApiOptions {
  jobs: JobRegistry;
  auth: Auth;
  metrics: Metrics;
  logger: Logger;
  /** Serve /metrics without a token. */
  metricsPublic: boolean;
  /** Largest JSON request body (POST /api/jobs). */
  maxJsonBytes: number;
  /** Largest blob upload. */
  maxBlobBytes: number;
  /** The request bodies (JSON and blobs) being received at once, together (server/body-budget.ts). */
  bodyBudget: BodyBudget;
  /** Most entries in one array or object of a JSON body (server/json-body.ts). */
  maxItems: number;
  /** The coordinator's own npm package, served as `GET /fedpool.tgz` (absent: 404). */
  packageTarball?: () => Promise<Uint8Array>;
}

export const DEFAULT_MAX_JSON_BYTES = 256 * 1024 * 1024;
export const DEFAULT_MAX_BLOB_BYTES = 512 * 1024 * 1024;
/** How long one rendering of /metrics is served to every scraper. */
const METRICS_TTL_MS = 1_000;
/** /metrics requests that may wait for the shared rendering at once; more are answered 503 with Retry-After. */
const METRICS_CONCURRENCY = 64;

/** Shards read from the store per write while streaming results. */
const RESULT_SHARDS_PER_WRITE = 64;

/** The principal of routes without a token (health, dashboard page, public metrics): owns nothing, sees nothing owned. */
const NOBODY: Principal = { owner: '', admin: false };

type Params = Record<string, string>;
/** `who`: the submitter making the request (routes with access 'none' get an anonymous principal that sees nothing owned). */
type Handler = (req: IncomingMessage, res: ServerResponse, params: Params, url: URL, who: Principal) => void | Promise<void>;

interface Route {
  method: string;
  pattern: RegExp;
  keys: string[];
  /** 'submitter': a submitter (client) token, or open; 'none': no token; 'metrics': a submitter token unless --metrics-public. */
  access: 'submitter' | 'none' | 'metrics';
  handler: Handler;
}

function send(res: ServerResponse, status: number, body: string, type: string, extra: Record<string, string> = {}): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...extra });
  res.end(body);
}

let clientScript: string | undefined;

/** socket.io's browser client as its package ships it, read once. */
function socketIoClient(): string {
  // Its package exports only dist/socket.io.js; the minified file sits beside it.
  const pkg = createRequire(import.meta.url).resolve('socket.io-client/package.json');
  clientScript ??= readFileSync(path.join(path.dirname(pkg), 'dist', 'socket.io.min.js'), 'utf8');
  return clientScript;
}

function json(res: ServerResponse, status: number, value: unknown, extra?: Record<string, string>): void {
  send(res, status, `${JSON.stringify(value)}\n`, 'application/json; charset=utf-8', extra);
}

/** The HTTP API of the contract on node:http: a handful of routes, no framework. */
export class Api {
  private readonly routes: Route[] = [];
  private readonly streams = new Set<ServerResponse>();
  private metricsCache: { at: number; text: Promise<string> } | undefined;
  private metricsWaiting = 0;
  private closing = false;

  constructor(private readonly o: ApiOptions) {
    const jobs = o.jobs;
    this.route('GET', '/healthz', 'none', (_req, res) => json(res, 200, { ok: true }));
    // The package a new worker installs with one command (README, "Joining a pool with your own machine"): public, as
    // the package itself is; the worker token is checked when the worker connects.
    this.route('GET', '/fedpool.tgz', 'none', async (_req, res) => {
      const pack = o.packageTarball;
      if (pack === undefined) throw new RequestRefused(404, 'this coordinator does not serve its package');
      let bytes: Uint8Array;
      try {
        bytes = await pack();
      } catch (e) {
        throw new RequestRefused(503, `this coordinator cannot pack its package: ${e instanceof Error ? e.message : String(e)}`);
      }
      res.writeHead(200, { 'content-type': 'application/gzip', 'content-length': bytes.byteLength, 'content-disposition': 'attachment; filename="fedpool.tgz"', 'cache-control': 'no-cache' });
      res.end(bytes);
    });
    // Why a worker's websocket upgrade was refused (the upgrade itself can only answer a bare 400): the same check.
    this.route('GET', '/api/worker-auth', 'none', (req, res) => {
      const result = o.auth.check('worker', bearerToken(req.headers.authorization));
      if (result.ok) json(res, 200, { ok: true });
      else json(res, result.status, { error: result.reason }, { 'www-authenticate': 'Bearer' });
    });
    // The dashboard page needs no token (it holds no data); its live feed does (server/dashboard-feed.ts).
    this.route('GET', '/', 'none', (_req, res) => {
      const nonce = randomBytes(16).toString('base64');
      send(res, 200, dashboardHtml(nonce), 'text/html; charset=utf-8', {
        'content-security-policy': `default-src 'none'; script-src 'nonce-${nonce}'; style-src 'nonce-${nonce}'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
    });
    // The socket.io client the dashboard page runs, from the coordinator's own dependencies (no CDN).
    this.route('GET', '/dashboard/socket.io.min.js', 'none', (_req, res) => {
      send(res, 200, socketIoClient(), 'text/javascript; charset=utf-8', { 'cache-control': 'max-age=3600', 'x-content-type-options': 'nosniff' });
    });
    // Scrapes share one rendering a second, and at most METRICS_CONCURRENCY wait for it at once: thousands of scrapers
    // answered in one go would hold the event loop themselves (docs/security.md, "Rate limits").
    this.route('GET', '/metrics', 'metrics', async (_req, res) => {
      if (this.metricsWaiting >= METRICS_CONCURRENCY) throw new RequestRefused(503, 'too many /metrics requests at once: busy, retry later', { 'retry-after': '1' });
      this.metricsWaiting++;
      try {
        send(res, 200, await this.metricsText(), o.metrics.registry.contentType);
      } finally {
        this.metricsWaiting--;
      }
    });
    // HEAD confirms a blob only if its bytes still hash to its name (a damaged one is removed: 404, upload it again).
    this.route('HEAD', '/api/blobs/:hash', 'submitter', async (_req, res, p) => {
      const hash = p.hash ?? '';
      const size = (await jobs.blobs.verify(hash)) ? jobs.blobs.size(hash) : undefined;
      res.writeHead(size === undefined ? 404 : 200, size === undefined ? {} : { 'content-length': size, 'content-type': 'application/octet-stream' });
      res.end();
    });
    this.route('PUT', '/api/blobs/:hash', 'submitter', (req, res, p) => this.putBlob(req, res, p.hash ?? ''));
    // A job is visible to the submitter that created it and to admins only: to anyone else it does not exist (404).
    this.route('POST', '/api/jobs', 'submitter', (req, res, _p, _url, who) => this.submit(req, res, who));
    // Each job with its owner: a short id of the submitter token that created it (the start of its sha-256), null for
    // a job created while the submitter role was open.
    this.route('GET', '/api/jobs', 'submitter', (_req, res, _p, _url, who) => json(res, 200, jobs.allJobs(who).map((j) => ({ ...j, owner: ownerId(jobs.ownerOf(j.id)) }))));
    // The detail adds each worker's share (the shards it delivered, since this coordinator started) and a training
    // job's train.json as parsed (`fedpool train --resume` writes it to DIR/config.json).
    this.route('GET', '/api/jobs/:id', 'submitter', (_req, res, p, _url, who) => {
      const id = p.id ?? '';
      const config = jobs.training.configOf(id);
      json(res, 200, { ...this.job(id, who), owner: ownerId(jobs.ownerOf(id)), workers: jobs.shareOf(id), ...(config === undefined ? {} : { config }) });
    });
    // A queued or running job is cancelled (the answer is its status); an ended one (done, failed, cancelled) is deleted
    // with everything stored for it (docs/security.md, "Retention"). `?only=cancel` never deletes: a client that means
    // to stop a job (Ctrl-C) cannot delete one that ended just before, and gets the old answers (the status of a
    // cancelled job, 409 for a done or failed one).
    this.route('DELETE', '/api/jobs/:id', 'submitter', (_req, res, p, url, who) => {
      const id = p.id ?? '';
      const before = this.job(id, who);
      if (!isTerminal(before.state)) {
        jobs.cancelJob(id);
        json(res, 200, this.job(id, who));
        return;
      }
      if (url.searchParams.get('only') === 'cancel') {
        if (before.state !== 'cancelled') throw new RequestRefused(409, `job ${id} is already ${before.state}`);
        json(res, 200, before);
        return;
      }
      if (!jobs.deleteJob(id)) throw new RequestRefused(503, `job ${id} cannot be deleted yet: the state store has not recorded its end; try again`);
      json(res, 200, { id, deleted: true });
    });
    this.route('GET', '/api/jobs/:id/meta', 'submitter', (_req, res, p, _url, who) => {
      this.job(p.id ?? '', who); // 404 for an unknown job, as the other job routes
      // The stored text as it is (a meta of a line per item would be seconds of parsing and stringifying).
      send(res, 200, `{"meta":${jobs.score.metaJson(p.id ?? '') ?? 'null'}}\n`, 'application/json; charset=utf-8');
    });
    this.route('GET', '/api/jobs/:id/results', 'submitter', (_req, res, p, url, who) => this.results(res, p.id ?? '', url, who));
    this.route('GET', '/api/jobs/:id/metrics', 'submitter', (_req, res, p, url, who) => this.trainMetrics(res, p.id ?? '', url, who));
    this.route('GET', '/api/jobs/:id/model', 'submitter', async (_req, res, p, _url, who) => {
      const id = p.id ?? '';
      this.job(id, who);
      if (!jobs.training.has(id)) throw new RequestRefused(404, `job ${id} is not a training job`);
      const bytes = await jobs.training.modelBundle(id);
      if (bytes === undefined) throw new RequestRefused(404, `no model for job ${id}`);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.byteLength, 'cache-control': 'no-store' });
      res.end(bytes);
    });
    this.route('GET', '/api/workers', 'submitter', (_req, res) => json(res, 200, workerViews(this.o.jobs)));
    // Pool-wide: an admin's, when admin tokens are configured.
    this.route('POST', '/api/workers/:name/unquarantine', 'submitter', (_req, res, p, _url, who) => {
      if (o.auth.hasAdmins() && !who.admin) throw new RequestRefused(403, 'forbidden: letting a worker out of quarantine needs an admin token');
      const name = p.name ?? '';
      if (!jobs.unquarantine(name)) throw new RequestRefused(404, `no worker named ${name} is in quarantine`);
      json(res, 200, { name, quarantined: false });
    });
  }

  private route(method: string, path: string, access: Route['access'], handler: Handler): void {
    const keys: string[] = [];
    const source = path.replace(/:(\w+)/g, (_m, key: string) => {
      keys.push(key);
      return '([^/]+)';
    });
    this.routes.push({ method, pattern: new RegExp(`^${source}$`), keys, access, handler });
  }

  /** The request listener for node:http. */
  readonly handle = (req: IncomingMessage, res: ServerResponse): void => {
    void this.dispatch(req, res).catch((e: unknown) => {
      if (e instanceof RequestRefused) {
        // Refused before the whole body arrived (limits, budget, a route that would not read it): answer, then drop
        // the connection rather than read a body we will not use.
        const unread = !req.complete;
        if (unread) res.setHeader('connection', 'close');
        json(res, e.status, { error: e.message }, e.headers);
        if (unread) res.on('finish', () => req.destroy());
        return;
      }
      this.o.logger.error({ err: e instanceof Error ? e.stack : String(e), method: req.method, url: req.url }, 'request failed');
      if (!res.headersSent) json(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  };

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    let pathMatched = false;
    for (const route of this.routes) {
      const m = route.pattern.exec(url.pathname);
      if (m === null) continue;
      pathMatched = true;
      if (route.method !== method) continue;
      let who: Principal = NOBODY;
      if (route.access === 'submitter' || (route.access === 'metrics' && !this.o.metricsPublic)) {
        const result = this.o.auth.check('submitter', bearerToken(req.headers.authorization));
        if (!result.ok) {
          json(res, result.status, { error: result.reason }, { 'www-authenticate': 'Bearer' });
          return;
        }
        who = result.principal;
      }
      // Path parameters are decoded only for callers that passed authentication; a malformed one is a 400.
      const params: Params = {};
      route.keys.forEach((k, i) => {
        try {
          params[k] = decodeURIComponent(m[i + 1] ?? '');
        } catch {
          throw new RequestRefused(400, `${k}: invalid percent-encoding in the path`);
        }
      });
      if (this.closing && method !== 'GET' && method !== 'HEAD') throw new RequestRefused(503, 'the coordinator is shutting down');
      await route.handler(req, res, params, url, who);
      return;
    }
    if (pathMatched) {
      const allow = this.routes.filter((r) => r.pattern.test(url.pathname)).map((r) => r.method);
      json(res, 405, { error: `method ${method} not allowed on ${url.pathname}` }, { allow: allow.join(', ') });
      return;
    }
    json(res, 404, { error: `not found: ${method} ${url.pathname}` });
  }

  /**
   * The Prometheus text, computed at most once a second and shared by every request meanwhile: thousands of
   * concurrent scrapes cost one rendering, not thousands (docs/security.md, "Rate limits").
   */
  private metricsText(): Promise<string> {
    const now = Date.now();
    if (this.metricsCache !== undefined && now - this.metricsCache.at < METRICS_TTL_MS) return this.metricsCache.text;
    const text = this.o.metrics.registry.metrics();
    this.metricsCache = { at: now, text };
    text.catch(() => {
      if (this.metricsCache?.text === text) this.metricsCache = undefined;
    });
    return text;
  }

  private job(id: string, who: Principal) {
    const s = this.o.jobs.jobStatus(id, who);
    if (s === undefined) throw new RequestRefused(404, `no job ${id}`);
    return s;
  }

  private async putBlob(req: IncomingMessage, res: ServerResponse, hash: string): Promise<void> {
    if (!isSha256(hash)) throw new RequestRefused(400, 'blob hash: expected the sha-256 of the body as 64 lowercase hex chars');
    const limit = this.o.maxBlobBytes;
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit) throw new RequestRefused(413, `blob of ${declared} bytes exceeds the ${limit}-byte limit`);
    // An upload is held in memory until it is stored: its bytes count against the body budget meanwhile.
    const ticket = this.o.bodyBudget.admit(req.headers['content-length'] !== undefined && Number.isFinite(declared) ? declared : undefined);
    try {
      const { size } = await this.o.jobs.blobs.receive(counted(req, ticket), hash, limit);
      this.o.logger.info({ hash, size }, 'blob stored');
      json(res, 201, { hash, size });
    } catch (e) {
      if (e instanceof BlobTooLargeError) throw new RequestRefused(413, e.message);
      if (e instanceof BlobHashMismatchError) throw new RequestRefused(400, `blob hash mismatch: ${e.message}`);
      throw e;
    } finally {
      ticket.release();
    }
  }

  private async submit(req: IncomingMessage, res: ServerResponse, who: Principal): Promise<void> {
    // Within the byte, depth and entry limits and the body budget; a large body is parsed and validated in slices
    // that yield to the event loop (docs/security.md, "Memory and the event loop"). Its bytes count until it is stored.
    // Row-form items of a large body become columns as they arrive (unless maxItems allows more items than a job
    // may have: that error is then the schema's, over the whole array).
    const collect = this.o.maxItems <= MAX_JOB_ITEMS ? { key: 'items', open: () => new CollectedItems() } : undefined;
    const body = await readJsonBody(req, this.o.bodyBudget, { maxBytes: this.o.maxJsonBytes, maxItems: this.o.maxItems, ...(collect === undefined ? {} : { collect }) });
    try {
      await this.submitJson(body.value, res, who, body.streamed ? (v) => parseJobRequestInSlices(v, body.slice) : parseJobRequest);
    } finally {
      body.release();
    }
  }

  private async submitJson(value: unknown, res: ServerResponse, who: Principal, parseScoreJob: (value: unknown) => ParsedJob | Promise<ParsedJob>): Promise<void> {
    if (typeof value === 'object' && value !== null && Reflect.get(value, 'kind') === 'train') {
      const t = parseTrainJobRequest(value);
      if (!t.ok) throw new RequestRefused(400, t.error);
      try {
        json(res, 201, { id: this.o.jobs.training.submit(t.request, who.owner).id });
      } catch (e) {
        if (e instanceof TrainSubmitError) throw new RequestRefused(400, e.message);
        throw e;
      }
      return;
    }
    const parsed = await parseScoreJob(value);
    if (!parsed.ok) throw new RequestRefused(400, parsed.error);
    try {
      const record = await this.o.jobs.score.submit(parsed.request, parsed.form, parsed.dim, parsed.columns, who.owner);
      json(res, 201, { id: record.id });
    } catch (e) {
      if (e instanceof SubmitError) throw new RequestRefused(400, e.message);
      throw e;
    }
  }

  /**
   * JSONL `{"id","score"}` per item in input order, for the completed prefix of shards. With
   * `?follow=1` the response stays open and grows with the prefix until the job ends.
   */
  private async results(res: ServerResponse, id: string, url: URL, who: Principal): Promise<void> {
    const { jobs } = this.o;
    this.job(id, who);
    const first = jobs.score.progress(id);
    const spec = jobs.score.specOf(id);
    if (first === undefined || spec === undefined) throw new RequestRefused(404, `no job ${id}`);
    let next = 0;
    await this.streamJsonl(res, url, { 'x-fedpool-job-state': first.state }, () => jobs.score.waitForChange(id), () => {
      const p = jobs.score.progress(id);
      if (p === undefined) return undefined;
      if (next >= p.prefixShards) return { text: '', ended: isTerminal(p.state) };
      const to = Math.min(p.prefixShards, next + RESULT_SHARDS_PER_WRITE);
      let text = '';
      for (const shard of jobs.score.readResults(id, next, to)) text += resultLines(shard, spec);
      next = to;
      return { text, ended: false };
    });
  }

  /** metrics.jsonl of a training job; with `?follow=1` the stream stays open until the job ends. */
  private async trainMetrics(res: ServerResponse, id: string, url: URL, who: Principal): Promise<void> {
    const training = this.o.jobs.training;
    this.job(id, who);
    if (training.metrics(id, 0) === undefined) throw new RequestRefused(404, `job ${id} is not a training job`);
    let next = 0;
    await this.streamJsonl(res, url, {}, () => training.waitForChange(id), () => {
      const m = training.metrics(id, next);
      if (m === undefined) return undefined;
      next += m.lines.length;
      return { text: m.lines.map((l) => `${JSON.stringify(l)}\n`).join(''), ended: m.ended };
    });
  }

  /**
   * The one JSONL streaming loop: writes what `read` has (respecting backpressure) until it has nothing new; with
   * `?follow=1` it then waits for `changed` until `read` says the job ended, the client goes away or we shut down.
   */
  private async streamJsonl(
    res: ServerResponse,
    url: URL,
    headers: Record<string, string>,
    changed: () => Promise<void>,
    read: () => { text: string; ended: boolean } | undefined,
  ): Promise<void> {
    const follow = ['1', 'true', 'yes'].includes(url.searchParams.get('follow') ?? '');
    res.writeHead(200, { 'content-type': 'application/x-ndjson; charset=utf-8', 'cache-control': 'no-store', ...headers });
    let gone = false;
    const closed = new Promise<void>((resolve) =>
      res.once('close', () => {
        gone = true;
        resolve();
      }),
    );
    this.streams.add(res);
    try {
      for (;;) {
        const chunk = read();
        if (chunk === undefined || gone || this.closing) break;
        if (chunk.text !== '') {
          if (!res.write(chunk.text)) await Promise.race([new Promise<void>((resolve) => res.once('drain', resolve)), closed]);
          continue;
        }
        if (!follow || chunk.ended || this.closing) break;
        await Promise.race([changed(), closed]);
      }
    } finally {
      this.streams.delete(res);
      if (!gone) res.end();
    }
  }


  /** Stops accepting writes and ends open result streams. */
  close(): void {
    this.closing = true;
    for (const res of this.streams) res.end();
  }
}
