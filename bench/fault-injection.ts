// Fault injection (issue 13): seeded runs of real scoring and training jobs on a real pool — a coordinator on a
// SQLite state file and N `fedpool worker` processes — during which workers and the coordinator are killed with
// SIGKILL at random points. Killed workers come back under the same name after a random delay; a killed
// coordinator comes back on the same state file and port after a random delay, the workers reconnect, `fedpool
// train` follows its job through the restart and a `fedpool score` that lost its coordinator is replaced by
// `fedpool score --resume ID`. Every run must end exactly once:
//
// - score: the submitter exits 0 and its output file is byte for byte the output of an uninterrupted run of the same
//   job on the same pool (every input line once, in input order, with the same scores);
// - train, in sync rounds with a checkpoint every step (train-exact-resume.test.ts's configuration): a round's
//   updates are aggregated sorted by client and a shard's update depends only on its weights, momentum, data and
//   version, so the model cannot depend on which worker trained which client, nor on a round re-run after a restart
//   (async FedBuff aggregates in arrival order: exact only with one worker, and not run here). `fedpool train` exits 0,
//   the coordinator's metrics show every step once with the uninterrupted run's losses, and the model files are
//   byte-identical to that run's.
//
//   node --import=tsx bench/fault-injection.ts [--runs 20] [--seed 1] [--workers 3] [--lines 6000]
//                                              [--shard-size 50] [--rounds 16] [--verbose]
//
// The plan of each run (what is killed, at which fraction of the job's progress, for how long) comes from
// shared/random.ts's Random, seeded with deriveSeed(seed, 'fault-run', run). test/e2e/fault-injection.test.ts
// runs two of these in the suite with the test helpers' process tracking; this file's entry point starts its
// children itself (the CLI from source through tsx, each in its own process group, killed by PID on every way out).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gaussianClasses } from '../cli/demo-data.js';
import { Random, deriveSeed } from '../shared/random.js';
import { integerFlag } from './flags.js';

export const FI_WORKER_TOKEN = 'fault-w';
export const FI_CLIENT_TOKEN = 'fault-c';

// ---- processes ----------------------------------------------------------------------------------

/** A started `fedpool` process: what the engine needs of one (test/helpers/processes.ts's Child has all of it). */
export interface Proc {
  readonly pid: number;
  /** First match of `re` in the output so far or to come; rejects if the process exits first or after `ms`. */
  line(re: RegExp, options?: { stream?: 'stdout' | 'stderr'; ms?: number; what?: string }): Promise<RegExpMatchArray>;
  /** The exit code, or 128 + the signal's number. */
  readonly status: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  /** SIGTERM, then its process group is killed after a grace period; resolves with `status`. */
  stop(): Promise<number | null>;
}

/** Starts `fedpool ARGS` (from source) with `env` added to a quiet environment. */
export type Launch = (args: readonly string[], env: Record<string, string>) => Proc;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** SIGKILL to one process by its PID (a fault, not a cleanup: no grace, no process group). */
function kill9(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}

// ---- the pool -----------------------------------------------------------------------------------

interface PoolWorker {
  name: string;
  proc: Proc;
  /** Killed and not back yet. */
  dead: boolean;
}

export interface Pool {
  dir: string;
  launch: Launch;
  state: string;
  url: string;
  port: number;
  coordinator: Proc;
  workers: PoolWorker[];
  workerDelayMs: number;
  leaseMs: number;
  /** Worker restarts under way (awaited before the next run starts). */
  restarts: Set<Promise<void>>;
  /** stopPool was called: no worker comes back any more. */
  stopping: boolean;
}

export interface PoolOptions {
  workers: number;
  /** Each worker's `--delay-ms`: holds every result back, so a small job lasts long enough to be hit. */
  workerDelayMs: number;
  leaseMs?: number;
}

function coordinatorArgs(pool: Pick<Pool, 'state' | 'leaseMs'>, port: number): string[] {
  return ['coordinator', '--port', String(port), '--state', pool.state, '--worker-token', FI_WORKER_TOKEN, '--client-token', FI_CLIENT_TOKEN, '--lease-ms', String(pool.leaseMs)];
}

