// The open pool's attack table (issue 13), measured on a real coordinator: for each row of the table a fresh
// `fedpool coordinator` process (from source, SQLite state in a scratch folder, one worker token, two client tokens,
// one admin token, every other setting at its default), one attack, and meanwhile a loop of honest score jobs run by
// two honest workers, each job checked item by item against the exact honest scores. Throughout the row a separate
// process (bench/open-pool-probe.ts) samples the coordinator's VmRSS every 100 ms and asks GET /healthz every 50 ms
// over its own keep-alive connection, so the attacks and the honest workers, which run in this process, add nothing
// of their own event loop to the latencies it records (they do share the machine's cores with it). The probe asks a
// control server (a bare node:http server alone in its process) in the same way, and the coordinator runs with
// bench/open-pool-lag.ts preloaded, which records its own event-loop delay: a slow /healthz with a slow control is the
// machine; with a long loop delay, the coordinator blocked; with neither, the request waited behind others.
//
//   node --import=tsx bench/open-pool.ts [--rows 1,2,...] [--seed S] [--coordinator-args "--trace-gc --cpu-prof …"]
// (--coordinator-args: node options for each row's coordinator, for profiles; its stdout is printed when it stops)
//
// Rows (ids as in the issue's table; 4b, 5a/5b, 7b and 8b split or extend a row and say so):
//   1   a worker answers every lease with a result of the wrong shape, reconnecting under its name
//   2   a worker answers every lease with failure {retryable: false}
//   3   a worker (threads 1,024) pulls a credit of 1,024, disconnects, 30 times over
//   4   2,500 silent workers (hello, pull 1, then nothing) from 127.0.0.1, the honest parties' own address
//   4b  the same from 127.0.0.2, another address than the honest parties'
//   5a  a liar answering 42 beside one honest worker, --redundancy 2
//   5b  the liar beside two honest workers, --redundancy 3
//   6   12 websocket upgrades without a token, each followed by a 200 MB frame
//   7   a client POSTs a 250 MB JSON job (5 million items in the row form), then cancels and deletes it
//   7b  a client POSTs a 250 MB JSON job whose items array passes the entry limit
//   8   a worker asks for a 5 MB blob 300 times and stops reading its socket
//   8b  150 such workers at once (beyond the issue's row: does the per-connection bound add up?)
//   9   a worker floods heartbeats and pulls, reconnecting when cut off
//   10  5,000 concurrent GET /metrics (a client token; from 5 loopback addresses, 1,000 each)
//   11  a second client token lists, reads, follows and cancels the first one's job
//   12  a blob file damaged on the coordinator's disk
//   13  jobs whose items do not fit the model's input (a real bundle, features:8)
// Every child is in its own process group and killed by PID on every way out; scratch folders are removed.
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { cpus, loadavg, tmpdir } from 'node:os';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request, type IncomingHttpHeaders } from 'node:http';
import { connect as netConnect } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Tensor, encodeMessage, sendMessage } from '../shared/protocol/index.js';
import { Random, deriveSeed } from '../shared/random.js';
import { BenchWorker, type BenchWorkerOptions, type Lease } from './bench-worker.js';
import type { LagReport } from './open-pool-lag.js';
import type { ProbeReport } from './open-pool-probe.js';

// ---- settings -------------------------------------------------------------------------------------------------

const WORKER_TOKEN = 'bench-worker-token';
const CLIENT_TOKEN = 'bench-client-one';
const CLIENT_TOKEN_2 = 'bench-client-two';
const ADMIN_TOKEN = 'bench-admin';
/** The bounds issue 13 states. */
const RSS_BOUND_MB = 600;
const HEALTHZ_BOUND_MS = 100;
/** Honest jobs: items of 4 features (multiples of 1/4, so every sum is exact in float32), shards of 4. */
const HONEST_ITEMS = 200;
const HONEST_SHARD = 4;
const HONEST_JOB_TIMEOUT_MS = 120_000;

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');
/** The CLI from source, as the tests run it (test/helpers/fedpool.ts imports nothing of ava). */
const cliEntry = path.join(root, 'test', 'helpers', 'fedpool.ts');
const tsxLoader = import.meta.resolve('tsx');

// ---- processes and scratch folders --------------------------------------------------------------------------------

const childPids = new Set<number>();
const scratchDirs = new Set<string>();

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // the group is gone
  }
}

function cleanUpNow(): void {
  for (const pid of childPids) killGroup(pid);
  childPids.clear();
  for (const dir of scratchDirs) rmSync(dir, { recursive: true, force: true });
  scratchDirs.clear();
}

process.on('exit', cleanUpNow);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    cleanUpNow();
    process.exit(signal === 'SIGINT' ? 130 : 143);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000, everyMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error(`timed out (${timeoutMs / 1000} s) waiting for ${what}`);
    await sleep(everyMs);
  }
}

interface Coord {
  url: string;
  port: number;
  pid: number;
  state: string;
  /** Starts the count of its event-loop delay (bench/open-pool-lag.ts) afresh. */
  resetLag: () => void;
  /** Its event-loop delay since resetLag, as last written (up to 250 ms old). */
  lag: () => LagReport | undefined;
  stderr: () => string;
  exited: () => boolean;
  stop: () => Promise<void>;
}

/**
 * `fedpool coordinator` from source, in its own process group, on a free port, with bench/open-pool-lag.ts preloaded
 * (it writes the coordinator's event-loop delay to `lagFile`).
 */
async function startCoordinator(state: string, lagFile: string, extra: string[] = []): Promise<Coord> {
  const args = [
    ...coordinatorNodeArgs, `--import=${tsxLoader}`, `--import=${path.join(here, 'open-pool-lag.ts')}`, cliEntry, 'coordinator', '--host', '127.0.0.1', '--port', '0', '--state', state,
    '--worker-token', WORKER_TOKEN, '--client-token', CLIENT_TOKEN, '--client-token', CLIENT_TOKEN_2, '--admin-token', ADMIN_TOKEN, ...extra,
  ];
  const env: NodeJS.ProcessEnv = { ...process.env, FEDPOOL_LOG: 'error', FEDPOOL_BENCH_LAG_FILE: lagFile };
  for (const k of ['FEDPOOL_TOKEN', 'FEDPOOL_WORKER_TOKEN', 'FEDPOOL_CLIENT_TOKEN']) delete env[k];
  const proc = spawn(process.execPath, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const pid = proc.pid;
  if (pid === undefined) throw new Error('cannot start the coordinator');
  childPids.add(pid);
  let out = '';
  let err = '';
  let closed = false;
  const exited = new Promise<void>((resolve) =>
    proc.once('close', () => {
      closed = true;
      childPids.delete(pid);
      resolve();
    }),
  );
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-20_000)));
  const end = Date.now() + 120_000;
  let url: string | undefined;
  while (url === undefined) {
    url = /^fedpool coordinator listening on (http:\/\/\S+)$/m.exec(out)?.[1];
    if (url !== undefined) break;
    if (closed || Date.now() > end) {
      killGroup(pid);
      throw new Error(`the coordinator did not start: ${err.slice(-2000)}`);
    }
    await sleep(50);
  }
  return {
    url, pid, state,
    port: Number(new URL(url).port),
    resetLag: () => {
      rmSync(lagFile, { force: true });
      process.kill(pid, 'SIGUSR2');
    },
    lag: () => {
      try {
        return JSON.parse(readFileSync(lagFile, 'utf8')) as LagReport;
      } catch {
        return undefined;
      }
    },
    stderr: () => err,
    exited: () => closed,
    stop: async () => {
      if (!closed) {
        try {
          proc.kill('SIGTERM');
        } catch {
          // exited meanwhile
        }
        const timer = setTimeout(() => killGroup(pid), 20_000);
        await exited;
        clearTimeout(timer);
      }
      killGroup(pid); // anything it left in its group
      if (coordinatorNodeArgs.length > 0) process.stderr.write(`coordinator stdout (node ${coordinatorNodeArgs.join(' ')}):\n${out.slice(-200_000)}\n`);
    },
  };
}

