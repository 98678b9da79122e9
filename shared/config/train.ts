// train.json, the config of `fedpool train` (issue 4; README, "Federated fine-tuning"): one flat, strict object,
// validated once at the boundary. Every field, type and default is documented in docs/train-config.md.
import { z } from 'zod';
import { aggregationConfigSchema, parseAggregationConfig } from './aggregation.js';
import type { PipelineSpec } from '../aggregation/pipeline.js';

/** A train.json problem: the message is one line, `train.json: <field.path>: <problem>`. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** The dotted field path the message names ('' for the whole file). */
  readonly field: string;
  constructor(field: string, problem: string) {
    super(`train.json: ${field === '' ? '' : `${field}: `}${problem}`);
    this.field = field;
  }
}

const count = z.number().int().positive();
const path = z.string().min(1);
const probability = z.number().gt(0).max(1);

export const partitionConfigSchema = z.strictObject({
  clients: count,
  kind: z.enum(['iid', 'dirichlet']).default('iid'),
  /** Dirichlet concentration; only for kind 'dirichlet' (default 0.3 there). */
  alpha: z.number().finite().positive().optional(),
  seed: z.number().int().default(1),
});

export const dataConfigSchema = z.discriminatedUnion('source', [
  z.strictObject({ source: z.literal('central'), path, partition: partitionConfigSchema }),
  z.strictObject({
    source: z.literal('worker'),
    name: z.string().min(1),
    /** Expected number of worker datasets (clients); needed for fedau, adversary and an array p. Optional. */
    clients: count.optional(),
    /** Seeds the job's own choices (clients sampled per round, async dispatch, random attack noise). */
    seed: z.number().int().default(1),
  }),
]);

export const evalConfigSchema = z.strictObject({ path, every: count.default(1) });

export const stalenessConfigSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('constant') }),
  z.strictObject({ kind: z.literal('poly'), exponent: z.number().finite().nonnegative().default(0.5) }),
  z.strictObject({ kind: z.literal('hinge'), a: z.number().finite().nonnegative(), b: z.number().finite().nonnegative() }),
]);

const participationP = z.union([probability, z.array(probability).min(1), z.strictObject({ min: probability, max: probability })]);
const participationSeed = z.number().int().default(1);

export const participationConfigSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('bernoulli'), p: participationP, seed: participationSeed }),
  z.strictObject({ kind: z.literal('markov'), p: participationP, q: probability.default(0.05), seed: participationSeed }),
  z.strictObject({ kind: z.literal('cyclic'), p: participationP, period: count.default(100), seed: participationSeed }),
]);

export const localConfigSchema = z.strictObject({
  steps: count.default(10),
  batchSize: count.default(32),
  lr: z.number().finite().positive().default(0.05),
  momentum: z.number().min(0).lt(1).default(0.9),
});

export const attackNames = ['sign-flip', 'scaled-sign-flip', 'alie', 'foe', 'label-flip', 'random'] as const;
export type AttackName = (typeof attackNames)[number];

/** The `scale` each attack gets when the config leaves it out. */
export const defaultAttackScale: Readonly<Record<AttackName, number>> = {
  'sign-flip': 1,
  'scaled-sign-flip': 10,
  alie: 1.5,
  foe: 2,
  'label-flip': 1,
  random: 1,
};

export const adversaryConfigSchema = z.strictObject({
  clients: z.array(z.number().int().nonnegative()).min(1),
  attack: z.enum(attackNames),
  scale: z.number().finite().positive().optional(),
});

/** The flat schema; mode-specific requirements and cross-field checks live in parseTrainConfig. */
export const trainConfigSchema = z.strictObject({
  model: path,
  task: z.enum(['reward-pairs', 'classify']),
  data: dataConfigSchema,
  eval: evalConfigSchema.optional(),
  mode: z.enum(['sync', 'async']).default('sync'),
  rounds: count.optional(),
  clientsPerRound: count.optional(),
  roundDeadlineMs: count.optional(),
  steps: count.optional(),
  concurrency: count.optional(),
  buffer: count.optional(),
  staleness: stalenessConfigSchema.optional(),
  maxStaleness: z.number().int().nonnegative().nullable().optional(),
  participation: participationConfigSchema.optional(),
  local: localConfigSchema.default({ steps: 10, batchSize: 32, lr: 0.05, momentum: 0.9 }),
  adversary: adversaryConfigSchema.optional(),
  /** The coordinator persists the model and training state every this many server steps (and at the end). */
  checkpointEvery: count.default(10),
  /**
   * The coordinator refuses an update whose L2 norm exceeds this, at its boundary: the lease counts as that worker's
   * failure (re-leased to another) and its record's `rejected` grows (docs/security.md). Absent: no bound.
   */
  maxUpdateNorm: z.number().finite().positive().optional(),
  aggregation: aggregationConfigSchema.default({
    weighting: 'samples',
    fedauCutoff: null,
    robust: { mix: 'none', rule: 'mean', f: 0 },
    server: { optimizer: 'sgd', lr: 1, momentum: 0 },
  }),
});