async function launchCoordinator(launch: Launch, pool: Pick<Pool, 'state' | 'leaseMs'>, port: number): Promise<{ proc: Proc; url: string }> {
  const proc = launch(coordinatorArgs(pool, port), {});
  const [, url] = await proc.line(/^fedpool coordinator listening on (http:\/\/\S+)$/m, { stream: 'stdout', what: 'coordinator start' });
  return { proc, url: url! };
}

function launchWorker(pool: Pool, name: string): Proc {
  return pool.launch(
    ['worker', '--url', pool.url, '--token', FI_WORKER_TOKEN, '--name', name, '--threads', '1', '--backend', 'wasm', '--delay-ms', String(pool.workerDelayMs)],
    { FEDPOOL_CACHE_DIR: path.join(pool.dir, `cache-${name}`) },
  );
}

const connected = (w: Proc, name: string): Promise<RegExpMatchArray> => w.line(/ connected to /, { stream: 'stdout', what: `worker ${name} connecting` });

/** A coordinator on `dir/state.db` and `workers` workers w-a, w-b, …; resolves once all have connected. */
export async function startPool(launch: Launch, dir: string, options: PoolOptions): Promise<Pool> {
  const base = { state: path.join(dir, 'state.db'), leaseMs: options.leaseMs ?? 30_000 };
  const { proc, url } = await launchCoordinator(launch, base, 0);
  const pool: Pool = { ...base, dir, launch, url, port: Number(new URL(url).port), coordinator: proc, workers: [], workerDelayMs: options.workerDelayMs, restarts: new Set(), stopping: false };
  for (let k = 0; k < options.workers; k++) {
    const name = `w-${String.fromCharCode(97 + k)}`;
    pool.workers.push({ name, proc: launchWorker(pool, name), dead: false });
  }
  await Promise.all(pool.workers.map((w) => connected(w.proc, w.name)));
  return pool;
}

/** Stops every worker, then the coordinator (SIGTERM; each process group is killed after a grace period). */
export async function stopPool(pool: Pool): Promise<void> {
  pool.stopping = true;
  // A worker still waiting to come back stays down; one already starting is stopped like the others.
  await Promise.all(pool.workers.map((w) => w.proc.stop()));
  await Promise.allSettled([...pool.restarts]);
  await Promise.all(pool.workers.map((w) => w.proc.stop()));
  await pool.coordinator.stop();
}

// ---- HTTP -----------------------------------------------------------------------------------------

interface JobView {
  id: string;
  state: string;
  progress: { done: number; total: number };
  error?: string;
}

async function get(pool: Pool, route: string): Promise<Response> {
  return fetch(`${pool.url}${route}`, { headers: { authorization: `Bearer ${FI_CLIENT_TOKEN}` } });
}

async function jobView(pool: Pool, id: string): Promise<JobView> {
  const res = await get(pool, `/api/jobs/${id}`);
  if (!res.ok) throw new Error(`GET /api/jobs/${id}: ${res.status} ${await res.text()}`);
  return (await res.json()) as JobView;
}

const TERMINAL = new Set(['done', 'failed', 'cancelled']);

// ---- the cases --------------------------------------------------------------------------------------

export interface ScoreCase {
  kind: 'score';
  model: string;
  input: string;
  lines: number;
  shardSize: number;
  /** The output file of an uninterrupted run. */
  reference: Buffer;
}

export interface TrainCase {
  kind: 'train';
  config: string;
  steps: number;
  /** An uninterrupted run: its model files by name and its metrics lines without their times. */
  reference: { model: Map<string, Buffer>; metrics: string[] };
}

export type FaultCase = ScoreCase | TrainCase;

async function cli(launch: Launch, args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  const p = launch(args, {});
  const status = await p.status;
  return { status, stdout: p.stdout(), stderr: p.stderr() };
}

