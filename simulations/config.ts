// sim.json, the config of `fedpool simulate --config` (issue 5; README, "Simulated populations"): a user-defined grid of
// experiments × algorithms over one simulated population, validated once at the boundary (strict: unknown keys are
// errors; each error is one line `sim.json: field.path: problem`). presets/from-config.ts turns the parsed config
// into a `Preset`, so the runner, report and CLI treat it like a fixed preset. Every field, type and default is
// documented in docs/sim-config.md. Platform-free.
import { z } from 'zod';
import { minInputs } from '../shared/aggregation/robust.js';
import { robustConfigSchema, serverOptimizerConfigSchema } from '../shared/config/aggregation.js';
import { stalenessConfigSchema } from '../shared/config/train.js';
import { P2P_ATTACKS } from './engine/p2p.js';
import { SYNC_ATTACKS } from './engine/sync.js';

/** A sim.json problem: the message is one line, `sim.json: <field.path>: <problem>`. */
export class SimConfigError extends Error {
  override readonly name = 'SimConfigError';
  /** The dotted field path the message names ('' for the whole file). */
  readonly field: string;
  constructor(field: string, problem: string, file = 'sim.json') {
    super(`${file}: ${field === '' ? '' : `${field}: `}${problem}`);
    this.field = field;
  }
}

const count = z.number().int().positive();
const positive = z.number().finite().positive();
const nonNegative = z.number().finite().nonnegative();
const probability = z.number().gt(0).max(1);
/** Experiment and algorithm names: they become metrics.csv cells and report labels. */
const label = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._/+-]*$/, 'letters, digits and . _ / + - only, starting with a letter or digit');

export const simTaskSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('quadratic'),
    dim: count.default(10),
    gradientNoise: nonNegative.default(1),
  }),
  z.strictObject({
    kind: z.literal('softmax'),
    samplesPerClient: count.default(100),
    classes: z.number().int().min(2).default(10),
    features: count.default(20),
    alpha: positive.default(1),
    testSamples: count.optional(),
    meanScale: positive.optional(),
  }),
  z.strictObject({
    kind: z.literal('mnist'),
    alpha: positive.default(1),
    perClassTrain: count.default(500),
    perClassTest: count.default(100),
    pool: z.union([z.literal(1), z.literal(2), z.literal(4)]).default(2),
  }),
  z.strictObject({
    kind: z.literal('spam'),
    alpha: positive.default(1),
    dim: count.default(256),
    testFraction: z.number().gt(0).lt(1).default(0.2),
  }),
]);

const participationP = z.union([
  probability,
  z.array(probability).min(1),
  z.strictObject({ min: probability, max: probability, by: z.enum(['id', 'data']).default('id') }),
]);

export const simParticipationSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('bernoulli'), p: participationP }),
  z.strictObject({ kind: z.literal('markov'), p: participationP, q: probability.default(0.05) }),
  z.strictObject({ kind: z.literal('cyclic'), p: participationP, period: count.default(100) }),
]);

export const simSpeedsSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('constant'), value: nonNegative.default(1) }),
  z.strictObject({ kind: z.literal('exponential'), mean: positive }),
  z.strictObject({ kind: z.literal('half-normal'), sd: nonNegative, min: nonNegative.default(0) }),
  z.strictObject({ kind: z.literal('uniform'), min: nonNegative, max: nonNegative }),
  z.strictObject({ kind: z.literal('log-normal'), mu: z.number().finite().default(0), sigma: nonNegative.default(1), jitter: z.tuple([positive, positive]).optional() }),
  z.strictObject({ kind: z.literal('per-example'), perExample: positive, sd: nonNegative.default(0), samples: count }),
]);

/** `z`: a fixed z for alie/foe (sync: instead of the line search; p2p: instead of its default). */
export const simByzantineSchema = z.strictObject({ clients: z.number().int().nonnegative(), attack: z.enum(SYNC_ATTACKS), z: positive.optional() });

export const simLocalSchema = z.strictObject({
  steps: count.default(5),
  lr: positive.default(0.1),
  batchSize: count.default(16),
  momentum: z.number().min(0).lt(1).default(0),
  /** Sync only: each client keeps its Polyak momentum between its jobs (worker momentum, MoNNA). Absent = false. */
  keepMomentum: z.boolean().optional(),
});

const defaultServer = { optimizer: 'sgd', lr: 1, momentum: 0 } as const;

const syncAlgorithmSchema = z.strictObject({
  name: label,
  mode: z.literal('sync'),
  weighting: z.enum(['samples', 'uniform', 'fedau', 'known', 'all']).default('samples'),
  fedauCutoff: count.nullable().default(null),
  robust: robustConfigSchema.default({ mix: 'none', rule: 'mean', f: 0 }),
  server: serverOptimizerConfigSchema.default(defaultServer),
  clientsPerRound: count.optional(),
  /** τ: the aggregate is scaled by γ_t = 1/(1 + t/τ) before the server optimizer (t = 0-based round). */
  lrDecay: positive.optional(),
});