type RawTrainConfig = z.infer<typeof trainConfigSchema>;
export type PartitionConfig = Omit<z.infer<typeof partitionConfigSchema>, 'alpha'> & { alpha?: number };
export type DataConfig = z.infer<typeof dataConfigSchema>;
export type EvalConfig = z.infer<typeof evalConfigSchema>;
export type StalenessConfig = z.infer<typeof stalenessConfigSchema>;
export type ParticipationConfig = z.infer<typeof participationConfigSchema>;
export type LocalConfig = z.infer<typeof localConfigSchema>;
export type AdversaryConfig = { clients: number[]; attack: AttackName; scale: number };

type ModeFields = 'mode' | 'rounds' | 'clientsPerRound' | 'roundDeadlineMs' | 'steps' | 'concurrency' | 'buffer' | 'staleness' | 'maxStaleness' | 'adversary';
export type SyncFields = { mode: 'sync'; rounds: number; clientsPerRound: number; roundDeadlineMs: number };
export type AsyncFields = {
  mode: 'async';
  steps: number;
  concurrency: number;
  buffer: number;
  staleness: StalenessConfig;
  maxStaleness: number | null;
};
/** The resolved config: defaults filled in, paths resolved; JSON-serialisable and parses again to itself. */
export type TrainConfig = Omit<RawTrainConfig, ModeFields> & { adversary?: AdversaryConfig } & (SyncFields | AsyncFields);

export const syncDefaults = { roundDeadlineMs: 60_000 } as const;
export const asyncDefaults = { staleness: { kind: 'poly', exponent: 0.5 } as StalenessConfig, maxStaleness: null } as const;

/** Joins a relative path onto a base directory. */
export type PathResolver = (baseDir: string, relative: string) => string;

/**
 * The default PathResolver, platform-free (shared/ imports no node:path): an absolute path (`/x`, `C:\x`, `C:/x`,
 * `\\server\x`) is returned unchanged; otherwise `baseDir/relative` with '/' separators, '.' segments dropped and
 * '..' segments folded (a leading '..' of a relative base is kept). Backslashes in a relative path are left as is;
 * Windows callers wanting native semantics pass node:path's `resolve` instead.
 */
export function joinPath(baseDir: string, relative: string): string {
  if (isAbsolute(relative)) return relative;
  const joined = baseDir === '' ? relative : `${baseDir.replace(/[\\/]+$/, '')}/${relative}`;
  const absolute = joined.startsWith('/');
  const prefixMatch = /^([A-Za-z]:[\\/]|\\\\)/.exec(joined);
  const prefix = prefixMatch ? prefixMatch[0] : absolute ? '/' : '';
  const parts: string[] = [];
  for (const seg of joined.slice(prefix.length).split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..' && parts.length > 0 && parts[parts.length - 1] !== '..') parts.pop();
    else if (seg === '..' && prefix !== '') continue; // cannot go above the root
    else parts.push(seg);
  }
  const body = parts.join('/');
  return prefix + body || '.';
}

function isAbsolute(p: string): boolean {
  return p.startsWith('/') || /^[A-Za-z]:[\\/]/.test(p) || p.startsWith('\\\\');
}

/** The number of clients, when the config fixes it: partition.clients, or data.clients for worker data. */
export function trainClientCount(cfg: Pick<TrainConfig, 'data'>): number | null {
  return cfg.data.source === 'central' ? cfg.data.partition.clients : (cfg.data.clients ?? null);
}

/** Updates one server step aggregates: clientsPerRound (sync) or buffer (async). */
export function trainPerStep(cfg: SyncFields | AsyncFields): number {
  return cfg.mode === 'sync' ? cfg.clientsPerRound : cfg.buffer;
}

/** The aggregation PipelineSpec for a parsed config (numClients 0 when unknown, allowed since fedau needs it known). */
export function trainPipelineSpec(cfg: TrainConfig): PipelineSpec {
  return parseAggregationConfig(cfg.aggregation, { numClients: trainClientCount(cfg) ?? 0, perStep: trainPerStep(cfg) });
}

function fail(field: string, problem: string): never {
  throw new ConfigError(field, problem);
}

/**
 * Validates train.json and returns the resolved config. `baseDir` is the folder of the config file: `model`,
 * `data.path` and `eval.path` are resolved against it with `resolvePath` (default joinPath). Throws ConfigError on the
 * first problem found.
 */