async function modelInit(launch: Launch, out: string, args: string[]): Promise<void> {
  const r = await cli(launch, ['model', 'init', '--out', out, ...args]);
  if (r.status !== 0) throw new Error(`fedpool model init exited ${r.status}: ${r.stderr}`);
}

/** Text items in groups of one prompt, and a preference pair every 50th line (as test/e2e/pool.test.ts scores). */
function writeScoreInput(file: string, n: number): void {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    if (i % 50 === 49) lines.push(JSON.stringify({ id: `pair-${i}`, prompt: `question ${i % 13}`, chosen: `a good answer ${i}`, rejected: `bad ${i % 7}` }));
    else lines.push(JSON.stringify({ id: `item-${i}`, prompt: `question ${i % 13}`, response: `answer number ${i} about topic ${i % 17}`, group: `g${i % 40}` }));
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}

function scoreArgs(pool: Pool, c: Pick<ScoreCase, 'model' | 'input' | 'shardSize'>, output: string): string[] {
  return ['score', '--url', pool.url, '--token', FI_CLIENT_TOKEN, '--model', c.model, '--input', c.input, '--output', output, '--shard-size', String(c.shardSize)];
}

export type ScoreFiles = Omit<ScoreCase, 'reference'>;

/** A text reward model and `lines` input lines in `dir` (no pool needed: runs beside the pool's start). */
export async function writeScoreCase(launch: Launch, dir: string, options: { lines: number; shardSize: number }): Promise<ScoreFiles> {
  mkdirSync(dir, { recursive: true });
  const model = path.join(dir, 'model');
  await modelInit(launch, model, ['--input', 'text:64', '--output', 'reward', '--hidden', '32', '--seed', '3']);
  const input = path.join(dir, 'in.jsonl');
  writeScoreInput(input, options.lines);
  return { kind: 'score', model, input, lines: options.lines, shardSize: options.shardSize };
}

/** The output of an uninterrupted run of the case on this pool. */
export async function referenceScore(pool: Pool, c: ScoreFiles): Promise<ScoreCase> {
  const output = path.join(path.dirname(c.input), 'reference.jsonl');
  const r = await cli(pool.launch, scoreArgs(pool, c, output));
  if (r.status !== 0) throw new Error(`the reference score run exited ${r.status}: ${r.stderr}`);
  const reference = readFileSync(output);
  // The reference itself: one line per input line, in input order.
  const ids = (text: string): string[] => text.trim().split('\n').map((l) => (JSON.parse(l) as { id: string }).id);
  if (ids(reference.toString('utf8')).join('\n') !== ids(readFileSync(c.input, 'utf8')).join('\n')) throw new Error('the reference output is not the input, line for line');
  return { ...c, reference };
}

/** Every file of a model directory, by name. */
function modelFiles(dir: string): Map<string, Buffer> {
  return new Map(readdirSync(dir).sort().map((f) => [f, readFileSync(path.join(dir, f))]));
}

/** A metrics line without its wall-clock time (the only field that may differ between equal runs). */
function metricKey(line: string): string {
  const { time: _time, ...rest } = JSON.parse(line) as Record<string, unknown>;
  return JSON.stringify(rest);
}

async function coordinatorMetrics(pool: Pool, id: string): Promise<string[]> {
  const res = await get(pool, `/api/jobs/${id}/metrics`);
  if (!res.ok) throw new Error(`GET /api/jobs/${id}/metrics: ${res.status}`);
  return (await res.text()).split('\n').filter((l) => l.trim() !== '');
}

function trainArgs(pool: Pool, config: string, out: string): string[] {
  return ['train', '--url', pool.url, '--token', FI_CLIENT_TOKEN, '--config', config, '--out', out];
}

export type TrainFiles = Omit<TrainCase, 'reference'>;

/**
 * A small classifier to train in sync rounds (server Adam, worker momentum, NNM + centered clipping, a checkpoint every
 * step: train-exact-resume's configuration) and its data and train.json, in `dir`.
 */
