import { ModelError } from './errors.js';
import { describeInput, type EmbeddingInputSpec, type Manifest } from './manifest.js';

/**
 * The built-in text featurizer (`input: {kind: "text", dim}`): feature hashing over word unigrams and bigrams of the
 * item's prompt and response. It is pure arithmetic on the string (no tables, no locale, no floating-point
 * reductions whose order could vary), so every worker computes bit-identical features.
 *
 *  1. Each field is NFC-normalised and lower-cased (`toLowerCase` is locale-independent), then split into tokens:
 *     maximal runs of Unicode letters, digits and combining marks (marks keep "é" in one token even when it arrives
 *     decomposed).
 *  2. Keys: `p1:<tok>` and `p2:<tok> <next>` for the prompt, `r1:` / `r2:` for the response, so the same word in
 *     the prompt and in the response lands in different features.
 *  3. h = FNV-1a 32-bit of the key's UTF-8 bytes; bucket = h mod dim; sign = −1 when bit 31 of h is set, else +1
 *     (signed hashing makes collisions cancel on average instead of piling up). Each occurrence adds its sign.
 *  4. The vector is L2-normalised; an item without tokens stays all zero.
 */

export interface TextFields {
  prompt?: string | undefined;
  response?: string | undefined;
}

/**
 * An item as a model sees it: precomputed `features` for `features:DIM` models, text for `text:DIM` models, the
 * embedding (as `features`) for `embedding:DIM` models.
 */
export interface ModelItem extends TextFields {
  features?: Float32Array | readonly number[] | undefined;
}

export const FNV_OFFSET = 0x811c9dc5;
export const FNV_PRIME = 0x01000193;

/** Continues an FNV-1a 32-bit hash over the UTF-8 encoding of `s` (lone surrogates encode as U+FFFD, as TextEncoder does). */
export function fnvUpdate(hash: number, s: string): number {
  let h = hash;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, FNV_PRIME);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
      } else {
        c = 0xfffd;
      }
    } else if (c >= 0xd800 && c <= 0xdfff) {
      c = 0xfffd;
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), FNV_PRIME);
    } else if (c < 0x10000) {
      h = Math.imul(h ^ (0xe0 | (c >> 12)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
    } else {
      h = Math.imul(h ^ (0xf0 | (c >> 18)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | ((c >> 12) & 0x3f)), FNV_PRIME);
      h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), FNV_PRIME);
    }
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), FNV_PRIME);
  }
  return h;
}

/** FNV-1a 32-bit of the UTF-8 bytes of `s`, as an unsigned integer. */
export function fnv1a32(s: string): number {
  return fnvUpdate(FNV_OFFSET, s) >>> 0;
}

const TOKEN = /[\p{L}\p{N}\p{M}]+/gu;

/** The featurizer's tokens of one field. */
export function tokenize(text: string): string[] {
  return text.normalize('NFC').toLowerCase().match(TOKEN) ?? [];
}

function addFeature(out: Float32Array, offset: number, dim: number, h: number): void {
  const u = h >>> 0;
  out[offset + (u % dim)] += u >>> 31 === 1 ? -1 : 1;
}

function addField(out: Float32Array, offset: number, dim: number, text: string, unigram: string, bigram: string): void {
  const tokens = tokenize(text);
  const uni = fnvUpdate(FNV_OFFSET, unigram);
  const bi = fnvUpdate(FNV_OFFSET, bigram);
  for (let i = 0; i < tokens.length; i++) {
    addFeature(out, offset, dim, fnvUpdate(uni, tokens[i]));
    if (i + 1 < tokens.length) addFeature(out, offset, dim, fnvUpdate(fnvUpdate(fnvUpdate(bi, tokens[i]), ' '), tokens[i + 1]));
  }
}

/** Writes the features of `fields` into `out[offset, offset + dim)`, which must be zero on entry. */
export function featurizeTextInto(fields: TextFields, dim: number, out: Float32Array, offset = 0): void {
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`featurizer dim must be a positive integer, got ${String(dim)}`);
  addField(out, offset, dim, fields.prompt ?? '', 'p1:', 'p2:');
  addField(out, offset, dim, fields.response ?? '', 'r1:', 'r2:');
  let sumSq = 0;
  for (let i = offset; i < offset + dim; i++) sumSq += out[i] * out[i];
  if (sumSq === 0) return;
  const norm = Math.sqrt(sumSq);
  for (let i = offset; i < offset + dim; i++) out[i] = out[i] / norm;
}

/** The hashing featurizer's vector for one item's text: `dim` entries, unit L2 norm (or all zero without tokens). */
export function featurizeText(fields: TextFields, dim: number): Float32Array {
  const out = new Float32Array(dim);
  featurizeTextInto(fields, dim, out, 0);
  return out;
}