interface Probe {
  stop: () => Promise<ProbeReport>;
}

/** The control server of the probe (bench/open-pool-probe.ts --control); its URL and a stop. */
async function startControl(): Promise<{ url: string; stop: () => void }> {
  const child: ChildProcess = fork(path.join(here, 'open-pool-probe.ts'), ['--control'], {
    execArgv: [`--import=${tsxLoader}`], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], detached: true,
  });
  const pid = child.pid;
  if (pid === undefined) throw new Error('cannot start the control server');
  childPids.add(pid);
  child.once('exit', () => childPids.delete(pid));
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve(Number(typeof m === 'object' && m !== null ? Reflect.get(m, 'port') : NaN)));
    child.once('exit', (code) => reject(new Error(`the control server exited (${code ?? 'signal'}) before it listened`)));
  });
  return {
    url: `http://127.0.0.1:${port}`,
    stop: () => {
      killGroup(pid);
      childPids.delete(pid);
    },
  };
}

async function startProbe(url: string, pid: number, controlUrl: string): Promise<Probe> {
  const child: ChildProcess = fork(path.join(here, 'open-pool-probe.ts'), [url, String(pid), controlUrl], {
    execArgv: [`--import=${tsxLoader}`], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], detached: true,
  });
  const probePid = child.pid;
  if (probePid === undefined) throw new Error('cannot start the probe');
  childPids.add(probePid);
  child.once('exit', () => childPids.delete(probePid));
  await new Promise<void>((resolve, reject) => {
    child.once('message', (m) => (m === 'ready' ? resolve() : reject(new Error(`probe: ${String(m)}`))));
    child.once('exit', (code) => reject(new Error(`the probe exited (${code ?? 'signal'}) before it was ready`)));
  });
  return {
    stop: () =>
      new Promise<ProbeReport>((resolve, reject) => {
        const timer = setTimeout(() => {
          killGroup(probePid);
          reject(new Error('the probe did not report within 30 s'));
        }, 30_000);
        child.once('message', (m) => {
          clearTimeout(timer);
          resolve(m as ProbeReport);
        });
        child.send('stop');
      }),
  };
}

// ---- HTTP ---------------------------------------------------------------------------------------------------------

/** The bench's own API client: a few keep-alive connections, opened before an attack and kept through it. */
const apiAgent = new Agent({ keepAlive: true, maxSockets: 8 });
let apiConnectionErrors = 0;

interface Answer {
  status: number;
  text: string;
  headers: IncomingHttpHeaders;
}

interface CallOptions {
  method?: string;
  token?: string | null;
  body?: Buffer | string;
  headers?: Record<string, string>;
  agent?: Agent | false;
  localAddress?: string;
  timeoutMs?: number;
}