const asyncAlgorithmSchema = z.strictObject({
  name: label,
  mode: z.literal('async'),
  kind: z.enum(['fedbuff', 'fedfix']).default('fedbuff'),
  concurrency: count,
  buffer: count.optional(),
  staleness: stalenessConfigSchema.optional(),
  maxStaleness: z.number().int().nonnegative().optional(),
  interval: positive.optional(),
  server: serverOptimizerConfigSchema.default(defaultServer),
});

/** Peer-to-peer MoNNA / NNA (engine/p2p.ts): momentum and lr default to local's, f to the experiment's Byzantine clients. */
const p2pAlgorithmSchema = z.strictObject({
  name: label,
  mode: z.literal('p2p'),
  momentum: z.number().min(0).lt(1).optional(),
  lr: positive.optional(),
  lrDecay: positive.optional(),
  lrDecayEvery: count.optional(),
  f: z.number().int().nonnegative().optional(),
  evaluate: z.enum(['node0', 'mean']).default('node0'),
});

/** `mode` defaults to 'sync' (filled in before the discriminated union looks at it). */
export const simAlgorithmSchema = z.preprocess(
  (v) => (v !== null && typeof v === 'object' && !Array.isArray(v) && !('mode' in v) ? { ...v, mode: 'sync' } : v),
  z.discriminatedUnion('mode', [syncAlgorithmSchema, asyncAlgorithmSchema, p2pAlgorithmSchema]),
);

export const simExperimentSchema = z.strictObject({
  name: label,
  participation: simParticipationSchema.nullable().optional(),
  speeds: simSpeedsSchema.nullable().optional(),
  byzantine: simByzantineSchema.nullable().optional(),
});

export const simConfigSchema = z.strictObject({
  name: label,
  description: z.string().optional(),
  task: simTaskSchema,
  clients: count,
  participation: simParticipationSchema.optional(),
  speeds: simSpeedsSchema.optional(),
  rounds: count.optional(),
  maxTime: positive.optional(),
  local: simLocalSchema.default({ steps: 5, lr: 0.1, batchSize: 16, momentum: 0 }),
  logEvery: count.default(1),
  averageTail: z.number().min(0).lt(1).default(0),
  target: z.number().finite().optional(),
  stopAtTarget: z.boolean().default(false),
  byzantine: simByzantineSchema.optional(),
  experiments: z.array(simExperimentSchema).min(1).optional(),
  algorithms: z.array(simAlgorithmSchema).min(1),
});

export type SimConfig = z.infer<typeof simConfigSchema>;
export type SimTaskConfig = z.infer<typeof simTaskSchema>;
export type SimParticipationConfig = z.infer<typeof simParticipationSchema>;
export type SimSpeedsConfig = z.infer<typeof simSpeedsSchema>;
export type SimByzantineConfig = z.infer<typeof simByzantineSchema>;
export type SimAlgorithmConfig = z.infer<typeof simAlgorithmSchema>;
export type SimSyncAlgorithmConfig = z.infer<typeof syncAlgorithmSchema>;
export type SimAsyncAlgorithmConfig = z.infer<typeof asyncAlgorithmSchema>;
export type SimP2PAlgorithmConfig = z.infer<typeof p2pAlgorithmSchema>;

/** One experiment with the top-level settings it inherits filled in (null: none). */
export interface ResolvedExperiment {
  name: string;
  participation: SimParticipationConfig | null;
  speeds: SimSpeedsConfig | null;
  byzantine: SimByzantineConfig | null;
}

/** The config's experiments, inheriting top-level participation, speeds and byzantine (one named `default` if none). */
export function resolvedExperiments(cfg: SimConfig): ResolvedExperiment[] {
  const base = { participation: cfg.participation ?? null, speeds: cfg.speeds ?? null, byzantine: cfg.byzantine ?? null };
  if (cfg.experiments === undefined) return [{ name: 'default', ...base }];
  return cfg.experiments.map((e) => ({
    name: e.name,
    participation: e.participation === undefined ? base.participation : e.participation,
    speeds: e.speeds === undefined ? base.speeds : e.speeds,
    byzantine: e.byzantine === undefined ? base.byzantine : e.byzantine,
  }));
}

/**
 * Validates sim.json and returns the config with defaults filled in (JSON-serialisable; parsing it again gives the
 * same config). Throws SimConfigError, one line naming the field, on the first problem; `file` is the name the
 * message starts with.
 */
