import * as z from 'zod';
import { ModelError } from './errors.js';

/**
 * `fedpool.json`: the manifest that travels beside a TF.js LayersModel. It says how to turn an item into the model's
 * input (precomputed features, the built-in text featurizer, or the embedding an inference server computes — see
 * docs/scorers.md, "Embedding heads") and what the output means, so every worker scores an item the same way without
 * anything pre-installed.
 */

/** Largest input width accepted; a bound keeps a hostile manifest from asking a worker for absurd allocations. */
export const MAX_INPUT_DIM = 1 << 20;
export const MAX_CLASSES = 1 << 16;
export const MAX_HIDDEN_UNITS = 1 << 16;
export const MAX_HIDDEN_LAYERS = 64;

/** Longest embedding model name; the protocol's bound on names (a worker's hello announces the model it serves). */
export const MAX_EMBEDDING_MODEL_LENGTH = 256;

const dim = z.int().min(1).max(MAX_INPUT_DIM);

export const inputSpecSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('features'), dim }),
  z.strictObject({ kind: z.literal('text'), dim }),
  /**
   * The embedding of the item's text by the embedding model `model`, computed by a worker whose inference server
   * serves that model: the head was trained in that model's space, and another model's embeddings mean nothing to it.
   */
  z.strictObject({ kind: z.literal('embedding'), dim, model: z.string().min(1).max(MAX_EMBEDDING_MODEL_LENGTH) }),
]);

export const outputSpecSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('reward') }),
  z.strictObject({ kind: z.literal('classes'), classes: z.int().min(2).max(MAX_CLASSES) }),
]);

export const manifestSchema = z
  .strictObject({
    format: z.literal('fedpool-model'),
    version: z.literal(1),
    kind: z.enum(['reward', 'classifier']),
    input: inputSpecSchema,
    output: outputSpecSchema,
    hidden: z.array(z.int().min(1).max(MAX_HIDDEN_UNITS)).max(MAX_HIDDEN_LAYERS),
    seed: z.int().min(0),
  })
  .superRefine((m, ctx) => {
    // `kind` is redundant with `output.kind`; it is kept for readers of the file, so it must agree.
    const expected = m.output.kind === 'reward' ? 'reward' : 'classifier';
    if (m.kind !== expected) {
      ctx.addIssue({ code: 'custom', path: ['kind'], message: `is "${m.kind}" but output.kind "${m.output.kind}" needs "${expected}"` });
    }
  });

export type InputSpec = z.output<typeof inputSpecSchema>;
export type EmbeddingInputSpec = Extract<InputSpec, { kind: 'embedding' }>;
export type OutputSpec = z.output<typeof outputSpecSchema>;
export type Manifest = z.output<typeof manifestSchema>;

/** Validates a parsed `fedpool.json`. Errors are one line: `<where>: <field>: <problem>`. */
export function parseManifest(json: unknown, where: string): Manifest {
  const parsed = manifestSchema.safeParse(json);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const field = issue.path.map(String).join('.');
  const message = issue.message.replace(/\s+/g, ' ');
  throw new ModelError(field === '' ? `${where}: ${message}` : `${where}: ${field}: ${message}`);
}

/** Number of output units the model must have for this manifest. */
export function outputUnits(output: OutputSpec): number {
  return output.kind === 'reward' ? 1 : output.classes;
}

/**
 * Values scoring gives per item: 1 for a reward model (its output) and for a binary classifier (the probability of
 * class 1, the "positive"/"good" class); C, the class probabilities, for a classifier of C ≥ 3 classes.
 */
export function scoreWidth(output: OutputSpec): number {
  return output.kind === 'classes' && output.classes > 2 ? output.classes : 1;
}

/**
 * `text:256`, `features:8`, `embedding:384 of NAME`, `reward`, `classes:3`: the spellings `fedpool model init` accepts
 * (an embedding input's model is its `--embedding-model`).
 */
export function describeInput(input: InputSpec): string {
  return input.kind === 'embedding' ? `embedding:${input.dim} of ${input.model}` : `${input.kind}:${input.dim}`;
}

export function describeOutput(output: OutputSpec): string {
  return output.kind === 'reward' ? 'reward' : `classes:${output.classes}`;
}

/** Parses and validates fedpool.json bytes. */
export function manifestFromBytes(bytes: Uint8Array, where = 'fedpool.json'): Manifest {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(bytes)) as unknown;
  } catch (err) {
    throw new ModelError(`${where}: not valid JSON (${err instanceof Error ? err.message.replace(/\s+/g, ' ') : String(err)})`);
  }
  return parseManifest(json, where);
}
