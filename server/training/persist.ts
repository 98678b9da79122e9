// Binary packing of training state for the store (issue 4): 1e6-parameter weights and central data columns are
// raw little-endian arrays, not JSON text.
//
// Layout (both formats):
//   magic        4 bytes, 'FPD1' (central data) or 'FPS1' (state)
//   headerLength u32 LE, bytes of the UTF-8 JSON header
//   header       UTF-8 JSON, then zero bytes up to a multiple of 4 (so every array below is 4-byte aligned)
//   arrays       raw little-endian float32 / int32 arrays, back to back; their element counts are in the header
//                (a state's float64 vectors, if any, follow its float32 ones: their counts are the header's lengths64)
// The arrays fill the rest exactly: a trailing byte is as malformed as a missing one.
import * as z from 'zod';
import type { CentralData } from './job-request.js';

const DATA_MAGIC = 'FPD1';
const STATE_MAGIC = 'FPS1';
const PREFIX_BYTES = 8;

/** A JSON-able header plus float32 vectors (and float64 ones: optimizer moments, which float32 would round). */
export interface PackedState {
  header: unknown;
  vectors: Float32Array[];
  /** Absent or empty: the file is byte for byte what it was before float64 vectors existed. */
  doubles?: Float64Array[];
}

const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1;

function fail(message: string): never {
  throw new Error(`persist: ${message}`);
}

type Column = Float32Array | Int32Array | Float64Array;

function pad4(n: number): number {
  return (n + 3) & ~3;
}

function pack(magic: string, header: unknown, columns: readonly Column[]): Uint8Array {
  const json = JSON.stringify(header);
  const headerBytes = new TextEncoder().encode(json);
  const start = PREFIX_BYTES + pad4(headerBytes.byteLength);
  let total = start;
  for (const c of columns) total += c.byteLength;
  const out = new Uint8Array(total);
  out.set(new TextEncoder().encode(magic), 0);
  const view = new DataView(out.buffer);
  view.setUint32(4, headerBytes.byteLength, true);
  out.set(headerBytes, PREFIX_BYTES);
  let at = start;
  for (const c of columns) {
    if (LITTLE_ENDIAN) {
      out.set(new Uint8Array(c.buffer, c.byteOffset, c.byteLength), at);
    } else if (c instanceof Float32Array) {
      for (let i = 0; i < c.length; i++) view.setFloat32(at + 4 * i, c[i]!, true);
    } else if (c instanceof Float64Array) {
      for (let i = 0; i < c.length; i++) view.setFloat64(at + 8 * i, c[i]!, true);
    } else {
      for (let i = 0; i < c.length; i++) view.setInt32(at + 4 * i, c[i]!, true);
    }
    at += c.byteLength;
  }
  return out;
}

interface Unpacked {
  header: unknown;
  /** Reads the next `count` elements as a fresh, aligned array of the given type. */
  float32(count: number, what: string): Float32Array;
  int32(count: number, what: string): Int32Array;
  float64(count: number, what: string): Float64Array;
  /** Throws unless every array byte was read. */
  end(): void;
}

