import { createServer } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import { isIPv4 } from 'node:net';
import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import { logDestination } from './log-lines.js';
import { DashboardFeed } from './dashboard-feed.js';
import { DEFAULT_MAX_FRAME_BYTES } from '../shared/protocol/index.js';
import { Auth } from './auth.js';
import { Api, DEFAULT_MAX_BLOB_BYTES, DEFAULT_MAX_JSON_BYTES } from './http.js';
import { BodyBudget, DEFAULT_BODY_BUDGET_BYTES } from './body-budget.js';
import { ConnectionLimiter, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_IP } from './connection-limits.js';
import { DEFAULT_MAX_ITEMS } from './json-body.js';
import { Metrics } from './metrics.js';
import { JobRegistry } from './job-registry.js';
import { heartbeatMsFor, WorkerSockets } from './sockets.js';
import { MemoryStore } from './store-memory.js';
import { SqliteStore } from './store-sqlite.js';
import type { Store } from './store.js';
import type { RateLimit } from './rate-limit.js';

export interface CoordinatorOptions {
  host?: string;
  /** 0 picks a free port. */
  port?: number;
  workerTokens?: readonly string[];
  clientTokens?: readonly string[];
  /** Admin tokens: submitters that see and cancel every submitter's jobs (`--admin-token`). */
  adminTokens?: readonly string[];
  /** SQLite file, or ':memory:' for no persistence. Default './fedpool.db'. */
  state?: string;
  leaseMs?: number;
  metricsPublic?: boolean;
  logger?: Logger;
  maxFrameBytes?: number;
  maxJsonBytes?: number;
  maxBlobBytes?: number;
  /** TCP connections at once, in all (`--max-connections`; default connection-limits.ts DEFAULT_MAX_CONNECTIONS). */
  maxConnections?: number;
  /** TCP connections at once from one address or IPv6 /64 (`--max-connections-per-ip`; default DEFAULT_MAX_CONNECTIONS_PER_IP). */
  maxConnectionsPerIp?: number;
  /** Bytes of request bodies being received at once, JSON and blobs together (default body-budget.ts DEFAULT_BODY_BUDGET_BYTES). */
  bodyBudgetBytes?: number;
  /** Most entries in one array or object of a JSON body, e.g. a job's items (default json-body.ts DEFAULT_MAX_ITEMS). */
  maxItems?: number;
  /** Speculative duplicate leases near a job's end (default true). */
  speculative?: boolean;
  /** Frames one worker connection may send (default sockets.ts DEFAULT_FRAME_RATE). */
  frameRate?: RateLimit;
  /** A client must send its request headers within this (default 10 s): slow-header connections are closed. */
  headersTimeoutMs?: number;
  /**
   * Who a worker is for blame, records and redundancy votes (`--worker-identity`): its chosen name (default), or its
   * worker token, so that one party's many names or machines count as one (give each party its own --worker-token).
   */
  workerIdentity?: 'name' | 'token';
  /** Ended jobs are deleted this long after they ended (`--retain-jobs DAYS`); undefined (default): kept forever. */
  retainJobsMs?: number;
  /** A blob only deleted jobs named is removed after this long unused (default 1 h; job-registry.ts). */
  blobGraceMs?: number;
  /**
   * Serve https and wss with this certificate (chain) and private key, PEM (`--tls-cert`, `--tls-key`); the url is
   * then https://. Without it the coordinator speaks plain http and ws.
   */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** The coordinator's own npm package for `GET /fedpool.tgz` (the CLI packs the package it runs from). */
  packageTarball?: () => Promise<Uint8Array>;
}

export interface Coordinator {
  /** http://host:port (https:// with `tls`) with the real port. */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly jobs: JobRegistry;
  /** Stops accepting work, disconnects workers, writes pending state, closes everything. */
  close(): Promise<void>;
}

/** pino on stderr at FEDPOOL_LOG (default info; 'silent' in tests): JSON lines, readable lines on a terminal. */
export function defaultLogger(): Logger {
  const wanted = process.env['FEDPOOL_LOG'] ?? 'info';
  const level = Object.keys(pino.levels.values).includes(wanted) || wanted === 'silent' ? wanted : 'info';
  const options = { level, base: { name: 'fedpool-coordinator' } };
  return process.stderr.isTTY === true ? pino(options, logDestination()) : pino(options, pino.destination({ dest: 2, sync: true }));
}