export async function writeTrainCase(launch: Launch, dir: string, options: { rounds: number; clients?: number; clientsPerRound?: number }): Promise<TrainFiles> {
  mkdirSync(dir, { recursive: true });
  await modelInit(launch, path.join(dir, 'model'), ['--input', 'features:8', '--output', 'classes:3', '--hidden', '16', '--seed', '5']);
  gaussianClasses(path.join(dir, 'train.jsonl'), 600, 50);
  const config = path.join(dir, 'train.json');
  writeFileSync(config, JSON.stringify({
    model: 'model',
    task: 'classify',
    data: { source: 'central', path: 'train.jsonl', partition: { clients: options.clients ?? 8, kind: 'dirichlet', alpha: 0.5, seed: 9 } },
    local: { steps: 4, batchSize: 16, lr: 0.1, momentum: 0.9 },
    checkpointEvery: 1,
    mode: 'sync',
    rounds: options.rounds,
    clientsPerRound: options.clientsPerRound ?? 6,
    // Long enough that no update is ever late: a late update would make the round differ from the reference's.
    roundDeadlineMs: 600_000,
    aggregation: { weighting: 'samples', robust: { mix: 'nnm', rule: 'cclip', f: 1, tau: 0.5 }, server: { optimizer: 'adam', lr: 0.02 } },
  }));
  return { kind: 'train', config, steps: options.rounds };
}

/** An uninterrupted run of the case on this pool: its model files and the coordinator's metrics lines. */
export async function referenceTrain(pool: Pool, c: TrainFiles): Promise<TrainCase> {
  const out = path.join(path.dirname(c.config), 'reference');
  const r = await cli(pool.launch, trainArgs(pool, c.config, out));
  if (r.status !== 0) throw new Error(`the reference training run exited ${r.status}: ${r.stderr}`);
  const id = /fedpool job (\S+) submitted/.exec(r.stderr)?.[1] ?? '';
  const metrics = (await coordinatorMetrics(pool, id)).map(metricKey);
  if (metrics.length !== c.steps) throw new Error(`the reference run has ${metrics.length} metrics lines for ${c.steps} rounds`);
  return { ...c, reference: { model: modelFiles(path.join(out, 'model')), metrics } };
}

// ---- plans ----------------------------------------------------------------------------------------

export type FaultEvent =
  /** Kill a worker (the `pick`-th live one, modulo) when the job is `at` done, `extraMs` later; back after `backMs`. */
  | { what: 'worker'; at: number; extraMs: number; pick: number; backMs: number }
  /** Kill the coordinator when the job is `at` done, `extraMs` later; restarted after `downMs`. */
  | { what: 'coordinator'; at: number; extraMs: number; downMs: number };

/**
 * A run's faults, from its seed: 0–2 worker kills and 0–2 coordinator kills (at least one fault), each at a fraction
 * of the job's progress in [0, 0.8) (0: right after submission) plus up to `maxExtraMs`, in order of that fraction.
 */
export function planFaults(seed: number, maxExtraMs = 250): FaultEvent[] {
  const r = new Random(seed);
  const pickCount = (): number => {
    const u = r.next();
    return u < 0.25 ? 0 : u < 0.75 ? 1 : 2;
  };
  let workerKills = pickCount();
  const coordinatorKills = pickCount();
  if (workerKills + coordinatorKills === 0) workerKills = 1;
  const events: FaultEvent[] = [];
  const at = (): number => Math.floor(r.next() * 16) / 20; // 0, 0.05, …, 0.75
  const extraMs = (): number => Math.floor(r.next() * maxExtraMs);
  for (let i = 0; i < workerKills; i++) events.push({ what: 'worker', at: at(), extraMs: extraMs(), pick: Math.floor(r.next() * 1000), backMs: Math.floor(r.next() * 3000) });
  for (let i = 0; i < coordinatorKills; i++) events.push({ what: 'coordinator', at: at(), extraMs: extraMs(), downMs: Math.floor(r.next() * 1500) });
  return events.sort((a, b) => a.at - b.at);
}

