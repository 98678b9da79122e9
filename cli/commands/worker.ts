// `fedpool worker`: join a coordinator and score (and fine-tune) shards until SIGTERM/SIGINT (drain, exit 0) or a second signal
// (exit 130 at once). A refused token is final: one line naming the token problem, non-zero exit.
import { availableParallelism, hostname } from 'node:os';
import { statSync } from 'node:fs';
import * as z from 'zod';
import { BlobCache, defaultCacheDir } from '../../client/blob-cache.js';
import type { BackendChoice } from '../../client/backends.js';
import type { ScoringPool } from '../../client/scoring/pool.js';
import { Datasets } from '../../client/training/datasets.js';
import type { TrainingPool } from '../../client/training/pool.js';
import { CertificateRefusedError, TokenRefusedError, VersionRefusedError, Worker, type Scorer, type Trainer, type WorkerLog } from '../../client/worker.js';
import { BACKENDS, MAX_ID_LENGTH, SCORER_APIS } from '../../shared/protocol/index.js';
import type { ServerScorer } from '../../client/scorers/index.js';
import { credentials } from '../credentials.js';
import { UserError } from '../errors.js';

const optionsSchema = z.object({
  url: z.string(),
  token: z.string().optional(),
  tokenFile: z.string().optional(),
  ca: z.string().optional(),
  name: z.string().optional(),
  threads: z.number().int().min(1).optional(),
  backend: z.enum(['auto', ...BACKENDS]).default('auto'),
  data: z.array(z.string()).optional(),
  delayMs: z.number().int().min(0).optional(),
  scorerUrl: z.string().optional(),
  scorerApi: z.enum(SCORER_APIS).optional(),
  scorerModel: z.string().min(1).max(MAX_ID_LENGTH).optional(),
  scorerKeyEnv: z.string().min(1).optional(),
  scorerConcurrency: z.number().int().min(1).default(4),
  scorerBatch: z.number().int().min(1).optional(),
  scorerTimeoutMs: z.number().int().min(1).default(60000),
  scorerTemplate: z.string().optional(),
  scorerLogprobs: z.number().int().min(1).default(5),
  scorerVocab: z.number().int().min(2).default(32000),
});

export type WorkerCommandOptions = z.input<typeof optionsSchema>;

const LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
type Level = (typeof LEVELS)[number];

/** pino's level numbers, so the worker's JSON lines read like the coordinator's. */
const PINO_LEVELS: Readonly<Record<Exclude<Level, 'silent'>, number>> = { debug: 20, info: 30, warn: 40, error: 50 };

/**
 * Logs on stderr: readable lines on a terminal, JSON lines (pino's shape: level, time, name, msg) otherwise.
 * FEDPOOL_LOG=debug|info|warn|error|silent sets the threshold (default info).
 */