function unpack(magic: string, bytes: Uint8Array, what: string): Unpacked {
  if (!(bytes instanceof Uint8Array)) fail(`${what}: expected bytes`);
  if (bytes.byteLength < PREFIX_BYTES) fail(`${what}: truncated (${bytes.byteLength} bytes, the prefix alone is ${PREFIX_BYTES})`);
  const got = String.fromCharCode(bytes[0]!, bytes[1]!, bytes[2]!, bytes[3]!);
  if (got !== magic) fail(`${what}: bad magic ${JSON.stringify(got)}, expected ${JSON.stringify(magic)}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(4, true);
  if (headerLength > bytes.byteLength - PREFIX_BYTES) {
    fail(`${what}: header length ${headerLength} runs past the end (${bytes.byteLength - PREFIX_BYTES} bytes after the prefix)`);
  }
  const start = PREFIX_BYTES + pad4(headerLength);
  if (start > bytes.byteLength) fail(`${what}: truncated in the header padding`);
  for (let i = PREFIX_BYTES + headerLength; i < start; i++) if (bytes[i] !== 0) fail(`${what}: nonzero header padding`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength)));
  } catch (e) {
    fail(`${what}: header is not UTF-8 JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  let at = start;
  function take(count: number, field: string, width = 4): Uint8Array {
    const need = count * width;
    if (need > bytes.byteLength - at) fail(`${what}: truncated in ${field} (${count} values need ${need} bytes, ${bytes.byteLength - at} left)`);
    const own = new Uint8Array(need);
    own.set(bytes.subarray(at, at + need));
    at += need;
    return own;
  }
  return {
    header,
    float32(count, field) {
      const own = take(count, field);
      const out = new Float32Array(own.buffer);
      if (!LITTLE_ENDIAN) {
        const v = new DataView(own.buffer);
        for (let i = 0; i < count; i++) out[i] = v.getFloat32(4 * i, true);
      }
      return out;
    },
    int32(count, field) {
      const own = take(count, field);
      const out = new Int32Array(own.buffer);
      if (!LITTLE_ENDIAN) {
        const v = new DataView(own.buffer);
        for (let i = 0; i < count; i++) out[i] = v.getInt32(4 * i, true);
      }
      return out;
    },
    float64(count, field) {
      const own = take(count, field, 8);
      const out = new Float64Array(own.buffer);
      if (!LITTLE_ENDIAN) {
        const v = new DataView(own.buffer);
        for (let i = 0; i < count; i++) out[i] = v.getFloat64(8 * i, true);
      }
      return out;
    },
    end() {
      if (at !== bytes.byteLength) fail(`${what}: ${bytes.byteLength - at} bytes past the arrays the header describes`);
    },
  };
}

const count = z.number().int().nonnegative().max(2 ** 31);

const dataHeaderSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('classify'), dim: count, n: count, rows: count, labels: count }),
  z.strictObject({ kind: z.literal('pairs'), dim: count, n: count, chosen: count, rejected: count }),
]);

const stateHeaderSchema = z.strictObject({ header: z.unknown(), lengths: z.array(count), lengths64: z.array(count).optional() });

/** Packs central data ('FPD1'); throws if the columns don't have n × dim (and n labels) values. */
export function packCentralData(d: CentralData): Uint8Array {
  const cells = d.n * d.dim;
  if (d.kind === 'classify') {
    if (d.rows.length !== cells) fail(`classify data: rows hold ${d.rows.length} values, n × dim is ${cells}`);
    if (d.labels.length !== d.n) fail(`classify data: ${d.labels.length} labels for n = ${d.n}`);
    return pack(DATA_MAGIC, { kind: 'classify', dim: d.dim, n: d.n, rows: d.rows.length, labels: d.labels.length }, [d.rows, d.labels]);
  }
  if (d.chosen.length !== cells) fail(`pairs data: chosen holds ${d.chosen.length} values, n × dim is ${cells}`);
  if (d.rejected.length !== cells) fail(`pairs data: rejected holds ${d.rejected.length} values, n × dim is ${cells}`);
  return pack(DATA_MAGIC, { kind: 'pairs', dim: d.dim, n: d.n, chosen: d.chosen.length, rejected: d.rejected.length }, [d.chosen, d.rejected]);
}

/** Unpacks central data; the arrays are fresh aligned copies. Throws Error('persist: ...') on malformed input. */
export function unpackCentralData(bytes: Uint8Array): CentralData {
  const u = unpack(DATA_MAGIC, bytes, 'central data');
  const r = dataHeaderSchema.safeParse(u.header);
  if (!r.success) fail(`central data: invalid header ${JSON.stringify(u.header)}`);
  const h = r.data;
  const cells = h.n * h.dim;
  if (h.kind === 'classify') {
    if (h.rows !== cells || h.labels !== h.n) fail(`central data: header lengths rows ${h.rows}, labels ${h.labels} don't match n ${h.n} × dim ${h.dim}`);
    const rows = u.float32(h.rows, 'rows');
    const labels = u.int32(h.labels, 'labels');
    u.end();
    return { kind: 'classify', dim: h.dim, n: h.n, rows, labels };
  }
  if (h.chosen !== cells || h.rejected !== cells) fail(`central data: header lengths chosen ${h.chosen}, rejected ${h.rejected} don't match n ${h.n} × dim ${h.dim}`);
  const chosen = u.float32(h.chosen, 'chosen');
  const rejected = u.float32(h.rejected, 'rejected');
  u.end();
  return { kind: 'pairs', dim: h.dim, n: h.n, chosen, rejected };
}