// ---- one run --------------------------------------------------------------------------------------

export interface RunReport {
  kind: 'score' | 'train';
  seed: number;
  /** What was killed when, in the order it happened ("w-b@31/120", "coord@55/120 down 0.62 s"). */
  faults: string[];
  /** Planned faults that did not happen because the job had ended first. */
  skipped: number;
  /** Faults that happened just after the job had ended (their extra delay outlasted it). */
  late: number;
  workerKills: number;
  coordinatorKills: number;
  /** `fedpool score --resume` processes started. */
  resumes: number;
  /** `done`, or what went wrong. */
  outcome: string;
  /** Every check passed: the job done, the output/model exactly the uninterrupted run's, every line/step once. */
  exactlyOnce: boolean;
  /** Why exactlyOnce is false. */
  problems: string[];
  seconds: number;
}

/** Restarts the coordinator on the same state file and port. */
async function restartCoordinator(pool: Pool): Promise<void> {
  const { proc, url } = await launchCoordinator(pool.launch, pool, pool.port);
  pool.coordinator = proc;
  pool.url = url;
}

/** Kills a live worker (never the last one) and brings it back under its name after `backMs`. */
function killWorker(pool: Pool, pick: number, backMs: number, trace: (what: string) => void): string | undefined {
  const live = pool.workers.filter((w) => !w.dead);
  if (live.length < 2) return undefined;
  const w = live[pick % live.length]!;
  kill9(w.proc.pid);
  w.dead = true;
  const back = (async () => {
    await w.proc.status;
    await sleep(backMs);
    if (pool.stopping) return;
    w.proc = launchWorker(pool, w.name);
    await connected(w.proc, w.name);
    w.dead = false;
    trace(`${w.name} back`);
  })();
  pool.restarts.add(back);
  void back.finally(() => pool.restarts.delete(back)).catch(() => {});
  return w.name;
}

export interface FaultRunOptions {
  /** planFaults's extra delay bound (default 250 ms). */
  maxExtraMs?: number;
  /** Called with each step of the run as it happens, with the seconds since its start. */
  trace?: (seconds: number, what: string) => void;
}

/** A run that takes longer than this is a hang: it is reported as one, not waited for. */
const RUN_LIMIT_MS = 300_000;