export function parseTrainConfig(json: unknown, baseDir: string, resolvePath: PathResolver = joinPath): TrainConfig {
  const parsed = trainConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys;
      fail([...where, keys[0]].join('.'), keys.length > 1 ? `unknown keys ${keys.join(', ')}` : 'unknown key');
    }
    const message = issue.message.replace(/\s+/g, ' ');
    // zod says "Invalid input: expected string, received undefined" for a missing field: say what users mean.
    fail(where.join('.'), /received undefined$/.test(message) ? 'missing (required)' : message.replace(/^Invalid input: /, ''));
  }
  const raw = parsed.data;
  const clients = trainClientCount(raw);

  if (raw.data.source === 'central') {
    const part = raw.data.partition;
    if (part.kind === 'iid' && part.alpha !== undefined) fail('data.partition.alpha', "only for kind 'dirichlet'");
    if (part.kind === 'dirichlet' && part.alpha === undefined) part.alpha = 0.3;
    if (part.kind === 'dirichlet' && raw.task === 'reward-pairs') fail('data.partition.kind', "'dirichlet' splits by class label; reward-pairs data has none (use 'iid')");
  }

  let modeFields: SyncFields | AsyncFields;
  if (raw.mode === 'sync') {
    for (const k of ['steps', 'concurrency', 'buffer', 'staleness', 'maxStaleness'] as const) {
      if (raw[k] !== undefined) fail(k, "only for mode 'async'");
    }
    if (raw.rounds === undefined) fail('rounds', "required for mode 'sync'");
    if (raw.clientsPerRound === undefined) fail('clientsPerRound', "required for mode 'sync'");
    if (clients !== null && raw.clientsPerRound > clients) fail('clientsPerRound', `${raw.clientsPerRound} exceeds the ${clients} clients`);
    modeFields = { mode: 'sync', rounds: raw.rounds, clientsPerRound: raw.clientsPerRound, roundDeadlineMs: raw.roundDeadlineMs ?? syncDefaults.roundDeadlineMs };
  } else {
    for (const k of ['rounds', 'clientsPerRound', 'roundDeadlineMs'] as const) {
      if (raw[k] !== undefined) fail(k, "only for mode 'sync'");
    }
    if (raw.steps === undefined) fail('steps', "required for mode 'async'");
    if (raw.concurrency === undefined) fail('concurrency', "required for mode 'async'");
    if (raw.buffer === undefined) fail('buffer', "required for mode 'async'");
    if (clients !== null && raw.concurrency > clients) fail('concurrency', `${raw.concurrency} exceeds the ${clients} clients (a client trains one shard at a time)`);
    modeFields = {
      mode: 'async',
      steps: raw.steps,
      concurrency: raw.concurrency,
      buffer: raw.buffer,
      staleness: raw.staleness ?? asyncDefaults.staleness,
      maxStaleness: raw.maxStaleness ?? asyncDefaults.maxStaleness,
    };
  }

  if (raw.participation !== undefined) {
    const p = raw.participation.p;
    if (Array.isArray(p)) {
      if (clients === null) fail('participation.p', 'an array needs a known client count (data.partition.clients or data.clients)');
      if (p.length !== clients) fail('participation.p', `has ${p.length} entries but there are ${clients} clients`);
    } else if (typeof p === 'object' && p.max < p.min) {
      fail('participation.p.max', `${p.max} is below p.min ${p.min}`);
    }
  }

  let adversary: AdversaryConfig | undefined;
  if (raw.adversary !== undefined) {
    const adv = raw.adversary;
    if (clients === null) fail('adversary.clients', 'needs a known client count (data.partition.clients or data.clients)');
    const seen = new Set<number>();
    adv.clients.forEach((id, i) => {
      if (id >= clients) fail(`adversary.clients.${i}`, `client id ${id} is not below the ${clients} clients`);
      if (seen.has(id)) fail(`adversary.clients.${i}`, `client id ${id} is listed twice`);
      seen.add(id);
    });
    adversary = { clients: adv.clients, attack: adv.attack, scale: adv.scale ?? defaultAttackScale[adv.attack] };
  }

  if (raw.aggregation.weighting === 'fedau' && clients === null) {
    fail('aggregation.weighting', "'fedau' needs a known client count (data.partition.clients or data.clients)");
  }
  try {
    parseAggregationConfig(raw.aggregation, { numClients: clients ?? 0, perStep: trainPerStep(modeFields) });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    const m = /^([^:]+): (.*)$/.exec(msg);
    if (m) fail(m[1], m[2]);
    fail('aggregation', msg);
  }

  const data: DataConfig = raw.data.source === 'central' ? { ...raw.data, path: resolvePath(baseDir, raw.data.path) } : raw.data;
  const { mode: _m, rounds: _r, clientsPerRound: _c, roundDeadlineMs: _d, steps: _s, concurrency: _k, buffer: _b, staleness: _st, maxStaleness: _ms, adversary: _a, ...common } = raw;
  const out: TrainConfig = {
    ...common,
    model: resolvePath(baseDir, raw.model),
    data,
    ...(raw.eval !== undefined ? { eval: { ...raw.eval, path: resolvePath(baseDir, raw.eval.path) } } : {}),
    ...modeFields,
    ...(adversary !== undefined ? { adversary } : {}),
  };
  return out;
}