export function parseSimConfig(json: unknown, file = 'sim.json'): SimConfig {
  const fail = (field: string, problem: string): never => {
    throw new SimConfigError(field, problem, file);
  };
  const parsed = simConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.map(String);
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys;
      fail([...where, keys[0]].join('.'), keys.length > 1 ? `unknown keys ${keys.join(', ')}` : 'unknown key');
    }
    if (issue.code === 'invalid_union' && issue.discriminator !== undefined && issue.errors.length === 0) {
      const options = 'options' in issue && issue.options !== undefined ? issue.options.map(String).join(', ') : null;
      fail(where.join('.'), options === null ? 'missing or not an allowed value' : `missing or not one of ${options}`);
    }
    const message = issue.message.replace(/\s+/g, ' ');
    fail(where.join('.'), /received undefined$/.test(message) ? 'missing (required)' : message.replace(/^Invalid (input|option): /, ''));
  }
  const cfg = parsed.data as SimConfig;
  const N = cfg.clients;
  const experiments = resolvedExperiments(cfg);
  const expField = (i: number | null, key: string): string => (i === null || cfg.experiments?.[i]?.[key as 'name'] === undefined ? key : `experiments.${i}.${key}`);

  const seen = new Set<string>();
  cfg.experiments?.forEach((e, i) => {
    if (seen.has(e.name)) fail(`experiments.${i}.name`, `${JSON.stringify(e.name)} is used twice`);
    seen.add(e.name);
  });
  seen.clear();
  cfg.algorithms.forEach((a, i) => {
    if (seen.has(a.name)) fail(`algorithms.${i}.name`, `${JSON.stringify(a.name)} is used twice`);
    seen.add(a.name);
  });

  const anySync = cfg.algorithms.some((a) => a.mode === 'sync');
  const anyAsync = cfg.algorithms.some((a) => a.mode === 'async');
  const anyP2P = cfg.algorithms.some((a) => a.mode === 'p2p');
  if ((anySync || anyP2P) && cfg.rounds === undefined) fail('rounds', `required when an algorithm has mode ${anySync ? 'sync' : 'p2p'}`);
  if (anyAsync && cfg.maxTime === undefined) fail('maxTime', 'required when an algorithm has mode async (the virtual-time cap)');
  if (cfg.stopAtTarget && cfg.target === undefined) fail('stopAtTarget', 'needs a target');
  if (cfg.averageTail > 0 && !anySync) fail('averageTail', 'only for sync algorithms');
  if (cfg.local.keepMomentum === true) {
    if (anyAsync) fail('local.keepMomentum', 'async algorithms do not keep per-client momentum (engine/async.ts has none); drop it or the async algorithms');
    if (!anySync) fail('local.keepMomentum', 'only for sync algorithms (p2p nodes always keep their own momentum)');
    if (cfg.local.momentum === 0) fail('local.keepMomentum', 'needs local.momentum > 0 (with β = 0 there is no momentum to keep)');
  }

  experiments.forEach((e, i) => {
    const ei = cfg.experiments === undefined ? null : i;
    const p = e.participation;
    if (p !== null) {
      const field = `${expField(ei, 'participation')}.p`;
      if (Array.isArray(p.p) && p.p.length !== N) fail(field, `has ${p.p.length} entries but there are ${N} clients`);
      if (!Array.isArray(p.p) && typeof p.p === 'object') {
        if (p.p.max < p.p.min) fail(`${field}.max`, `${p.p.max} is below p.min ${p.p.min}`);
        if (p.p.by === 'data' && cfg.task.kind !== 'quadratic') fail(`${field}.by`, "'data' needs task kind 'quadratic' (p_n follows its z_n)");
      }
      if (anyAsync) fail(expField(ei, 'participation'), 'async algorithms do not model availability; drop participation or the async algorithms');
      if (anyP2P) fail(expField(ei, 'participation'), 'p2p algorithms have every node in every round; drop participation or the p2p algorithms');
    }
    const s = e.speeds;
    if (s !== null) {
      if (s.kind === 'uniform' && s.max < s.min) fail(`${expField(ei, 'speeds')}.max`, `${s.max} is below min ${s.min}`);
      if (s.kind === 'log-normal' && s.jitter !== undefined && s.jitter[1] < s.jitter[0]) fail(`${expField(ei, 'speeds')}.jitter`, 'high is below low');
      // An async run needs time to pass: a job that can take 0 would redispatch at the same instant for ever.
      const zero = (s.kind === 'constant' && s.value === 0) || (s.kind === 'half-normal' && s.sd === 0 && s.min === 0) || (s.kind === 'uniform' && s.max === 0);
      if (anyAsync && zero) fail(expField(ei, 'speeds'), 'jobs of duration 0 keep the virtual clock still; async algorithms need durations > 0');
      if (anyP2P) fail(expField(ei, 'speeds'), 'p2p rounds all take 1 (their virtual time is the round count); drop speeds or the p2p algorithms');
    }
    const b = e.byzantine;
    if (b !== null && b.z !== undefined && b.attack !== 'alie' && b.attack !== 'foe') fail(`${expField(ei, 'byzantine')}.z`, `only for attack 'alie' or 'foe', got '${b.attack}'`);
    if (b !== null && b.clients > 0) {
      if (anyAsync) fail(`${expField(ei, 'byzantine')}`, 'Byzantine clients are simulated for sync and p2p algorithms only');
      if (anyP2P) {
        if (!(P2P_ATTACKS as readonly string[]).includes(b.attack)) fail(`${expField(ei, 'byzantine')}.attack`, `'${b.attack}' is not simulated for p2p algorithms (they take ${P2P_ATTACKS.join(', ')})`);
        if (b.attack === 'alie' && b.z === undefined) {
          // p2p's default z is the original ALIE constant (shared/attacks.ts alieZ), defined only for s ≥ 1.
          const n = N + b.clients;
          const s = Math.floor(n / 2 + 1) - b.clients;
          if (s < 1) fail(`${expField(ei, 'byzantine')}.z`, `required for p2p algorithms here: the default z = Φ⁻¹((n − s)/n) needs s = ⌊n/2 + 1⌋ − f ≥ 1, but n = ${n}, f = ${b.clients} give s = ${s}`);
        }
      }
      cfg.algorithms.forEach((a, k) => {
        if (a.mode === 'sync' && a.weighting !== 'uniform') fail(`algorithms.${k}.weighting`, `Byzantine clients (${expField(ei, 'byzantine')}) need 'uniform', got '${a.weighting}'`);
      });
    }
  });
  const maxByzantine = Math.max(0, ...experiments.map((e) => e.byzantine?.clients ?? 0));

  cfg.algorithms.forEach((a, k) => {
    const at = `algorithms.${k}`;
    if (a.mode === 'sync') {
      if (a.clientsPerRound !== undefined && a.clientsPerRound > N) fail(`${at}.clientsPerRound`, `${a.clientsPerRound} exceeds the ${N} clients`);
      if (a.fedauCutoff !== null && a.weighting !== 'fedau') fail(`${at}.fedauCutoff`, "only for weighting 'fedau'");
      if (a.weighting === 'known') {
        // 1/p is the oracle weight only when every available client takes part; sampling lowers the real rate.
        if (a.clientsPerRound !== undefined) fail(`${at}.clientsPerRound`, "not with weighting 'known' (the rates it knows are availability, not the chance of being sampled)");
        experiments.forEach((e, i) => {
          if (e.participation === null) fail(`${at}.weighting`, `'known' needs participation (the true rates), experiment ${JSON.stringify(e.name)} has none${cfg.experiments === undefined ? '' : ` (experiments.${i})`}`);
        });
      }
      const { rule, mix, f } = a.robust;
      const perStep = (a.clientsPerRound ?? N) + maxByzantine;
      const need = minInputs(rule, mix, f);
      if (perStep < need) fail(`${at}.robust.f`, `${mix === 'nnm' ? 'nnm + ' : ''}${rule} with f = ${f} needs at least ${need} updates per step, but a step aggregates at most ${perStep}`);
    } else if (a.mode === 'p2p') {
      if (a.lrDecayEvery !== undefined && a.lrDecay === undefined) fail(`${at}.lrDecayEvery`, 'only with lrDecay');
      // runP2P's own rule: every honest node receives n vectors (the Byzantine ones only when they attack) and NNA
      // averages the n − f nearest, so n > 2f.
      experiments.forEach((e) => {
        const byzantine = e.byzantine?.clients ?? 0;
        const received = N + (e.byzantine === null || e.byzantine.attack === 'none' ? 0 : byzantine);
        const f = a.f ?? byzantine;
        if (!(received > 2 * f)) {
          fail(`${at}.f`, `NNA with f = ${f}${a.f === undefined ? " (the experiment's Byzantine clients)" : ''} needs more than ${2 * f} received vectors, but experiment ${JSON.stringify(e.name)} gives ${received} (${N} honest + ${received - N} Byzantine)`);
        }
      });
    } else {
      if (a.concurrency > N) fail(`${at}.concurrency`, `${a.concurrency} exceeds the ${N} clients`);
      if (a.kind === 'fedbuff') {
        if (a.buffer === undefined) fail(`${at}.buffer`, "required for kind 'fedbuff' (K; 1 = FedAsync)");
        if (a.interval !== undefined) fail(`${at}.interval`, "only for kind 'fedfix'");
      } else {
        if (a.interval === undefined) fail(`${at}.interval`, "required for kind 'fedfix' (Δt)");
        for (const key of ['buffer', 'staleness', 'maxStaleness'] as const) if (a[key] !== undefined) fail(`${at}.${key}`, "only for kind 'fedbuff'");
      }
    }
  });
  return cfg;
}
