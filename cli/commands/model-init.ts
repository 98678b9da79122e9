// `fedpool model init`: writes a fresh MLP (TF.js LayersModel) and its fedpool.json manifest into a new directory.
import { UserError } from '../errors.js';
import { describeInput, describeOutput, parseManifest, type InputSpec, type Manifest, type OutputSpec } from '../../shared/model/manifest.js';

export interface ModelInitOptions {
  out?: unknown;
  input?: unknown;
  /** `--embedding-model NAME`: required with `--input embedding:DIM`, refused with any other input. */
  embeddingModel?: unknown;
  output?: unknown;
  hidden?: unknown;
  seed?: unknown;
}

const POSITIVE = /^[1-9]\d*$/;

/**
 * `--input features:DIM | text:DIM | embedding:DIM`, with `--embedding-model NAME` for (and only for) embedding input:
 * the embedding model whose vectors the head reads (docs/scorers.md, "Embedding heads").
 */
export function parseInputSpec(value: unknown, embeddingModel?: unknown): InputSpec {
  const m = typeof value === 'string' ? /^(features|text|embedding):(\d+)$/.exec(value.trim()) : null;
  if (m === null || !POSITIVE.test(m[2])) throw new UserError(`fedpool model init: --input: expected features:DIM, text:DIM or embedding:DIM (DIM a positive integer), got ${JSON.stringify(value)}`);
  const kind = m[1] as InputSpec['kind'];
  const dim = Number(m[2]);
  if (kind !== 'embedding') {
    if (embeddingModel !== undefined) throw new UserError(`fedpool model init: --embedding-model applies to --input embedding:DIM only (this input is ${kind}:${dim})`);
    return { kind, dim };
  }
  const model = typeof embeddingModel === 'string' ? embeddingModel.trim() : '';
  if (model === '') throw new UserError('fedpool model init: --input embedding:DIM needs --embedding-model NAME (the embedding model whose vectors the head reads)');
  return { kind, dim, model };
}

export function parseOutputSpec(value: unknown): OutputSpec {
  const v = typeof value === 'string' ? value.trim() : '';
  if (v === 'reward') return { kind: 'reward' };
  const m = /^classes:(\d+)$/.exec(v);
  if (m === null || !POSITIVE.test(m[1]) || Number(m[1]) < 2) {
    throw new UserError(`fedpool model init: --output: expected reward or classes:C (C an integer ≥ 2), got ${JSON.stringify(value)}`);
  }
  return { kind: 'classes', classes: Number(m[1]) };
}

/** `64,32` → [64, 32]; an empty string (or `none`) → no hidden layer, a linear model. */
export function parseHidden(value: unknown): number[] {
  const v = typeof value === 'string' ? value.trim() : Array.isArray(value) ? value.join(',') : String(value ?? '');
  if (v === '' || v === 'none') return [];
  const parts = v.split(',').map((s) => s.trim());
  if (!parts.every((p) => POSITIVE.test(p))) throw new UserError(`fedpool model init: --hidden: expected comma-separated positive integers such as 64,32, got ${JSON.stringify(value)}`);
  return parts.map(Number);
}

function parseSeed(value: unknown): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d+$/.test(value.trim()) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 0) throw new UserError(`fedpool model init: --seed: expected a non-negative integer, got ${JSON.stringify(value)}`);
  return n;
}

export async function run(options: ModelInitOptions): Promise<void> {
  const out = options.out;
  if (typeof out !== 'string' || out === '') throw new UserError("fedpool model init: --out: expected a directory");
  const input = parseInputSpec(options.input, options.embeddingModel);
  const output = parseOutputSpec(options.output);
  let manifest: Manifest;
  try {
    manifest = parseManifest(
      {
        format: 'fedpool-model',
        version: 1,
        kind: output.kind === 'reward' ? 'reward' : 'classifier',
        input,
        output,
        hidden: parseHidden(options.hidden ?? '64,32'),
        seed: parseSeed(options.seed ?? 0),
      },
      'fedpool model init',
    );
  } catch (err) {
    if (err instanceof UserError) throw err;
    throw new UserError(err instanceof Error ? err.message : String(err)); // a size over the manifest's limits
  }

  // TF.js loads only now, after the flags are known to be good.
  const [{ selectBackend }, tfModel, { writeBundleDir }] = await Promise.all([
    import('../../client/backends.js'),
    import('../../shared/model/tf-model.js'),
    import('../../client/scoring/bundle-fs.js'),
  ]);
  await selectBackend('cpu'); // initialisation is seeded JS arithmetic: every backend writes the same weights
  const model = tfModel.buildModel(manifest);
  try {
    const files = await tfModel.saveToFiles(model, manifest);
    try {
      await writeBundleDir(out, files);
    } catch (err) {
      const code = (err as { code?: unknown } | null)?.code;
      if (err instanceof Error && (err.name === 'BundleError' || typeof code === 'string')) throw new UserError(`fedpool model init: --out ${err.message}`);
      throw err;
    }
    process.stdout.write(
      `fedpool model written to ${out} (${model.countParams()} parameters, input ${describeInput(input)}, output ${describeOutput(output)})\n`,
    );
  } finally {
    model.dispose();
  }
}