function call(url: string, p: string, o: CallOptions = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...(o.headers ?? {}) };
    const token = o.token === undefined ? CLIENT_TOKEN : o.token;
    if (token !== null) headers['authorization'] = `Bearer ${token}`;
    if (o.body !== undefined) headers['content-length'] = Buffer.byteLength(o.body);
    const req = request(`${url}${p}`, {
      method: o.method ?? 'GET', headers, agent: o.agent ?? apiAgent, timeout: o.timeoutMs ?? 60_000,
      ...(o.localAddress === undefined ? {} : { localAddress: o.localAddress }),
    }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), headers: res.headers }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${o.method ?? 'GET'} ${p}: no answer within ${(o.timeoutMs ?? 60_000) / 1000} s`)));
    req.on('error', reject);
    req.end(o.body);
  });
}

function connectionError(e: unknown): boolean {
  const code = e instanceof Error ? Reflect.get(e, 'code') : undefined;
  return ['ECONNRESET', 'ECONNREFUSED', 'EPIPE'].includes(String(code)) || (e instanceof Error && /socket hang up/.test(e.message));
}

/** `call`, retried (and counted) when the connection is refused or reset: the per-address cap may be full. */
async function api(url: string, p: string, o: CallOptions = {}): Promise<Answer> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await call(url, p, o);
    } catch (e) {
      if (!connectionError(e) || attempt >= 120) throw e;
      apiConnectionErrors++;
      await sleep(250);
    }
  }
}

async function uploadBlob(url: string, bytes: Uint8Array, token = CLIENT_TOKEN): Promise<string> {
  const hash = createHash('sha256').update(bytes).digest('hex');
  const r = await api(url, `/api/blobs/${hash}`, { method: 'PUT', token, body: Buffer.from(bytes), headers: { 'content-type': 'application/octet-stream' } });
  if (r.status !== 201) throw new Error(`upload: ${r.status} ${r.text}`);
  return hash;
}

interface Item {
  id: string;
  features: number[];
}

async function submitJob(url: string, body: Record<string, unknown>, token = CLIENT_TOKEN): Promise<Answer> {
  return api(url, '/api/jobs', { method: 'POST', token, body: JSON.stringify({ kind: 'score', ...body }), headers: { 'content-type': 'application/json' } });
}

interface JobStatus {
  id: string;
  state: string;
  error?: string;
  disputed?: number;
  replicas?: number;
  disagreements?: number;
}

async function jobStatus(url: string, id: string, token = CLIENT_TOKEN): Promise<JobStatus> {
  const r = await api(url, `/api/jobs/${id}`, { token });
  if (r.status !== 200) throw new Error(`job ${id}: ${r.status} ${r.text}`);
  return JSON.parse(r.text) as JobStatus;
}

async function waitForJob(url: string, id: string, timeoutMs = HONEST_JOB_TIMEOUT_MS): Promise<JobStatus> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await jobStatus(url, id);
    if (['done', 'failed', 'cancelled'].includes(s.state)) return s;
    if (Date.now() > end) return { ...s, state: `still ${s.state} after ${timeoutMs / 1000} s` };
    await sleep(50);
  }
}

interface Line {
  id: string;
  score: number;
  disputed?: true;
}

async function results(url: string, id: string): Promise<Line[]> {
  const r = await api(url, `/api/jobs/${id}/results`);
  if (r.status !== 200) throw new Error(`results of ${id}: ${r.status} ${r.text}`);
  return r.text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Line);
}

/** /metrics is rendered at most once a second and shared meanwhile: `fresh` waits for a rendering newer than now. */
async function metricsText(url: string, fresh = true): Promise<string> {
  if (fresh) await sleep(1100);
  return (await api(url, '/metrics')).text;
}

/** The value of one sample of /metrics, 0 when absent. */
function metric(text: string, sample: string): number {
  const escaped = sample.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(text);
  return m === null ? 0 : Number(m[1]);
}

interface WorkerView {
  name: string;
  state: string;
  record: { accepted: number; lost: number; refused: number; protocolErrors: number; rejected: number; verified: number; outvoted: number; connections: number };
}

async function workers(url: string): Promise<WorkerView[]> {
  return JSON.parse((await api(url, '/api/workers')).text) as WorkerView[];
}

// ---- simulated workers ------------------------------------------------------------------------------------------------

/** A BenchWorker (bench/bench-worker.ts) with this bench's worker token unless given another. */
function connectWorker(url: string, options: Omit<BenchWorkerOptions, 'token'> & { token?: string }): Promise<BenchWorker> {
  return BenchWorker.connect(url, { token: WORKER_TOKEN, fetchModels: true, ...options });
}

function expectedScore(item: Item): number {
  let s = 0;
  for (const v of item.features) s += Math.fround(v);
  return Math.fround(s);
}


// ---- honest jobs --------------------------------------------------------------------------------------------------

interface JobOutcome {
  id: string;
  state: string;
  /** Every line present, in order, with exactly the honest score and not disputed. */
  exact: boolean;
  seconds: number;
  lines: number;
  disputed: number;
  /** Lines that are not disputed and carry a score other than the honest one. */
  wrong: number;
  error?: string;
}

const VALUE_TEXT = ['0', '0.25', '0.5', '0.75', '1', '1.25', '1.5', '1.75', '2', '2.25', '2.5'];

class Honest {
  readonly workers: BenchWorker[] = [];
  readonly outcomes: JobOutcome[] = [];
  private jobNo = 0;

  constructor(
    readonly url: string,
    readonly model: string,
    private readonly rng: Random,
  ) {}

  async connect(names: string[] = ['honest-a', 'honest-b'], options: Partial<BenchWorkerOptions> = {}): Promise<BenchWorker[]> {
    const ws = await Promise.all(names.map((name) => connectWorker(this.url, { name, delayMs: 1, ...options })));
    this.workers.push(...ws);
    return ws;
  }

  pull(credit = 2): void {
    for (const w of this.workers) w.pull(credit);
  }

  items(n = HONEST_ITEMS): Item[] {
    const prefix = `h${this.jobNo++}-`;
    return Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, features: Array.from({ length: 4 }, () => Math.floor(this.rng.next() * VALUE_TEXT.length) / 4) }));
  }

  async submit(options: { items?: Item[]; shardSize?: number; redundancy?: number; model?: string } = {}): Promise<{ id: string; items: Item[]; started: number }> {
    const items = options.items ?? this.items();
    const started = performance.now();
    const r = await submitJob(this.url, {
      model: options.model ?? this.model, items, shardSize: options.shardSize ?? HONEST_SHARD, ...(options.redundancy === undefined ? {} : { redundancy: options.redundancy }),
    });
    if (r.status !== 201) throw new Error(`honest submit: ${r.status} ${r.text}`);
    return { id: (JSON.parse(r.text) as { id: string }).id, items, started };
  }

  /** Waits for the job and checks every line against the honest scores. */
  async finish(job: { id: string; items: Item[]; started: number }, record = true): Promise<JobOutcome> {
    const s = await waitForJob(this.url, job.id);
    const outcome: JobOutcome = { id: job.id, state: s.state, exact: false, seconds: (performance.now() - job.started) / 1000, lines: 0, disputed: 0, wrong: 0, ...(s.error === undefined ? {} : { error: s.error }) };
    if (s.state === 'done') {
      const lines = await results(this.url, job.id);
      outcome.lines = lines.length;
      let inOrder = lines.length === job.items.length;
      lines.forEach((l, i) => {
        const item = job.items[i];
        if (item === undefined || l.id !== item.id) inOrder = false;
        if (l.disputed === true) outcome.disputed++;
        else if (item === undefined || l.score !== expectedScore(item)) outcome.wrong++;
      });
      outcome.exact = inOrder && outcome.disputed === 0 && outcome.wrong === 0;
    }
    if (record) this.outcomes.push(outcome);
    return outcome;
  }

  /** Honest jobs one after another until `stop` has settled (at least one; `first` is finished first). */
  async loop(stop: Promise<unknown>, first?: { id: string; items: Item[]; started: number }): Promise<void> {
    let stopped = false;
    void stop.finally(() => (stopped = true));
    let job = first ?? (await this.submit());
    for (;;) {
      const o = await this.finish(job);
      if (stopped || !o.state.match(/^(done|failed|cancelled)$/)) return;
      job = await this.submit();
    }
  }

  summary(): { jobs: number; exact: number; slowest: number; text: string; ok: boolean } {
    const jobs = this.outcomes.length;
    const exact = this.outcomes.filter((o) => o.exact).length;
    const slowest = Math.max(0, ...this.outcomes.map((o) => o.seconds));
    const bad = this.outcomes.find((o) => !o.exact);
    const why = bad === undefined ? '' : ` (${bad.state}${bad.error === undefined ? '' : `: ${bad.error.slice(0, 80)}`}${bad.wrong > 0 ? `, ${bad.wrong} wrong lines` : ''}${bad.disputed > 0 ? `, ${bad.disputed} disputed` : ''})`;
    return { jobs, exact, slowest, ok: jobs > 0 && exact === jobs, text: `${exact}/${jobs} exact${why}` };
  }

  close(): void {
    for (const w of this.workers) w.close();
  }
}

// ---- rows -------------------------------------------------------------------------------------------------------------

interface Ctx {
  coord: Coord;
  url: string;
  dir: string;
  seed: number;
  rng: Random;
  honest: Honest;
  /** Extra lines for the report. */
  notes: string[];
  /** Overrides the honest column (rows whose honest job is not the loop's). */
  honestText?: string;
  honestOk?: boolean;
  /** Workers an attack opened, closed at the row's end whatever happened. */
  open: BenchWorker[];
}

interface RowSpec {
  id: string;
  attack: string;
  /** How the row departs from the issue's wording, if it does. */
  scaled?: string;
  run: (ctx: Ctx) => Promise<string>;
}

/** Runs `attack` while the honest workers run the honest job loop; returns the attack's phrase. */
async function during(ctx: Ctx, attack: () => Promise<string>): Promise<string> {
  ctx.honest.pull();
  const a = attack();
  const loop = ctx.honest.loop(a.catch(() => undefined));
  const [phrase] = await Promise.all([a, loop]);
  return phrase;
}

async function record(url: string, name: string): Promise<WorkerView | undefined> {
  return (await workers(url)).find((w) => w.name === name);
}

async function quarantinedCount(url: string): Promise<number> {
  return metric(await metricsText(url), 'fedpool_workers_quarantined');
}

/** A worker that answers every lease it gets in one way, reconnecting under one name, until quarantined or `ms` pass. */
async function badWorker(ctx: Ctx, name: string, answer: (w: BenchWorker, l: Lease) => void, ms: number): Promise<{ sent: number; connections: number; cutOff: number; sentAtQuarantine: number; quarantined: boolean; leasesAfter: number }> {
  let sent = 0;
  let connections = 0;
  let cutOff = 0;
  let sentAtQuarantine = -1;
  let leasesAfter = 0;
  const end = Date.now() + ms;
  let quarantined = false;
  while (Date.now() < end && !quarantined) {
    const w = await connectWorker(ctx.url, { name, auto: false, onLease: (bw, l) => {
      if (quarantined) leasesAfter++;
      bw.held.delete(l.leaseId);
      answer(bw, l);
      sent++;
    } });
    ctx.open.push(w);
    connections++;
    w.pull(8);
    while (!w.disconnected && Date.now() < end) {
      await sleep(100);
      if (!quarantined && (await record(ctx.url, name))?.state === 'quarantined') {
        quarantined = true;
        sentAtQuarantine = sent;
        // Stay connected a while, pulling: a quarantined worker must get no lease.
        w.pull(8);
        await sleep(1500);
        break;
      }
    }
    if (w.disconnected) cutOff++;
    w.close();
  }
  return { sent, connections, cutOff, sentAtQuarantine, quarantined, leasesAfter };
}

const rows: RowSpec[] = [
  {
    id: '1',
    attack: 'a worker answers every lease with a result of the wrong shape',
    run: (ctx) =>
      during(ctx, async () => {
        const r = await badWorker(ctx, 'misshapen', (w, l) => {
          sendMessage(w.socket, { type: 'result', leaseId: l.leaseId, shardId: l.shardId, payload: { kind: 'scores', scores: Tensor.float32(new Float32Array(1)) }, elapsedMs: 1 });
        }, 20_000);
        const rec = await record(ctx.url, 'misshapen');
        return `${r.sent} misshapen results over ${r.connections} connections, ${r.cutOff} cut off (>10 protocol errors); ${r.quarantined ? `quarantined after ${r.sentAtQuarantine}` : 'NOT quarantined within 20 s'}, ${r.leasesAfter} leases after` +
          (rec === undefined ? '' : ` (record: rejected ${rec.record.rejected}, lost ${rec.record.lost}, protocol errors ${rec.record.protocolErrors})`);
      }),
  },
  {
    id: '2',
    attack: 'a worker answers every lease with failure {retryable: false}',
    run: (ctx) =>
      during(ctx, async () => {
        const r = await badWorker(ctx, 'refuser', (w, l) => {
          sendMessage(w.socket, { type: 'failure', leaseId: l.leaseId, shardId: l.shardId, retryable: false, reason: 'I will not' });
        }, 20_000);
        return `${r.sent} leases refused as impossible; ${r.quarantined ? `quarantined after ${r.sentAtQuarantine}` : 'NOT quarantined within 20 s'}, ${r.leasesAfter} leases after; no honest job failed by it`;
      }),
  },
  {
    id: '3',
    attack: 'a worker declaring 1,024 threads pulls a credit of 1,024 and disconnects, 30 times',
    run: async (ctx) => {
      // The honest job is queued first and the liar grabs its shards before any honest worker asks.
      const first = await ctx.honest.submit({ items: ctx.honest.items(400), shardSize: 2 });
      let taken = 0;
      let most = 0;
      for (let round = 0; round < 30; round++) {
        const liar = await connectWorker(ctx.url, { name: 'grabber', threads: 1024, auto: false, heartbeat: false });
        ctx.open.push(liar);
        liar.pull(1024);
        // Take whatever comes within 300 ms of asking (on a later round, nothing may come at all).
        await sleep(300);
        taken += liar.leases.length;
        most = Math.max(most, liar.leases.length);
        liar.close();
        await until(() => liar.disconnected, 'the grabber is gone', 10_000);
      }
      await sleep(200);
      ctx.honest.pull();
      await ctx.honest.loop(Promise.resolve(), first);
      const q = await quarantinedCount(ctx.url);
      return `it took ${taken} leases in 30 rounds (at most ${most} at once) and dropped them; quarantined: ${q === 1 ? 'yes' : `no (gauge ${q})`}`;
    },
  },
  ...(['127.0.0.1', '127.0.0.2'] as const).map((from): RowSpec => ({
    id: from === '127.0.0.1' ? '4' : '4b',
    attack: `2,500 authenticated workers (pull 1, then silent) from ${from}${from === '127.0.0.1' ? ', the honest parties\' address' : ''}`,
    run: (ctx) =>
      during(ctx, async () => {
        const silent: BenchWorker[] = [];
        const refusals = new Map<string, number>();
        const N = 2500;
        const t0 = Date.now();
        for (let start = 0; start < N; start += 100) {
          await Promise.all(Array.from({ length: Math.min(100, N - start) }, async (_, k) => {
            try {
              const w = await connectWorker(ctx.url, { name: `silent-${start + k}`, auto: false, heartbeat: false, localAddress: from });
              w.pull(1);
              silent.push(w);
              ctx.open.push(w);
            } catch (e) {
              const why = e instanceof Error ? e.message : String(e);
              refusals.set(why, (refusals.get(why) ?? 0) + 1);
            }
          }));
        }
        const connectS = (Date.now() - t0) / 1000;
        await sleep(1000);
        const leases = silent.reduce((n, w) => n + w.leases.length, 0);
        // While they hold their connections: a fresh connection from each address.
        const fresh = async (address: string): Promise<string> => {
          try {
            return String((await call(ctx.url, '/healthz', { token: null, agent: false, localAddress: address, timeoutMs: 10_000 })).status);
          } catch (e) {
            return (e instanceof Error ? Reflect.get(e, 'code') ?? e.message : String(e)) as string;
          }
        };
        const fresh1 = await fresh('127.0.0.1');
        const fresh3 = await fresh('127.0.0.3');
        const text = await metricsText(ctx.url);
        const refusedPerIp = metric(text, 'fedpool_connections_refused_total{reason="per-ip"}');
        const open = metric(text, 'fedpool_connections_open');
        // They never heartbeat: the coordinator drops them once they have been silent for a lease (30 s).
        await until(() => silent.every((w) => w.disconnected), 'the silent workers to be dropped', 90_000, 250).catch(() => undefined);
        const dropped = silent.filter((w) => w.disconnected);
        const droppedAfter = dropped.length === 0 ? NaN : (Math.max(...dropped.map((w) => w.disconnectedAt)) - t0) / 1000;
        ctx.notes.push(`row ${from === '127.0.0.1' ? '4' : '4b'}: connect errors: ${[...refusals].map(([k, v]) => `${v}× ${k}`).join('; ') || 'none'}; coordinator connections open at peak ${open}; bench API connection errors (retried) ${apiConnectionErrors}`);
        return `${silent.length} connected in ${connectS.toFixed(0)} s, ${N - silent.length} refused (per-ip refusals counted: ${refusedPerIp}); they held ${leases} leases; ` +
          `fresh connection meanwhile from 127.0.0.1: ${fresh1}, from 127.0.0.3: ${fresh3}; ${dropped.length} dropped as silent, the last ${droppedAfter.toFixed(0)} s after the first connect`;
      }),
  })),
  ...([2, 3] as const).map((R): RowSpec => ({
    id: R === 2 ? '5a' : '5b',
    attack: `a liar answering 42 beside ${R === 2 ? 'one honest worker' : 'two honest workers'}, --redundancy ${R}`,
    run: async (ctx) => {
      // This row's honest pool: the liar joins it (the default two honest workers are not used).
      ctx.honest.close();
      const pool = new Honest(ctx.url, ctx.honest.model, ctx.rng);
      ctx.honest = pool;
      await pool.connect(R === 2 ? ['honest-a'] : ['honest-a', 'honest-b'], { delayMs: 1 });
      const liar = await connectWorker(ctx.url, { name: 'liar', delayMs: 1, lie: (h) => new Float32Array(h.length).fill(42) });
      ctx.open.push(liar);
      liar.pull(4);
      pool.pull(4);
      const job = await pool.submit({ redundancy: R });
      const o = await pool.finish(job, false);
      const s = await jobStatus(ctx.url, job.id);
      const lines = await results(ctx.url, job.id);
      const honestLines = lines.filter((l, i) => l.disputed !== true && job.items[i] !== undefined && l.score === expectedScore(job.items[i] as Item)).length;
      const liesAccepted = lines.filter((l) => l.disputed !== true && l.score === 42).length;
      const rec = await record(ctx.url, 'liar');
      const liarState = `liar ${rec?.state ?? '?'} (outvoted ${rec?.record.outvoted ?? 0}, verified ${rec?.record.verified ?? 0})`;
      if (R === 2) {
        ctx.honestOk = o.state === 'done' && liesAccepted === 0 && o.wrong === 0;
        ctx.honestText = `${ctx.honestOk ? 'held' : 'NO'}: ${honestLines} honest + ${o.disputed} disputed of ${o.lines}, ${liesAccepted} lies accepted`;
      } else {
        pool.outcomes.push(o);
      }
      return `job ${o.state}: ${o.disputed} of ${o.lines} lines disputed, ${honestLines} honest, ${liesAccepted} lies accepted (replicas ${s.replicas ?? '?'}, disagreements ${s.disagreements ?? '?'}); ${liarState}`;
    },
  })),
  {
    id: '6',
    attack: '12 websocket upgrades with no token, each followed by a 200 MB frame',
    run: (ctx) =>
      during(ctx, async () => {
        const before = metric(await metricsText(ctx.url), 'fedpool_protocol_errors_total{code="unauthorized"}');
        const chunk = Buffer.alloc(1024 * 1024, 0x61);
        const one = (): Promise<{ answer: string; written: number; ms: number; outcome: string }> =>
          new Promise((resolve) => {
            const t0 = performance.now();
            const s = netConnect(ctx.coord.port, '127.0.0.1');
            let answer = '';
            let outcome = 'closed';
            let finished = false;
            const finish = (): void => {
              if (finished) return;
              finished = true;
              resolve({ answer: answer.split('\r\n')[0] ?? '', written: s.bytesWritten, ms: performance.now() - t0, outcome });
              s.destroy();
            };
            s.on('data', (d: Buffer) => (answer += d.toString('latin1')));
            s.on('error', (e) => {
              outcome = String(Reflect.get(e, 'code') ?? e.message);
            });
            s.on('close', finish);
            s.on('connect', async () => {
              const key = randomBytes(16).toString('base64');
              s.write(`GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:${ctx.coord.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
                `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
              // A masked binary frame announcing 200 MB (64-bit length), then the bytes.
              const total = 200 * 1024 * 1024;
              const header = Buffer.alloc(14);
              header[0] = 0x82;
              header[1] = 0x80 | 127;
              header.writeBigUInt64BE(BigInt(total), 2);
              randomBytes(4).copy(header, 10);
              s.write(header);
              for (let sent = 0; sent < total && !s.destroyed; sent += chunk.byteLength) {
                if (!s.write(chunk)) await drainOrClose(s);
              }
              outcome = s.destroyed ? outcome : 'all 200 MB written';
              if (!s.destroyed) s.end();
              setTimeout(finish, 30_000).unref();
            });
          });
        const all = await Promise.all(Array.from({ length: 12 }, one));
        const after = metric(await metricsText(ctx.url), 'fedpool_protocol_errors_total{code="unauthorized"}');
        const answers = [...new Set(all.map((a) => a.answer || '(no answer)'))].join(', ');
        const mb = (n: number): string => (n / 1024 / 1024).toFixed(1);
        ctx.notes.push(`row 6: per connection: ${all.map((a) => `${mb(a.written)} MB/${a.ms.toFixed(0)} ms/${a.outcome}`).join(', ')}`);
        return `12× answered "${answers}" and reset; each client got at most ${mb(Math.max(...all.map((a) => a.written)))} MB into its socket first (slowest reset ${Math.max(...all.map((a) => a.ms)).toFixed(0)} ms); unauthorized counted +${after - before}`;
      }),
  },
  {
    id: '7',
    attack: 'a client POSTs a 250 MB JSON job (row form, 4 features per item), then cancels and deletes it',
    run: (ctx) =>
      during(ctx, async () => {
        const r = await bigBody(ctx, 'valid');
        let after = '';
        if (r.status === 201) {
          const id = (JSON.parse(r.text) as { id: string }).id;
          const cancel = await api(ctx.url, `/api/jobs/${id}?only=cancel`, { method: 'DELETE' });
          const del = await api(ctx.url, `/api/jobs/${id}`, { method: 'DELETE' });
          after = `; cancel ${cancel.status}, delete ${del.status}`;
        }
        return `${r.items.toLocaleString('en')} items, ${(r.bytes / 1e6).toFixed(0)} MB: answer ${r.status} after ${r.seconds.toFixed(1)} s${r.status === 201 ? '' : ` (${r.text.trim().slice(0, 120)})`}, ${(r.sentBytes / 1e6).toFixed(0)} MB sent${after}`;
      }),
  },
  {
    id: '7b',
    attack: 'a client POSTs a 250 MB JSON job whose items array has 125 million entries',
    run: (ctx) =>
      during(ctx, async () => {
        const r = await bigBody(ctx, 'entries');
        return `answer ${r.status} after ${r.seconds.toFixed(1)} s and ${(r.sentBytes / 1e6).toFixed(0)} of ${(r.bytes / 1e6).toFixed(0)} MB sent: ${r.text.trim().slice(0, 110)}`;
      }),
  },
  ...([1, 150] as const).map((n): RowSpec => ({
    id: n === 1 ? '8' : '8b',
    attack: n === 1 ? 'a worker asks for a 5 MB blob 300 times with its socket paused' : '150 workers each ask for the 5 MB blob 300 times, sockets paused (beyond the issue)',
    run: (ctx) =>
      during(ctx, async () => {
        const r = new Random(deriveSeed(ctx.seed, 'blob'));
        const bytes = new Uint8Array(5 * 1024 * 1024);
        for (let i = 0; i < bytes.length; i += 4) new DataView(bytes.buffer).setUint32(i, Math.floor(r.next() * 2 ** 32));
        const hash = await uploadBlob(ctx.url, bytes);
        const hoarders = await Promise.all(Array.from({ length: n }, (_, k) => connectWorker(ctx.url, { name: `hoarder-${k}`, auto: false })));
        ctx.open.push(...hoarders);
        for (const w of hoarders) {
          const ws = w.rawWebSocket();
          if (ws === undefined) throw new Error('cannot reach the websocket under socket.io-client to pause it');
          ws.pause();
          for (let i = 0; i < 300; i++) sendMessage(w.socket, { type: 'blob-request', hash });
        }
        await sleep(8000);
        const served = metric(await metricsText(ctx.url), 'fedpool_blob_bytes_served_total');
        for (const w of hoarders) w.rawWebSocket()?.resume();
        await sleep(3000);
        const chunks = hoarders.reduce((s, w) => s + w.blobs.length, 0);
        const finals = hoarders.reduce((s, w) => s + w.blobs.filter((c) => c.final).length, 0);
        const cut = hoarders.filter((w) => w.disconnected).length;
        for (const w of hoarders) w.close();
        return `${n * 300} requests, paused 8 s: ${(served / 1024 / 1024).toFixed(0)} MiB written to ${n === 1 ? 'its socket' : 'their sockets'} meanwhile; after resuming ${chunks} chunks, ${finals} whole transfer(s) arrived; ${cut} disconnected`;
      }),
  })),
  {
    id: '9',
    attack: 'a worker floods heartbeats and pulls (credit 1,024), reconnecting when cut off',
    run: (ctx) =>
      during(ctx, async () => {
        const heartbeat = encodeMessage({ type: 'heartbeat', time: Date.now(), inFlight: 0 });
        const pull = encodeMessage({ type: 'pull', credit: 1024 });
        let frames = 0;
        let connections = 0;
        let limited = 0;
        const perConnection: number[] = [];
        const end = Date.now() + 10_000;
        while (Date.now() < end) {
          const w = await connectWorker(ctx.url, { name: 'flooder', auto: false, heartbeat: false });
          ctx.open.push(w);
          connections++;
          let mine = 0;
          while (!w.disconnected && Date.now() < end) {
            for (let i = 0; i < 500; i++) {
              w.socket.emit('heartbeat', heartbeat);
              w.socket.emit('pull', pull);
            }
            mine += 1000;
            await new Promise<void>((r) => setImmediate(r));
          }
          await until(() => w.disconnected, 'the flooder cut off', 5_000).catch(() => undefined);
          if (w.errors.some((e) => e.code === 'rate-limited')) limited++;
          perConnection.push(mine);
          frames += mine;
          w.close();
        }
        const text = await metricsText(ctx.url);
        const rec = await record(ctx.url, 'flooder');
        const median = [...perConnection].sort((a, b) => a - b)[Math.floor(perConnection.length / 2)] ?? 0;
        return `${frames.toLocaleString('en')} frames over ${connections} connections in 10 s; ${limited} told rate-limited and cut off (median ${median.toLocaleString('en')} frames written each); ` +
          `rate-limited counted ${metric(text, 'fedpool_protocol_errors_total{code="rate-limited"}')}; flooder ${rec?.state ?? 'gone'}, quarantined gauge ${metric(text, 'fedpool_workers_quarantined')}`;
      }),
  },
  {
    id: '10',
    attack: '5,000 concurrent GET /metrics with a client token, from 127.0.0.2-6 (1,000 each)',
    scaled: 'spread over 5 loopback addresses so that the per-IP cap (1,024) does not refuse them',
    run: (ctx) =>
      during(ctx, async () => {
        const t0 = performance.now();
        const statuses = new Map<string, number>();
        await Promise.all(Array.from({ length: 5000 }, async (_, i) => {
          let key: string;
          try {
            key = String((await call(ctx.url, '/metrics', { token: CLIENT_TOKEN_2, agent: false, localAddress: `127.0.0.${2 + (i % 5)}`, timeoutMs: 120_000 })).status);
          } catch (e) {
            key = String(e instanceof Error ? Reflect.get(e, 'code') ?? e.message : e);
          }
          statuses.set(key, (statuses.get(key) ?? 0) + 1);
        }));
        const s = (performance.now() - t0) / 1000;
        return `${[...statuses].map(([k, v]) => `${v}× ${k}`).join(', ')} in ${s.toFixed(1)} s`;
      }),
  },
  {
    id: '11',
    attack: "client token CT2 lists, reads, follows and cancels CT's job",
    run: async (ctx) => {
      ctx.honest.pull();
      const job = await ctx.honest.submit({ items: ctx.honest.items(2000) });
      const as2 = (p: string, method = 'GET'): Promise<Answer> => api(ctx.url, p, { method, token: CLIENT_TOKEN_2 });
      const list = JSON.parse((await as2('/api/jobs')).text) as { id: string }[];
      const answers = [
        (await as2(`/api/jobs/${job.id}`)).status,
        (await as2(`/api/jobs/${job.id}/meta`)).status,
        (await as2(`/api/jobs/${job.id}/results`)).status,
        (await as2(`/api/jobs/${job.id}/results?follow=1`)).status,
        (await as2(`/api/jobs/${job.id}?only=cancel`, 'DELETE')).status,
        (await as2(`/api/jobs/${job.id}`, 'DELETE')).status,
      ];
      const admin = (await api(ctx.url, `/api/jobs/${job.id}`, { token: ADMIN_TOKEN })).status;
      await ctx.honest.finish(job);
      await ctx.honest.loop(Promise.resolve());
      return `CT2's list ${list.some((j) => j.id === job.id) ? 'SHOWS' : 'omits'} the job; status/meta/results/follow/cancel/delete answered ${answers.join('/')}; the admin sees it (${admin}); the job ran to the end`;
    },
  },
  {
    id: '12',
    attack: 'a blob file damaged on the coordinator (state FILE.blobs/)',
    run: (ctx) =>
      during(ctx, async () => {
        const r = new Random(deriveSeed(ctx.seed, 'damaged'));
        const bytes = Uint8Array.from({ length: 300_000 }, () => Math.floor(r.next() * 256));
        const hash = await uploadBlob(ctx.url, bytes);
        const head = async (): Promise<number> => (await api(ctx.url, `/api/blobs/${hash}`, { method: 'HEAD' })).status;
        const head1 = await head();
        const damaged = Uint8Array.from(bytes);
        damaged[1234] = (damaged[1234] ?? 0) ^ 0x55;
        writeFileSync(path.join(`${ctx.coord.state}.blobs`, hash), damaged);
        // The honest workers fetch a lease's model before they score: they ask for the damaged blob.
        const job = await ctx.honest.submit({ model: hash, items: ctx.honest.items(20) });
        const failed = await ctx.honest.finish(job, false);
        const head2 = await head();
        await uploadBlob(ctx.url, bytes);
        const head3 = await head();
        const again = await ctx.honest.finish(await ctx.honest.submit({ model: hash }));
        const notFound = ctx.honest.workers.reduce((n, w) => n + w.missingModels, 0);
        return `HEAD ${head1} before; workers told not-found ${notFound}×; its job ${failed.state}${failed.error === undefined ? '' : ` ("${failed.error.slice(0, 60)}…")`}; HEAD ${head2} after; re-upload, HEAD ${head3}; a job on it: ${again.exact ? 'exact' : again.state}`;
      }),
  },
  {
    id: '13',
    attack: "jobs whose items do not fit the model's input (a real bundle, features:8)",
    run: (ctx) =>
      during(ctx, async () => {
        const { packedBundle } = await import('../test/helpers/bundles.js');
        const bundle = await packedBundle({ kind: 'features', dim: 8 });
        const hash = await uploadBlob(ctx.url, bundle);
        const four = ctx.honest.items(50);
        const wrongDim = await submitJob(ctx.url, { model: hash, items: four });
        const text = await submitJob(ctx.url, { model: hash, items: [{ id: 't0', prompt: 'p', response: 'r' }] });
        const eight = Array.from({ length: 50 }, (_, i) => ({ id: `e${i}`, features: [...(four[i]?.features ?? []), ...(four[i]?.features ?? [])] }));
        const good = await ctx.honest.finish(await ctx.honest.submit({ model: hash, items: eight }));
        const msg = (a: Answer): string => (JSON.parse(a.text) as { error?: string }).error ?? a.text;
        return `4 features: ${wrongDim.status} "${msg(wrongDim).slice(0, 90)}"; text: ${text.status} "${msg(text).slice(0, 60)}"; 8 features: ${good.exact ? 'scored exactly' : good.state}`;
      }),
  },
];