function openStore(state: string): Store {
  if (state === ':memory:') return new MemoryStore();
  try {
    return new SqliteStore(state);
  } catch (e) {
    throw new Error(`cannot open state file ${state}: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** 127.0.0.0/8, ::1 and localhost: addresses no other machine can reach. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice('::ffff:'.length) : h;
  return isIPv4(v4) && v4.startsWith('127.');
}

function hostForUrl(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
}

export async function startCoordinator(options: CoordinatorOptions = {}): Promise<Coordinator> {
  const host = options.host ?? '127.0.0.1';
  const leaseMs = options.leaseMs ?? 30_000;
  const maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
  const logger = options.logger ?? defaultLogger();
  const state = options.state ?? './fedpool.db';
  const auth = new Auth({ worker: options.workerTokens ?? [], submitter: options.clientTokens ?? [], admin: options.adminTokens ?? [] });
  if (auth.isOpen('worker')) logger.warn('no worker token configured: any worker may join (use --worker-token)');
  if (options.workerIdentity === 'token' && auth.isOpen('worker')) throw new Error('--worker-identity token needs worker tokens (--worker-token, one per party)');
  if (auth.isOpen('submitter')) logger.warn('no client token configured: the HTTP API is open to anyone who can reach it (use --client-token)');
  if (options.tls === undefined && !isLoopback(host)) {
    logger.warn(`listening on ${host} without TLS: tokens and data travel in clear text (use --tls-cert and --tls-key, or a TLS-terminating proxy)`);
  }

  const store = openStore(state);
  const jobs = new JobRegistry({
    store, leaseMs, logger, maxFrameBytes,
    ...(options.speculative === undefined ? {} : { speculative: options.speculative }),
    ...(options.retainJobsMs === undefined ? {} : { retainJobsMs: options.retainJobsMs }),
    ...(options.blobGraceMs === undefined ? {} : { blobGraceMs: options.blobGraceMs }),
  });
  const metrics = new Metrics({ stats: jobs.scheduler.stats, workersConnected: () => jobs.workers.size, workersQuarantined: () => jobs.records.quarantinedCount(), jobCounts: () => jobs.jobCounts() });
  jobs.score.onJobEnd = (record) => {
    if (record.finishedAt !== undefined) metrics.jobDuration.observe({ state: record.state }, (record.finishedAt - record.createdAt) / 1000);
  };
  let restored: { resumed: number; total: number };
  try {
    restored = jobs.restore();
  } catch (e) {
    store.close();
    throw new Error(`cannot read state file ${state}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (restored.total > 0) logger.info(restored, 'jobs restored from the state file');

  const api = new Api({
    jobs, auth, metrics, logger, metricsPublic: options.metricsPublic ?? false,
    maxJsonBytes: options.maxJsonBytes ?? DEFAULT_MAX_JSON_BYTES, maxBlobBytes: options.maxBlobBytes ?? DEFAULT_MAX_BLOB_BYTES,
    bodyBudget: new BodyBudget(options.bodyBudgetBytes ?? DEFAULT_BODY_BUDGET_BYTES, { inFlight: (b) => metrics.requestBodyBytes.set(b), refused: () => metrics.requestBodiesRefused.inc() }),
    maxItems: options.maxItems ?? DEFAULT_MAX_ITEMS,
    ...(options.packageTarball === undefined ? {} : { packageTarball: options.packageTarball }),
  });
  // Node checks header deadlines every connectionsCheckingInterval: check often enough for the deadline to mean something.
  const headersTimeout = options.headersTimeoutMs ?? 10_000;
  const serverOptions = { headersTimeout, connectionsCheckingInterval: Math.min(1_000, headersTimeout) };
  let http: ReturnType<typeof createServer>;
  try {
    http = options.tls === undefined ? createServer(serverOptions, api.handle) : createTlsServer({ ...serverOptions, cert: options.tls.cert, key: options.tls.key }, api.handle);
  } catch (e) {
    api.close();
    jobs.close();
    store.close();
    throw new Error(`invalid TLS certificate or key: ${e instanceof Error ? e.message : String(e)}`);
  }
  http.keepAliveTimeout = 5000;
  new ConnectionLimiter(http, { maxConnections: options.maxConnections ?? DEFAULT_MAX_CONNECTIONS, maxConnectionsPerIp: options.maxConnectionsPerIp ?? DEFAULT_MAX_CONNECTIONS_PER_IP }, {
    refused: (reason) => metrics.connectionsRefused.inc({ reason }), open: (n) => metrics.connectionsOpen.set(n),
  });
  const dashboard = new DashboardFeed(http, jobs, auth, logger);
  const sockets = new WorkerSockets(http, jobs, auth, metrics, {
    leaseMs, heartbeatMs: heartbeatMsFor(leaseMs), maxFrameBytes, logger, ...(options.frameRate === undefined ? {} : { frameRate: options.frameRate }),
    ...(options.workerIdentity === undefined ? {} : { workerIdentity: options.workerIdentity }),
  });
  jobs.sink = sockets;

  try {
    await new Promise<void>((resolve, reject) => {
      http.once('error', reject);
      http.listen(options.port ?? 7447, host, () => {
        http.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    await dashboard.close();
    await sockets.close();
    jobs.close();
    store.close();
    const code = e instanceof Error ? Reflect.get(e, 'code') : undefined;
    const why = code === 'EADDRINUSE' ? 'address already in use' : e instanceof Error ? e.message : String(e);
    throw new Error(`cannot listen on ${host}:${options.port ?? 7447}: ${why}`);
  }
  http.on('error', (e) => logger.error({ err: e.message }, 'http server error'));
  const port = (http.address() as AddressInfo).port;
  const url = `${options.tls === undefined ? 'http' : 'https'}://${hostForUrl(host)}:${port}`;
  logger.info({ url, state, leaseMs }, 'coordinator listening');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      logger.info('coordinator shutting down');
      sockets.closing = true;
      api.close();
      jobs.close();
      await dashboard.close();
      await sockets.close();
      await new Promise<void>((resolve) => {
        http.close(() => resolve());
        http.closeAllConnections();
      });
      store.close();
      logger.info('coordinator stopped');
    })();
    return closing;
  };
  return { url, host, port, jobs, close };
}