/** One seeded run of `c` with faults: submits, injects the plan, resumes, and checks the result against the reference. */
export async function faultRun(pool: Pool, c: FaultCase, seed: number, runDir: string, options: FaultRunOptions = {}): Promise<RunReport> {
  const started = performance.now();
  const trace = (what: string): void => options.trace?.((performance.now() - started) / 1000, what);
  // The pool is whole before a run starts: workers killed in the previous run are back.
  await Promise.all([...pool.restarts]);
  trace('pool whole');
  mkdirSync(runDir, { recursive: true });
  const plan = planFaults(seed, options.maxExtraMs);
  const report: RunReport = { kind: c.kind, seed, faults: [], skipped: 0, late: 0, workerKills: 0, coordinatorKills: 0, resumes: 0, outcome: '', exactlyOnce: false, problems: [], seconds: 0 };
  const output = path.join(runDir, 'out.jsonl');
  const out = path.join(runDir, 'train-out');
  let submitter = pool.launch(c.kind === 'score' ? scoreArgs(pool, c, output) : trainArgs(pool, c.config, out), {});
  const [, id] = await submitter.line(/fedpool job (\S+) submitted/, { stream: 'stderr', what: `fedpool ${c.kind} submitting` });
  const jobId = id!;
  trace(`job ${jobId} submitted`);

  /**
   * A score submitter that gave up on its coordinator (it follows restarts of up to 2 minutes itself) is replaced by
   * `fedpool score --resume`.
   */
  const resumeIfLost = async (): Promise<void> => {
    if (c.kind !== 'score' || (await submitter.status) === 0) return;
    report.resumes++;
    trace('the submitter lost its coordinator: fedpool score --resume');
    submitter = pool.launch(['score', '--url', pool.url, '--token', FI_CLIENT_TOKEN, '--resume', jobId, '--output', output], {});
  };

  const pending = [...plan];
  let ended = false;
  const deadline = Date.now() + RUN_LIMIT_MS;
  while (pending.length > 0 && Date.now() < deadline) {
    const job = await jobView(pool, jobId);
    if (TERMINAL.has(job.state)) {
      ended = true;
      break;
    }
    const event = pending[0]!;
    if (job.progress.done < Math.ceil(event.at * job.progress.total)) {
      await sleep(15);
      continue;
    }
    pending.shift();
    await sleep(event.extraMs);
    // Where the job is at the moment of the kill (the extra delay lands kills anywhere within a shard or a round).
    const now = await jobView(pool, jobId);
    const late = TERMINAL.has(now.state);
    if (late) report.late++;
    const where = `${now.progress.done}/${now.progress.total}${late ? ' (after the end)' : ''}`;
    trace(`fault at ${where}`);
    if (event.what === 'worker') {
      const name = killWorker(pool, event.pick, event.backMs, trace);
      if (name === undefined) report.faults.push(`(no worker to spare @${where})`);
      else {
        report.workerKills++;
        report.faults.push(`${name}@${where} back ${(event.backMs / 1000).toFixed(1)}s`);
      }
    } else {
      kill9(pool.coordinator.pid);
      await pool.coordinator.status;
      report.coordinatorKills++;
      report.faults.push(`coord@${where} down ${(event.downMs / 1000).toFixed(1)}s`);
      await sleep(event.downMs);
      await restartCoordinator(pool);
      trace('coordinator back');
      await resumeIfLost();
    }
  }
  report.skipped = ended ? pending.length : 0;

  // The end: the submitter (a resume, if the last coordinator kill took the previous one) exits.
  await resumeIfLost();
  let limit: NodeJS.Timeout | undefined;
  const hung = new Promise<'hung'>((resolve) => (limit = setTimeout(() => resolve('hung'), Math.max(0, deadline - Date.now()))));
  const status = await Promise.race([submitter.status, hung]);
  clearTimeout(limit);
  trace(`submitter exited ${status}`);
  if (status === 'hung') {
    await submitter.stop();
    report.outcome = `hung: the job or its submitter did not end within ${RUN_LIMIT_MS / 1000} s`;
    report.problems.push('hung');
    report.seconds = (performance.now() - started) / 1000;
    return report;
  }
  const job = await jobView(pool, jobId);
  report.outcome = job.state === 'done' && status === 0 ? 'done' : `${job.state}${job.error ? ` (${job.error})` : ''}, submitter exit ${status}: ${submitter.stderr().trim().split('\n').at(-1) ?? ''}`;
  if (status !== 0) report.problems.push(`submitter exited ${status}`);
  if (job.state !== 'done') report.problems.push(`job ${job.state}`);

  if (c.kind === 'score') {
    if (status === 0) {
      const got = readFileSync(output);
      if (!got.equals(c.reference)) {
        const want = c.reference.toString('utf8').split('\n');
        const have = got.toString('utf8').split('\n');
        const first = want.findIndex((l, i) => have[i] !== l);
        report.problems.push(`output differs from the uninterrupted run (${have.length - 1} lines for ${want.length - 1}; first difference at line ${first + 1})`);
      }
      const summary = JSON.parse(submitter.stdout().trim().split('\n').at(-1) ?? '{}') as { items?: number };
      if (summary.items !== c.lines) report.problems.push(`summary says ${summary.items} items for ${c.lines}`);
    }
  } else {
    const metrics = (await coordinatorMetrics(pool, jobId)).map(metricKey);
    const steps = metrics.map((m) => (JSON.parse(m) as { step: number }).step);
    const once = steps.length === c.steps && steps.every((s, i) => s === i + 1);
    if (!once) report.problems.push(`coordinator metrics steps ${steps.join(',')} (want 1..${c.steps} once each)`);
    else if (metrics.some((m, i) => m !== c.reference.metrics[i])) report.problems.push('metrics (loss, participants) differ from the uninterrupted run');
    if (status === 0) {
      const cliSteps = readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => (JSON.parse(l) as { step: number }).step);
      if (cliSteps.length !== c.steps || cliSteps.some((s, i) => s !== i + 1)) report.problems.push(`metrics.jsonl steps ${cliSteps.join(',')}`);
      const got = modelFiles(path.join(out, 'model'));
      const names = [...c.reference.model.keys()];
      if ([...got.keys()].join() !== names.join()) report.problems.push(`model files ${[...got.keys()].join(',')} (want ${names.join(',')})`);
      for (const [name, bytes] of c.reference.model) {
        if (!bytes.equals(got.get(name) ?? Buffer.alloc(0))) report.problems.push(`model file ${name} differs from the uninterrupted run's`);
      }
    }
  }
  trace('checked');
  report.exactlyOnce = report.problems.length === 0;
  report.seconds = (performance.now() - started) / 1000;
  return report;
}