/** Packs a state ('FPS1'): the header goes through JSON (so it comes back as JSON.parse(JSON.stringify(header))). */
export function packState(s: PackedState): Uint8Array {
  const doubles = s.doubles ?? [];
  if (doubles.length === 0) return pack(STATE_MAGIC, { header: s.header, lengths: s.vectors.map((v) => v.length) }, s.vectors);
  return pack(STATE_MAGIC, { header: s.header, lengths: s.vectors.map((v) => v.length), lengths64: doubles.map((v) => v.length) }, [...s.vectors, ...doubles]);
}

/** Unpacks a state; the vectors are fresh aligned copies. Throws Error('persist: ...') on malformed input. */
export function unpackState(bytes: Uint8Array): PackedState {
  const u = unpack(STATE_MAGIC, bytes, 'state');
  const r = stateHeaderSchema.safeParse(u.header);
  if (!r.success) fail(`state: invalid header (expected {header, lengths})`);
  const vectors = r.data.lengths.map((n, i) => u.float32(n, `vector ${i}`));
  const doubles = r.data.lengths64?.map((n, i) => u.float64(n, `float64 vector ${i}`));
  u.end();
  return doubles === undefined ? { header: r.data.header, vectors } : { header: r.data.header, vectors, doubles };
}

/** How a typed array stands in a JSON header once moved out to the packed vectors: its index there. */
type VectorRef = { $f32: number } | { $f64: number };

/**
 * A JSON-safe copy of plain data (objects, arrays, numbers, strings, booleans, null) in which every Float32Array is
 * appended to `vectors` and every Float64Array to `doubles`, leaving {"$f32": i} / {"$f64": i} in its place; so a
 * snapshot's float vectors go to the binary part of a packed state, not into JSON text. Inverse: inlineVectors.
 */
export function outlineVectors(value: unknown, vectors: Float32Array[], doubles: Float64Array[]): unknown {
  if (value instanceof Float32Array) return { $f32: vectors.push(value) - 1 } satisfies VectorRef;
  if (value instanceof Float64Array) return { $f64: doubles.push(value) - 1 } satisfies VectorRef;
  if (ArrayBuffer.isView(value)) fail(`cannot store a ${value.constructor.name} (only Float32Array and Float64Array)`);
  if (Array.isArray(value)) return value.map((v: unknown) => outlineVectors(v, vectors, doubles));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (k === '$f32' || k === '$f64') fail(`a stored object cannot have the key ${k}`);
      out[k] = outlineVectors(v, vectors, doubles);
    }
    return out;
  }
  return value;
}

/** outlineVectors undone: each {"$f32": i} / {"$f64": i} becomes that vector. An index out of range is an Error. */
export function inlineVectors(value: unknown, vectors: readonly Float32Array[], doubles: readonly Float64Array[]): unknown {
  if (Array.isArray(value)) return value.map((v: unknown) => inlineVectors(v, vectors, doubles));
  if (value === null || typeof value !== 'object') return value;
  const keys = Object.keys(value);
  if (keys.length === 1 && (keys[0] === '$f32' || keys[0] === '$f64')) {
    const f32 = keys[0] === '$f32';
    const i = (value as Record<string, unknown>)[keys[0]];
    const list: readonly (Float32Array | Float64Array)[] = f32 ? vectors : doubles;
    if (typeof i !== 'number' || !Number.isInteger(i) || i < 0 || i >= list.length) fail(`state: ${keys[0]} reference ${JSON.stringify(i)} is not one of the ${list.length} stored ${f32 ? 'float32' : 'float64'} vectors`);
    return list[i];
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = inlineVectors(v, vectors, doubles);
  return out;
}
