// The `aggregation` section of train.json (and of simulator configs), validated once at the boundary and turned
// into the PipelineSpec the server pipeline takes.
import { z } from 'zod';
import { minInputs, type RuleName } from '../aggregation/robust.js';
import type { PipelineSpec } from '../aggregation/pipeline.js';

const nonNegative = z.number().finite().nonnegative();

export const robustConfigSchema = z
  .object({
    mix: z.enum(['none', 'nnm']).default('none'),
    rule: z.enum(['mean', 'median', 'trimmed-mean', 'krum', 'multi-krum', 'geomed', 'cclip']).default('mean'),
    f: z.number().int().nonnegative().default(0),
    m: z.number().int().positive().optional(),
    tau: z.number().nonnegative().optional(),
    iters: z.number().int().nonnegative().optional(),
    tol: nonNegative.optional(),
    maxIter: z.number().int().nonnegative().optional(),
  })
  .strict();

export const serverOptimizerConfigSchema = z.discriminatedUnion('optimizer', [
  z.object({ optimizer: z.literal('sgd'), lr: nonNegative.default(1), momentum: z.number().min(0).lt(1).default(0) }).strict(),
  z
    .object({
      optimizer: z.literal('adam'),
      lr: nonNegative.default(0.01),
      beta1: z.number().min(0).lt(1).default(0.9),
      beta2: z.number().min(0).lt(1).default(0.999),
      eps: z.number().positive().finite().default(1e-8),
    })
    .strict(),
]);

export const aggregationConfigSchema = z
  .object({
    weighting: z.enum(['samples', 'uniform', 'fedau']).default('samples'),
    /** FedAU's interval cutoff K; null = none (K → ∞). */
    fedauCutoff: z.number().int().positive().nullable().default(null),
    robust: robustConfigSchema.default({ mix: 'none', rule: 'mean', f: 0 }),
    server: serverOptimizerConfigSchema.default({ optimizer: 'sgd', lr: 1, momentum: 0 }),
  })
  .strict();

export type AggregationConfig = z.infer<typeof aggregationConfigSchema>;

/**
 * Validates an aggregation section and returns the pipeline spec. `numClients` is the population size (needed by
 * FedAU); `perStep` is how many updates one server step aggregates (clients per round, or the FedBuff buffer), so
 * an f the rule cannot tolerate is refused before any work starts. Errors are one line naming the field.
 */
export function parseAggregationConfig(input: unknown, context: { numClients: number; perStep?: number }): PipelineSpec {
  const parsed = aggregationConfigSchema.safeParse(input ?? {});
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = ['aggregation', ...issue.path.map(String)].join('.');
    throw new RangeError(`${where}: ${issue.message}`);
  }
  const cfg = parsed.data;
  const { rule, mix, f } = cfg.robust;
  if (context.perStep !== undefined) {
    const need = minInputs(rule as RuleName, mix, f);
    if (context.perStep < need) {
      throw new RangeError(
        `aggregation.robust: ${mix === 'nnm' ? 'nnm + ' : ''}${rule} with f = ${f} needs at least ${need} updates per step, but a step aggregates ${context.perStep}`,
      );
    }
  }
  return {
    weighting: cfg.weighting,
    fedauCutoff: cfg.fedauCutoff,
    numClients: context.numClients,
    robust: { ...cfg.robust },
    server: cfg.server,
  };
}