// ---- the benchmark's own process handling ------------------------------------------------------------

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
/** The CLI from source, as the tests run it (test/helpers/fedpool.ts imports nothing of ava). */
const cliEntry = path.join(root, 'test', 'helpers', 'fedpool.ts');
const tsxLoader = import.meta.resolve('tsx');
const GRACE_MS = 20_000;
const START_MS = 120_000;
const SIGNALS: Partial<Record<NodeJS.Signals, number>> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2 };

const children = new Set<number>();

function killGroup(pid: number): void {
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // the group is gone
  }
}

/** `fedpool ARGS` from source in its own process group; every group still running is killed when this process ends. */
export const benchLaunch: Launch = (args, env) => {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, FEDPOOL_LOG: 'silent', ...env };
  for (const k of ['FEDPOOL_TOKEN', 'FEDPOOL_WORKER_TOKEN', 'FEDPOOL_CLIENT_TOKEN']) delete childEnv[k];
  const proc = spawn(process.execPath, [`--import=${tsxLoader}`, cliEntry, ...args], { cwd: root, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const pid = proc.pid;
  if (pid === undefined) throw new Error(`cannot start fedpool ${args[0] ?? ''}`);
  children.add(pid);
  let out = '';
  let err = '';
  const waiters = new Set<() => void>();
  const wake = (): void => {
    for (const w of [...waiters]) w();
  };
  proc.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    wake();
  });
  proc.stderr.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    wake();
  });
  let closed = false;
  const status = new Promise<number | null>((resolve) => {
    proc.once('close', (code, signal) => {
      closed = true;
      children.delete(pid);
      wake();
      resolve(code ?? (signal === null ? null : 128 + (SIGNALS[signal] ?? 0)));
    });
  });
  return {
    pid,
    status,
    stdout: () => out,
    stderr: () => err,
    line: (re, o = {}) =>
      new Promise((resolve, reject) => {
        const text = (): string => (o.stream === 'stderr' ? err : o.stream === 'stdout' ? out : `${out}\n${err}`);
        const finish = (): void => {
          waiters.delete(check);
          clearTimeout(timer);
        };
        const check = (): void => {
          const m = re.exec(text());
          if (m !== null) {
            finish();
            resolve(m);
          } else if (closed) {
            finish();
            reject(new Error(`${o.what ?? String(re)}: the process exited first; stderr: ${err.slice(-1500)}`));
          }
        };
        const timer = setTimeout(() => {
          finish();
          killGroup(pid);
          reject(new Error(`${o.what ?? String(re)}: not seen within ${(o.ms ?? START_MS) / 1000} s (killed)`));
        }, o.ms ?? START_MS);
        waiters.add(check);
        check();
      }),
    stop: () => {
      if (!closed) {
        try {
          process.kill(pid, 'SIGTERM');
        } catch {
          // exited meanwhile
        }
        const timer = setTimeout(() => killGroup(pid), GRACE_MS);
        void status.then(() => clearTimeout(timer));
      }
      return status;
    },
  };
};

