// A worker's own datasets (`fedpool worker --data NAME=PATH`): JSONL files read on first use, validated line by line,
// cached by name. The data never leaves the worker; training leases name it (`data: {source: 'worker', name}`).
import { readFile } from 'node:fs/promises';
import { featurizeBatch, type Manifest } from '../../shared/model/index.js';
import { ModelError } from '../../shared/model/errors.js';
import type { ClassifyData, PairsData, TextPair, LocalTrainData } from './local-train.js';

/**
 * The three line forms (a file holds one form throughout, set by its first line):
 * - `features`: `{"features": [numbers], "label": int}` — classification on precomputed features;
 * - `text`:     `{"text": "…", "label": int}` or `{"prompt": "…", "response": "…", "label": int}` — classification
 *               through the model's text featurizer (`text` reads as `{prompt: "", response: text}`);
 * - `pairs`:    `{"prompt": "…", "chosen": "…", "rejected": "…"}` — reward-model preference pairs (prompt optional, "").
 */
export type Dataset =
  | { kind: 'features'; name: string; path: string; dim: number; x: Float32Array; labels: Int32Array }
  | { kind: 'text'; name: string; path: string; items: { prompt: string; response: string }[]; labels: Int32Array }
  | { kind: 'pairs'; name: string; path: string; pairs: Required<TextPair>[] };

/** A bad dataset file or one the model cannot take: retrying on another worker cannot help. */
export class DatasetError extends Error {
  override name = 'DatasetError';
  readonly retryable = false;
}

/** Largest label id accepted (matches shared/model MAX_CLASSES). */
const MAX_LABEL = 1 << 16;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

type Line =
  | { kind: 'features'; features: number[]; label: number }
  | { kind: 'text'; prompt: string; response: string; label: number }
  | { kind: 'pairs'; prompt: string; chosen: string; rejected: string };

function label(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v >= MAX_LABEL) throw new Error(`"label" must be a class id (an integer in [0, ${MAX_LABEL})), got ${JSON.stringify(v)}`);
  return v;
}

function str(o: Record<string, unknown>, key: string, optional = false): string {
  const v = o[key];
  if (v === undefined && optional) return '';
  if (typeof v !== 'string') throw new Error(`"${key}" must be a string`);
  return v;
}

/** One parsed line; throws a plain Error whose message the caller prefixes with file:line. */
export function parseLine(text: string): Line {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new Error('not valid JSON');
  }
  if (!isRecord(v)) throw new Error('expected a JSON object');
  if ('chosen' in v || 'rejected' in v) {
    return { kind: 'pairs', prompt: str(v, 'prompt', true), chosen: str(v, 'chosen'), rejected: str(v, 'rejected') };
  }
  if ('features' in v) {
    const f = v['features'];
    if (!Array.isArray(f) || f.length === 0) throw new Error('"features" must be a non-empty array of numbers');
    for (let i = 0; i < f.length; i++) {
      if (typeof f[i] !== 'number' || !Number.isFinite(f[i])) throw new Error(`"features"[${i}] is ${JSON.stringify(f[i])}, not a finite number`);
    }
    return { kind: 'features', features: f as number[], label: label(v['label']) };
  }
  if ('text' in v) return { kind: 'text', prompt: '', response: str(v, 'text'), label: label(v['label']) };
  if ('response' in v) return { kind: 'text', prompt: str(v, 'prompt', true), response: str(v, 'response'), label: label(v['label']) };
  throw new Error('expected {"features","label"}, {"text","label"}, {"prompt","response","label"} or {"prompt","chosen","rejected"}');
}

/** Parses a whole JSONL file's text; every line is checked, the first bad one named as `path:line: why`. */
export function parseDataset(name: string, path: string, text: string): Dataset {
  // Errors name the dataset (a worker's --data NAME) when there is one, then file:line.
  const prefix = name === '' ? '' : `dataset ${name}: `;
  const lines: Line[] = [];
  const raw = text.split('\n');
  for (let i = 0; i < raw.length; i++) {
    const t = raw[i]!.trim();
    if (t === '') continue;
    let line: Line;
    try {
      line = parseLine(t);
    } catch (e) {
      throw new DatasetError(`${prefix}${path}:${i + 1}: ${(e as Error).message}`);
    }
    const first = lines[0];
    if (first !== undefined) {
      if (line.kind !== first.kind) throw new DatasetError(`${prefix}${path}:${i + 1}: a ${line.kind} line in a file of ${first.kind} lines`);
      if (line.kind === 'features' && first.kind === 'features' && line.features.length !== first.features.length) {
        throw new DatasetError(`${prefix}${path}:${i + 1}: ${line.features.length} features; line 1 has ${first.features.length}`);
      }
    }
    lines.push(line);
  }
  const first = lines[0];
  if (first === undefined) throw new DatasetError(`${prefix}${path}: no examples (empty file)`);
  if (first.kind === 'features') {
    const dim = first.features.length;
    const x = new Float32Array(lines.length * dim);
    const labels = new Int32Array(lines.length);
    lines.forEach((l, i) => {
      if (l.kind !== 'features') return;
      x.set(l.features, i * dim);
      labels[i] = l.label;
    });
    return { kind: 'features', name, path, dim, x, labels };
  }
  if (first.kind === 'text') {
    const items = lines.map((l) => (l.kind === 'text' ? { prompt: l.prompt, response: l.response } : { prompt: '', response: '' }));
    return { kind: 'text', name, path, items, labels: Int32Array.from(lines, (l) => (l.kind === 'text' ? l.label : 0)) };
  }
  return { kind: 'pairs', name, path, pairs: lines.flatMap((l) => (l.kind === 'pairs' ? [{ prompt: l.prompt, chosen: l.chosen, rejected: l.rejected }] : [])) };
}