export function stderrLog(env: NodeJS.ProcessEnv = process.env, stream: Pick<NodeJS.WriteStream, 'write' | 'isTTY'> = process.stderr): WorkerLog {
  const wanted = (env['FEDPOOL_LOG'] ?? 'info').toLowerCase();
  const threshold = LEVELS.indexOf((LEVELS as readonly string[]).includes(wanted) ? (wanted as Level) : 'info');
  const at = (level: Exclude<Level, 'silent'>) => (message: string) => {
    if (LEVELS.indexOf(level) < threshold) return;
    stream.write(stream.isTTY === true
      ? `fedpool worker: ${level === 'info' ? '' : `${level}: `}${message}\n`
      : `${JSON.stringify({ level: PINO_LEVELS[level], time: Date.now(), name: 'fedpool-worker', msg: message })}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** `--data NAME=PATH` → name → path, checking the format and that each path exists. */
export function parseDataOptions(values: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const value of values) {
    const m = /^([A-Za-z0-9][A-Za-z0-9._-]{0,255})=(.+)$/.exec(value);
    if (m === null) throw new UserError(`fedpool worker: --data ${JSON.stringify(value)}: expected NAME=PATH (NAME of letters, digits, . _ -)`);
    const [, name, path] = m as unknown as [string, string, string];
    if (out.has(name)) throw new UserError(`fedpool worker: --data ${name} is given twice`);
    try {
      statSync(path);
    } catch {
      throw new UserError(`fedpool worker: --data ${name}: no such file or directory: ${path}`);
    }
    out.set(name, path);
  }
  return out;
}

type Options = z.output<typeof optionsSchema>;

/**
 * `--scorer-url`: the inference server this worker fronts (docs/scorers.md), checked with one tiny request before the
 * worker joins; undefined without the flag. Every problem is one line and a non-zero exit.
 */
async function connectServer(options: Options, log: WorkerLog): Promise<ServerScorer | undefined> {
  const scorerFlags = (['scorerModel', 'scorerKeyEnv', 'scorerBatch', 'scorerTemplate'] as const).filter((k) => options[k] !== undefined);
  if (options.scorerUrl === undefined) {
    if (options.scorerApi !== undefined) throw new UserError('fedpool worker: --scorer-api needs --scorer-url');
    const flag = scorerFlags[0];
    if (flag !== undefined) throw new UserError(`fedpool worker: --${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --scorer-url`);
    return undefined;
  }
  if (options.scorerApi === undefined) throw new UserError(`fedpool worker: --scorer-url needs --scorer-api (${SCORER_APIS.join(', ')})`);
  let key: string | undefined;
  if (options.scorerKeyEnv !== undefined) {
    key = process.env[options.scorerKeyEnv];
    if (key === undefined || key === '') throw new UserError(`fedpool worker: --scorer-key-env ${options.scorerKeyEnv}: that environment variable is not set`);
  }
  const { createServerScorer, ScorerError } = await import('../../client/scorers/index.js');
  try {
    const server = createServerScorer({
      url: options.scorerUrl,
      api: options.scorerApi,
      ...(options.scorerModel === undefined ? {} : { model: options.scorerModel }),
      ...(key === undefined ? {} : { key }),
      concurrency: options.scorerConcurrency,
      ...(options.scorerBatch === undefined ? {} : { batch: options.scorerBatch }),
      timeoutMs: options.scorerTimeoutMs,
      ...(options.scorerTemplate === undefined ? {} : { template: options.scorerTemplate }),
      logprobs: options.scorerLogprobs,
      vocab: options.scorerVocab,
      log: (line) => log.info(line),
    });
    await server.check();
    if (server.model.length > MAX_ID_LENGTH) throw new UserError(`fedpool worker: the server's model name is longer than ${MAX_ID_LENGTH} characters; give a shorter --scorer-model`);
    log.info(`scoring through ${server.api} server ${options.scorerUrl} (model ${server.model})`);
    return server;
  } catch (e) {
    if (e instanceof ScorerError || e instanceof RangeError) throw new UserError(`fedpool worker: ${e.message}`);
    throw e;
  }
}

/** The real scoring stack (TF.js in piscina threads), loaded only when a worker runs. */
async function loadScoring() {
  const [backends, pool] = await Promise.all([import('../../client/backends.js'), import('../../client/scoring/pool.js')]);
  return { selectBackend: backends.selectBackend, createScoringPool: pool.createScoringPool };
}

export async function run(raw: Record<string, unknown>): Promise<void> {
  const parsed = optionsSchema.safeParse(raw);
  if (!parsed.success) throw new UserError(`fedpool worker: bad options: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  const options = parsed.data;
  const datasets = parseDataOptions(options.data ?? []);
  const name = options.name ?? `${hostname()}-${process.pid}`;
  const threads = options.threads ?? Math.max(1, availableParallelism() - 1);
  const { token, ca } = credentials(options, 'worker');
  const log = stderrLog();
  if (datasets.size > 0) log.debug(`datasets: ${[...datasets].map(([n, p]) => `${n}=${p}`).join(', ')}`);

  // Signals are handled from the start: a SIGTERM during backend start-up is a clean stop too.
  let worker: Worker | undefined;
  let stopRequested = false;
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      log.warn(`${signal} again: exiting without draining`);
      process.exit(130);
    }
    stopRequested = true;
    log.info(`${signal}: draining: finishing running leases, handing back the rest (${signal} again exits at once)`);
    void worker?.drain();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  let pool: ScoringPool | undefined;
  let training: Promise<TrainingPool> | undefined;
  let server: ServerScorer | undefined;
  try {
    // The inference server first: a worker whose server is down or wrong must not join the pool.
    server = await connectServer(options, log);
    if (stopRequested) return;
    const scoring = await loadScoring();
    let choice: BackendChoice;
    try {
      choice = await scoring.selectBackend(options.backend);
      for (const t of choice.tried) log.info(`backend ${t.backend} unavailable: ${t.error}`);
      pool = scoring.createScoringPool({ threads, backend: choice.backend });
      // Fail now, not on the first lease, if the threads cannot load what the main thread could.
      await pool.probe();
    } catch (e) {
      throw new UserError(`fedpool worker: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (stopRequested) return;
    const backend = choice.backend;
    const scorer: Scorer = pool;
    // The training pool (its threads and their TF.js) starts on the first train lease, keeping startup fast.
    const trainer: Trainer = {
      async train(shard) {
        training ??= import('../../client/training/pool.js').then((m) => m.createTrainingPool({ threads, backend }));
        return (await training).train(shard);
      },
    };
    worker = new Worker({
      url: options.url,
      token,
      ca,
      name,
      threads,
      backend,
      device: choice.device,
      scorer,
      ...(server === undefined ? {} : { server }),
      trainer,
      datasets: new Datasets(datasets),
      ...(options.delayMs === undefined ? {} : { delayMs: options.delayMs }),
      blobs: new BlobCache({ dir: defaultCacheDir(), onWarning: (m) => log.warn(m) }),
      log,
      onConnected: () => {
        const fronting = server === undefined ? '' : `, scorer=${server.api}:${server.model}`;
        process.stdout.write(`fedpool worker ${name} connected to ${options.url} (backend=${backend}, threads=${threads}${fronting})\n`);
      },
    });
    try {
      await worker.start();
    } catch (e) {
      if (e instanceof TokenRefusedError) throw new UserError(`fedpool worker: coordinator refused the token: ${e.reason}`);
      if (e instanceof VersionRefusedError || e instanceof CertificateRefusedError) throw new UserError(`fedpool worker: ${e.message}`);
      throw e;
    }
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await pool?.close();
    await server?.close();
    await training?.then((t) => t.close(), () => {});
    // Everything is closed; should a library still hold the event loop open, do not hang the shell. Unref'd, so
    // it fires only in that case, after main() has set the exit code.
    setTimeout(() => process.exit(), 2000).unref();
  }
  log.info('stopped');
}