// ---- main -----------------------------------------------------------------------------------------


async function main(args: string[]): Promise<number> {
  const runs = integerFlag(args, 'runs', 20);
  const baseSeed = integerFlag(args, 'seed', 1);
  const workers = integerFlag(args, 'workers', 3);
  const lines = integerFlag(args, 'lines', 6000);
  const shardSize = integerFlag(args, 'shard-size', 50);
  const rounds = integerFlag(args, 'rounds', 16);
  const verbose = args.includes('--verbose');
  const dir = mkdtempSync(path.join(tmpdir(), 'fedpool-fault-'));
  let pool: Pool | undefined;
  const cleanup = (): void => {
    for (const pid of children) killGroup(pid);
    rmSync(dir, { recursive: true, force: true });
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  try {
    const t0 = performance.now();
    const [started, scoreFiles, trainFiles] = await Promise.all([
      startPool(benchLaunch, dir, { workers, workerDelayMs: 20 }),
      writeScoreCase(benchLaunch, path.join(dir, 'score-case'), { lines, shardSize }),
      writeTrainCase(benchLaunch, path.join(dir, 'train-case'), { rounds }),
    ]);
    pool = started;
    const [score, train] = await Promise.all([referenceScore(pool, scoreFiles), referenceTrain(pool, trainFiles)]);
    console.log(`pool: ${workers} workers (wasm, 1 thread, --delay-ms 20), state ${path.basename(pool.state)}; score: ${lines} lines in shards of ${shardSize}; train: sync, ${rounds} rounds × 6 of 8 clients, Adam + NNM/cclip; set-up and references ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    console.log('');
    console.log('| run | seed | kind | killed (SIGKILL) at progress | outcome | exactly once | s |');
    console.log('|--:|--:|:--|:--|:--|:--|--:|');
    const reports: RunReport[] = [];
    for (let run = 1; run <= runs; run++) {
      const seed = deriveSeed(baseSeed, 'fault-run', run);
      const c = run % 2 === 1 ? score : train;
      let r: RunReport;
      try {
        r = await faultRun(pool, c, seed, path.join(dir, `run-${run}`), verbose ? { trace: (s, what) => process.stderr.write(`  run ${run} ${s.toFixed(2)} s: ${what}\n`) } : {});
      } catch (e) {
        r = { kind: c.kind, seed, faults: [], skipped: 0, late: 0, workerKills: 0, coordinatorKills: 0, resumes: 0, outcome: `error: ${e instanceof Error ? e.message : String(e)}`, exactlyOnce: false, problems: ['error'], seconds: 0 };
      }
      reports.push(r);
      const faults = [...r.faults, ...(r.skipped > 0 ? [`${r.skipped} planned after the end`] : [])].join('; ');
      const outcome = r.kind === 'score' && r.resumes > 0 ? `${r.outcome}, ${r.resumes} resume${r.resumes > 1 ? 's' : ''}` : r.outcome;
      console.log(`| ${run} | ${seed} | ${r.kind} | ${faults} | ${outcome} | ${r.exactlyOnce ? 'yes' : `NO: ${r.problems.join('; ')}`} | ${r.seconds.toFixed(1)} |`);
    }
    const ok = reports.filter((r) => r.exactlyOnce).length;
    const sum = (f: (r: RunReport) => number): number => reports.reduce((s, r) => s + f(r), 0);
    console.log('');
    console.log(`${ok} of ${runs} runs exactly once (${reports.filter((r) => r.kind === 'score').length} score, ${reports.filter((r) => r.kind === 'train').length} train); ` +
      `${sum((r) => r.workerKills)} worker kills, ${sum((r) => r.coordinatorKills)} coordinator kills, ${sum((r) => r.resumes)} score resumes; ${((performance.now() - t0) / 1000).toFixed(0)} s in all`);
    return ok === runs ? 0 : 1;
  } finally {
    if (pool !== undefined) await stopPool(pool).catch(() => {});
  }
}

if (process.argv[1] !== undefined && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