/** Number of examples (rows or pairs). */
export function datasetSize(d: Dataset): number {
  return d.kind === 'pairs' ? d.pairs.length : d.labels.length;
}

/** Featurizes text preference pairs with the manifest's featurizer into `pairs` training data. */
export function featurizePairs(pairs: readonly TextPair[], manifest: Manifest): PairsData {
  return {
    kind: 'pairs',
    chosen: featurizeBatch(pairs.map((p) => ({ prompt: p.prompt, response: p.chosen })), manifest),
    rejected: featurizeBatch(pairs.map((p) => ({ prompt: p.prompt, response: p.rejected })), manifest),
  };
}

/** How messages name a dataset: `dataset NAME` (a worker's --data), or its path (a central file). */
export function datasetWhere(d: Dataset): string {
  return d.name === '' ? d.path : `dataset ${d.name}`;
}

/** The dataset's examples must fit the model's output: labelled rows for a classifier, preference pairs for a reward model. */
export function checkDatasetOutput(d: Dataset, manifest: Manifest): void {
  const where = datasetWhere(d);
  if (d.kind !== 'pairs' && manifest.output.kind !== 'classes') throw new DatasetError(`${where} holds labelled examples; this model outputs a reward (train it on preference pairs)`);
  if (d.kind === 'pairs' && manifest.output.kind !== 'reward') throw new DatasetError(`${where} holds preference pairs; this model is a classifier`);
}

/**
 * The dataset as training data for a features or text model. Mismatches with the model are DatasetErrors (not
 * retryable). A model over embeddings needs the worker's embedding server: ./embed-data.ts.
 */
export function toTrainData(d: Dataset, manifest: Manifest): LocalTrainData {
  const where = datasetWhere(d);
  if (manifest.input.kind === 'embedding') {
    throw new DatasetError(`${where}: this model reads embeddings of ${manifest.input.model}, which only a worker fronting that embedding server computes`);
  }
  checkDatasetOutput(d, manifest);
  try {
    if (d.kind === 'features') {
      if (manifest.input.kind !== 'features') throw new DatasetError(`${where} holds features; this model takes text`);
      if (manifest.input.dim !== d.dim) throw new DatasetError(`${where} has ${d.dim} features per line; the model takes ${manifest.input.dim}`);
      return { kind: 'classify', x: d.x, labels: d.labels } satisfies ClassifyData;
    }
    if (d.kind === 'text') {
      if (manifest.input.kind !== 'text') throw new DatasetError(`${where} holds text; this model takes features`);
      return { kind: 'classify', x: featurizeBatch(d.items, manifest), labels: d.labels } satisfies ClassifyData;
    }
    if (manifest.input.kind !== 'text') throw new DatasetError(`${where} holds text pairs; this model takes features`);
    return featurizePairs(d.pairs, manifest);
  } catch (e) {
    if (e instanceof ModelError) throw new DatasetError(`${where}: ${e.message}`);
    throw e;
  }
}

/** The worker's datasets by name: each file read and parsed once, on first use (a failed load is retried next time). */
export class Datasets {
  private readonly loaded = new Map<string, Promise<Dataset>>();

  constructor(
    private readonly paths: ReadonlyMap<string, string>,
    private readonly read: (path: string) => Promise<string> = (p) => readFile(p, 'utf8'),
  ) {}

  has(name: string): boolean {
    return this.paths.has(name);
  }

  get names(): string[] {
    return [...this.paths.keys()];
  }

  /** The named dataset; rejects with a DatasetError for an unknown name or a bad file. */
  get(name: string): Promise<Dataset> {
    const cached = this.loaded.get(name);
    if (cached !== undefined) return cached;
    const path = this.paths.get(name);
    if (path === undefined) return Promise.reject(new DatasetError(`no dataset ${name} on this worker`));
    const loading = this.read(path).then(
      (text) => parseDataset(name, path, text),
      (e: unknown) => {
        throw new DatasetError(`dataset ${name}: cannot read ${path}: ${e instanceof Error ? e.message : String(e)}`);
      },
    );
    this.loaded.set(name, loading);
    // A file that could not be read may be fixed; a parse error too. Either way, read it again next time.
    loading.catch(() => {
      if (this.loaded.get(name) === loading) this.loaded.delete(name);
    });
    return loading;
  }
}