/** Resolves when `stream` drains or closes, leaving no listener behind. */
function drainOrClose(stream: { once: (event: 'drain' | 'close', f: () => void) => unknown; off: (event: 'drain' | 'close', f: () => void) => unknown }): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.once('drain', done);
    stream.once('close', done);
  });
}

/** POSTs a 250 MB JSON body, generated as it is sent (never whole in memory here). */
async function bigBody(ctx: Ctx, kind: 'valid' | 'entries'): Promise<{ status: number; text: string; seconds: number; bytes: number; sentBytes: number; items: number }> {
  const TARGET = 250_000_000;
  const head = `{"kind":"score","model":"${ctx.honest.model}","items":[`;
  const tail = ']}';
  const PER_CHUNK = 20_000;
  let items = 0;
  let bytes = 0;
  /** Chunk k of the items (deterministic per seed and k), with its leading comma when k > 0. */
  const chunkText = (k: number, count: number): string => {
    if (kind === 'entries') return (k === 0 ? '0' : ',0') + ',0'.repeat(count - 1);
    const r = new Random(deriveSeed(ctx.seed, 'body', k));
    let s = '';
    for (let i = 0; i < count; i++) {
      const n = k * PER_CHUNK + i;
      const v = (): string => VALUE_TEXT[Math.floor(r.next() * VALUE_TEXT.length)] as string;
      s += `${n === 0 ? '' : ','}{"id":"b${String(n).padStart(8, '0')}","features":[${v()},${v()},${v()},${v()}]}`;
    }
    return s;
  };
  // First pass: how many chunks make 250 MB (the length is sent up front, as a client would).
  const per = kind === 'entries' ? 1_000_000 : PER_CHUNK;
  const chunks: number[] = [];
  bytes = head.length + tail.length;
  for (let k = 0; bytes < TARGET; k++) {
    const len = Buffer.byteLength(chunkText(k, per));
    chunks.push(per);
    bytes += len;
    items += per;
  }
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    let answered = false;
    const req = request(`${ctx.url}/api/jobs`, {
      method: 'POST', agent: false,
      headers: { authorization: `Bearer ${CLIENT_TOKEN}`, 'content-type': 'application/json', 'content-length': bytes },
    }, (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8'), seconds: (performance.now() - t0) / 1000, bytes, sentBytes: req.socket?.bytesWritten ?? 0, items }));
    });
    req.on('error', (e) => {
      if (!answered) reject(e);
    });
    void (async () => {
      const write = async (s: string): Promise<void> => {
        if (answered || req.destroyed) return;
        if (!req.write(s)) await drainOrClose(req);
      };
      await write(head);
      for (let k = 0; k < chunks.length && !answered && !req.destroyed; k++) await write(chunkText(k, chunks[k] as number));
      await write(tail);
      if (!answered && !req.destroyed) req.end();
    })().catch(reject);
  });
}