/**
 * Index (relative to `start`) of the first entry in `a[start, end)` that is not a finite number, or -1. Fast path:
 * a float64 sum of the entries is finite exactly when every entry is (float32 values cannot overflow it), so the
 * common all-finite case costs one addition per entry.
 */
function firstNonFinite(a: Float32Array | readonly unknown[], start: number, end: number): number {
  if (a instanceof Float32Array) {
    let sum = 0;
    for (let i = start; i < end; i++) sum += a[i];
    if (Number.isFinite(sum)) return -1;
  }
  for (let i = start; i < end; i++) {
    const v = a[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) return i - start;
  }
  return -1;
}

/** Whether the model takes a vector per item: precomputed features, or an embedding the worker computed. */
function takesVectors(manifest: Manifest): boolean {
  return manifest.input.kind !== 'text';
}

/**
 * An embedding model's input exists only once a worker has embedded the text through its inference server; the
 * featurizer here cannot compute it (docs/scorers.md, "Embedding heads").
 */
function cannotEmbed(input: EmbeddingInputSpec): ModelError {
  return new ModelError(
    `this model reads ${describeInput(input)}: a worker whose inference server serves ${input.model} embeds the text; the built-in featurizer cannot`,
  );
}

/**
 * Checks a packed `rows × cols` features matrix (rows = items) against a features model (or an embedding model's
 * embedded rows), with the same messages as featurizeBatch gives for the same items one by one.
 */
export function checkFeatureMatrix(x: Float32Array, rows: number, cols: number, manifest: Manifest): void {
  const { input } = manifest;
  if (!takesVectors(manifest)) {
    throw new ModelError(`item 0: this model takes text (${describeInput(input)}: prompt and response); the item has features`);
  }
  if (x.length !== rows * cols) throw new RangeError(`features matrix has ${x.length} numbers, not ${rows} × ${cols}`);
  if (rows > 0 && cols !== input.dim) throw new ModelError(`item 0: features has ${cols} entries; the model takes ${input.dim}`);
  if (firstNonFinite(x, 0, x.length) < 0) return;
  for (let r = 0; r < rows; r++) {
    const bad = firstNonFinite(x, r * cols, (r + 1) * cols);
    if (bad >= 0) throw new ModelError(`item ${r}: features[${bad}] is ${String(x[r * cols + bad])}, not a finite number`);
  }
}

/**
 * Checks that `item` has the form the model takes, without computing anything. Throws a one-line ModelError that
 * callers prefix with the item's position. An embedding model takes its embedded rows as features; text given to it
 * here is refused (only a worker with the embedding server can turn it into the model's input).
 */
export function checkItem(item: ModelItem, manifest: Manifest): void {
  const { input } = manifest;
  const hasText = item.prompt !== undefined || item.response !== undefined;
  if (input.kind === 'embedding' && item.features === undefined) throw cannotEmbed(input);
  if (takesVectors(manifest)) {
    const f = item.features;
    if (f === undefined) {
      throw new ModelError(`this model takes features (${describeInput(input)}); the item has ${hasText ? 'text' : 'no features'}`);
    }
    if (hasText) throw new ModelError('has both features and text; send one form');
    if (f.length !== input.dim) {
      throw new ModelError(`features has ${f.length} entries; the model takes ${input.dim}`);
    }
    const bad = firstNonFinite(f, 0, f.length);
    if (bad >= 0) throw new ModelError(`features[${bad}] is ${String(f[bad])}, not a finite number`);
    return;
  }
  if (item.features !== undefined) {
    throw new ModelError(`this model takes text (${describeInput(input)}: prompt and response); the item has features`);
  }
  if (typeof item.prompt !== 'string') throw new ModelError('prompt must be a string');
  if (typeof item.response !== 'string') throw new ModelError('response must be a string');
}

/** The model input for one item: exactly `manifest.input.dim` numbers. */
export function featurize(item: ModelItem, manifest: Manifest): Float32Array {
  const out = new Float32Array(manifest.input.dim);
  featurizeInto(item, manifest, out, 0);
  return out;
}

function featurizeInto(item: ModelItem, manifest: Manifest, out: Float32Array, offset: number): void {
  checkItem(item, manifest);
  if (takesVectors(manifest)) {
    out.set(item.features as Float32Array | readonly number[], offset);
  } else {
    featurizeTextInto(item, manifest.input.dim, out, offset);
  }
}

/** The model input for a batch: a row-major `items.length × dim` matrix. Errors name the item's index. */
export function featurizeBatch(items: readonly ModelItem[], manifest: Manifest): Float32Array {
  const dim = manifest.input.dim;
  const out = new Float32Array(items.length * dim);
  for (let i = 0; i < items.length; i++) {
    try {
      featurizeInto(items[i], manifest, out, i * dim);
    } catch (err) {
      throw new ModelError(`item ${i}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  return out;
}