// ---- the run --------------------------------------------------------------------------------------------------------

interface RowResult {
  spec: RowSpec;
  happened: string;
  honestText: string;
  honestOk: boolean;
  honestSlowest: number;
  probe: ProbeReport | undefined;
  lag: LagReport | undefined;
  seconds: number;
  coordinatorDied: boolean;
  error?: string;
}

async function runRow(spec: RowSpec, seed: number): Promise<RowResult> {
  const t0 = performance.now();
  const dir = mkdtempSync(path.join(tmpdir(), 'fedpool-open-pool-'));
  scratchDirs.add(dir);
  apiConnectionErrors = 0;
  const rng = new Random(deriveSeed(seed, 'open-pool', spec.id));
  let coord: Coord | undefined;
  let probe: Probe | undefined;
  let control: { url: string; stop: () => void } | undefined;
  let ctx: Ctx | undefined;
  const result: RowResult = { spec, happened: '', honestText: '', honestOk: false, honestSlowest: 0, probe: undefined, lag: undefined, seconds: 0, coordinatorDied: false };
  try {
    coord = await startCoordinator(path.join(dir, 'state.db'), path.join(dir, 'lag.json'));
    control = await startControl();
    const model = await uploadBlob(coord.url, Uint8Array.from({ length: 4096 }, () => Math.floor(rng.next() * 256)));
    const honest = new Honest(coord.url, model, rng);
    ctx = { coord, url: coord.url, dir, seed, rng, honest, notes: [], open: [] };
    await honest.connect();
    coord.resetLag();
    probe = await startProbe(coord.url, coord.pid, control.url);
    result.happened = await spec.run(ctx);
    const h = ctx.honest.summary();
    result.honestText = ctx.honestText ?? h.text;
    result.honestOk = ctx.honestOk ?? h.ok;
    result.honestSlowest = h.slowest;
  } catch (e) {
    result.error = e instanceof Error ? e.message : String(e);
    result.happened = `BENCH ERROR: ${result.error}`;
    if (ctx !== undefined) {
      const h = ctx.honest.summary();
      result.honestText = ctx.honestText ?? h.text;
    }
  } finally {
    if (probe !== undefined) result.probe = await probe.stop().catch(() => undefined);
    control?.stop();
    if (coord !== undefined && !coord.exited()) {
      await sleep(300); // its last 250 ms window
      result.lag = coord.lag();
    }
    if (ctx !== undefined) {
      for (const w of ctx.open) w.close();
      ctx.honest.close();
      for (const n of ctx.notes) notes.push(n);
    }
    if (coord !== undefined) {
      result.coordinatorDied = coord.exited();
      if (result.coordinatorDied) notes.push(`row ${spec.id}: the coordinator exited during the row; its stderr ends: ${coord.stderr().slice(-600)}`);
      await coord.stop();
    }
    rmSync(dir, { recursive: true, force: true });
    scratchDirs.delete(dir);
  }
  result.seconds = (performance.now() - t0) / 1000;
  return result;
}

const notes: string[] = [];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
}

/** Node options for each row's coordinator (--coordinator-args). */
const coordinatorNodeArgs = (arg('--coordinator-args') ?? '').split(' ').filter((a) => a !== '');

function cell(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

async function main(): Promise<void> {
  const seed = Number(arg('--seed') ?? 1);
  const wanted = arg('--rows')?.split(',').map((s) => s.trim()).filter((s) => s !== '');
  const unknown = (wanted ?? []).filter((w) => !rows.some((r) => r.id === w));
  if (unknown.length > 0) throw new Error(`unknown rows: ${unknown.join(', ')} (rows: ${rows.map((r) => r.id).join(', ')})`);
  const selected = wanted === undefined ? rows : rows.filter((r) => wanted.includes(r.id));
  const command = `node --import=tsx bench/open-pool.ts${wanted === undefined ? '' : ` --rows ${wanted.join(',')}`} --seed ${seed}`;
  const load = loadavg().map((l) => l.toFixed(1)).join(' ');
  const started = performance.now();
  const out: RowResult[] = [];
  for (const spec of selected) {
    process.stderr.write(`row ${spec.id}: ${spec.attack} …\n`);
    const r = await runRow(spec, seed);
    out.push(r);
    const p = r.probe;
    process.stderr.write(`row ${spec.id}: ${r.happened}\n  honest: ${r.honestText}; RSS max ${p?.rss.maxMb.toFixed(0) ?? '?'} MB (HWM ${p?.rss.hwmMb.toFixed(0) ?? '?'}); ` +
      `/healthz max ${p?.healthz.maxMs.toFixed(0) ?? '?'} ms, p99 ${p?.healthz.p99Ms.toFixed(0) ?? '?'} ms (${p?.healthz.requests ?? 0} requests, ${p?.healthz.errors ?? 0} errors; control max ${p?.control.maxMs.toFixed(0) ?? '?'} ms); ` +
      `loop delay max ${r.lag?.maxMs.toFixed(0) ?? '?'} ms${r.lag === undefined || r.lag.worst.length === 0 ? '' : ` (${r.lag.worst.map((w) => `${w.ms} ms at ${(w.atMs / 1000).toFixed(1)} s`).join(', ')})`}; coordinator CPU ${p?.cpuSeconds.toFixed(1) ?? '?'} s of ${p?.seconds.toFixed(0) ?? '?'} s\n`);
  }
  const total = (performance.now() - started) / 1000;

  const lines: string[] = [];
  lines.push(`Measured with \`${command}\` on 2026-12-04: ${cpus().length} cores (${cpus()[0]?.model.trim() ?? '?'}), Node ${process.version}, load average ${load} at the start (other test runs shared the machine); ${total.toFixed(0)} s in all.`);
  lines.push(`One coordinator process per row (from source through tsx, \`--state\` SQLite in a scratch folder, defaults otherwise, FEDPOOL_LOG=error); RSS is its VmRSS sampled every 100 ms (HWM: the kernel's peak, which includes start-up); /healthz is asked every 50 ms by a separate probe process over one keep-alive connection, and in the same way of a control (a bare node:http server alone in its process: what the machine's scheduling costs a request); loop delay is the coordinator's own event-loop delay (monitorEventLoopDelay, preloaded by bench/open-pool-lag.ts); attacks and the two honest workers run in the bench process. Honest jobs: ${HONEST_ITEMS} items of 4 features, shards of ${HONEST_SHARD}, one after another for as long as the attack lasts, each checked line by line.`);
  lines.push('');
  lines.push('| row | attack | what happened | honest jobs exact | RSS MB (start → max, HWM) | /healthz max / p99 ms (control) | loop delay max ms | coordinator CPU s / row s |');
  lines.push('|---|---|---|---|---|---|---|---|');
  for (const r of out) {
    const p = r.probe;
    const rss = p === undefined ? '?' : `${p.rss.startMb.toFixed(0)} → ${p.rss.maxMb.toFixed(0)} (HWM ${p.rss.hwmMb.toFixed(0)})`;
    const hz = p === undefined ? '?' : `${p.healthz.maxMs.toFixed(0)} / ${p.healthz.p99Ms.toFixed(0)} (${p.control.maxMs.toFixed(0)} / ${p.control.p99Ms.toFixed(0)})${p.healthz.errors > 0 ? ` ${p.healthz.errors} errors: ${p.healthz.firstError}` : ''}`;
    const lag = r.lag === undefined ? '?' : r.lag.maxMs.toFixed(0);
    const attack = r.spec.attack + (r.spec.scaled === undefined ? '' : ` (${r.spec.scaled})`);
    const honest = `${r.honestOk ? 'yes' : 'NO'}: ${r.honestText}${r.honestSlowest > 0 ? `, slowest ${r.honestSlowest.toFixed(1)} s` : ''}`;
    const cpu = p === undefined ? '?' : `${p.cpuSeconds.toFixed(1)} / ${p.seconds.toFixed(0)}`;
    lines.push(`| ${r.spec.id} | ${cell(attack)} | ${cell(r.happened)} | ${cell(honest)} | ${rss} | ${cell(hz)} | ${lag} | ${cpu} |`);
  }
  const failures: string[] = [];
  for (const r of out) {
    const p = r.probe;
    const why: string[] = [];
    if (r.error !== undefined) why.push(`the bench failed: ${r.error}`);
    if (r.coordinatorDied) why.push('the coordinator exited');
    if (!r.honestOk) why.push(`honest job: ${r.honestText}`);
    if (p !== undefined && p.rss.maxMb > RSS_BOUND_MB) why.push(`RSS ${p.rss.maxMb.toFixed(0)} MB > ${RSS_BOUND_MB} MB`);
    if (p !== undefined && p.healthz.maxMs > HEALTHZ_BOUND_MS) {
      const worst = r.lag === undefined || r.lag.worst.length === 0 ? '' : `; its loop's longest delays ${r.lag.worst.map((w) => `${w.ms} ms at ${(w.atMs / 1000).toFixed(1)} s`).join(', ')}`;
      why.push(`/healthz max ${p.healthz.maxMs.toFixed(0)} ms > ${HEALTHZ_BOUND_MS} ms (p99 ${p.healthz.p99Ms.toFixed(0)} ms; the control's max ${p.control.maxMs.toFixed(0)} ms; the coordinator's loop delay max ${r.lag?.maxMs.toFixed(0) ?? '?'} ms${worst})`);
    }
    if (p !== undefined && p.healthz.errors > 0) why.push(`/healthz errors: ${p.healthz.errors} (${p.healthz.firstError})`);
    if (why.length > 0) failures.push(`- row ${r.spec.id}: ${why.join('; ')}`);
  }
  lines.push('');
  lines.push(failures.length === 0 ? `Every row held: RSS under ${RSS_BOUND_MB} MB, /healthz under ${HEALTHZ_BOUND_MS} ms, honest jobs exact.` : `Rows that did not hold (RSS ≤ ${RSS_BOUND_MB} MB, /healthz ≤ ${HEALTHZ_BOUND_MS} ms, honest jobs exact):`);
  lines.push(...failures);
  if (notes.length > 0) {
    lines.push('');
    lines.push('Notes:');
    for (const n of notes) lines.push(`- ${n}`);
  }
  console.log(lines.join('\n'));
  apiAgent.destroy();
}

try {
  await main();
} finally {
  cleanUpNow();
}
process.exit(0);
