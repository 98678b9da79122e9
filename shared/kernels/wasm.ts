// The WebAssembly SIMD kernels behind the aggregation rules' hot loops (docs/kernels.md), with the Float32Array API
// the rules keep. Each call walks the inputs in column blocks: a block of every input is copied into the module's
// memory (one copy of each value, landing in cache), every kernel pass reads it there, and each output block is
// copied back out. The module is instantiated synchronously on first use, from bytes built into the package.
import { KERNELS_BASE64 } from './kernels-binary.js';
import { AXPY_GROUP } from './wat.js';

/** Vectors shorter than this take the scalar paths: the copies and calls would cost more than the loops save. */
export const MIN_WASM_LENGTH = 256;
/** Coordinates per column block of the distance kernel: fixed, because a pair's float64 sum is taken per block. */
export const DISTANCE_BLOCK = 1024;
/** Coordinates per column block of the other kernels, at most (fewer when n inputs would not fit in ~256 KiB). */
const MAX_BLOCK = 4096;
const CACHE_BYTES = 256 * 1024;

interface Exports {
  memory: WebAssembly.Memory;
  axpy8: (acc: number, nvec: number, ...rowsThenCoeffs: number[]) => void;
  demote: (acc: number, nvec: number, out: number) => void;
  dist4: (a: number, b0: number, b1: number, b2: number, b3: number, nvec: number, out: number) => void;
  window_mean: (xs: number, stride: number, n: number, nvec: number, lo: number, hi: number, col: number, out: number) => void;
  non_finite: (xs: number, nvec: number) => number;
  dist_from4: (z: number, a0: number, a1: number, a2: number, a3: number, nvec: number, out: number) => void;
  axpy64_4: (acc: number, nvec: number, x0: number, x1: number, x2: number, x3: number, c0: number, c1: number, c2: number, c3: number) => void;
  axpy64_1: (acc: number, nvec: number, x0: number, c0: number) => void;
  div64: (acc: number, nvec: number, s: number) => void;
  step_norm: (next: number, z: number, nvec: number, out: number) => void;
  clip4: (acc: number, z: number, nvec: number, x0: number, x1: number, x2: number, x3: number, c0: number, c1: number, c2: number, c3: number) => void;
  clip1: (acc: number, z: number, nvec: number, x0: number, c0: number) => void;
  add64: (z: number, acc: number, nvec: number) => void;
}

function decode(b64: string): Uint8Array {
  const text = atob(b64);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** Coordinates per block for n inputs: a multiple of 4, the n blocks together within CACHE_BYTES where possible. */
function blockFor(n: number): number {
  return Math.max(256, Math.min(MAX_BLOCK, Math.floor(CACHE_BYTES / (4 * n) / 4) * 4));
}

const pad4 = (len: number): number => (len + 3) & ~3;

let compiled: WebAssembly.Module | undefined;

/** One instance of the kernels module and the scratch layout of its memory. */
export class WasmKernels {
  private readonly x: Exports;
  private f32: Float32Array;
  private f64: Float64Array;

  constructor() {
    compiled ??= new WebAssembly.Module(decode(KERNELS_BASE64));
    const instance = new WebAssembly.Instance(compiled, {});
    this.x = instance.exports as unknown as Exports;
    this.f32 = new Float32Array(this.x.memory.buffer);
    this.f64 = new Float64Array(this.x.memory.buffer);
  }

  /** The module's functions, for the callers in this file that lay out memory of their own (ResidentRows). */
  get exports(): Exports {
    return this.x;
  }

  get memory(): WebAssembly.Memory {
    return this.x.memory;
  }

  /** Makes the memory at least `bytes` long; growing detaches the old views, so they are made again. */
  reserve(bytes: number): void {
    const have = this.x.memory.buffer.byteLength;
    if (bytes <= have) return;
    this.x.memory.grow(Math.ceil((bytes - have) / 65536));
    this.f32 = new Float32Array(this.x.memory.buffer);
    this.f64 = new Float64Array(this.x.memory.buffer);
  }

  /**
   * Copies updates[i][j0, j0+len) into row i (rows `stride` bytes apart from byte `base`), zero-padding each row to a
   * whole vector. Only rows whose `wanted` flag is set (all when omitted).
   */
  private load(updates: readonly Float32Array[], j0: number, len: number, base: number, stride: number, wanted?: Uint8Array): void {
    const f32 = this.f32;
    const padded = pad4(len);
    for (let i = 0; i < updates.length; i++) {
      if (wanted !== undefined && wanted[i] === 0) continue;
      const at = (base + i * stride) >> 2;
      f32.set(updates[i].subarray(j0, j0 + len), at);
      if (padded !== len) f32.fill(0, at + len, at + padded);
    }
  }

  /**
   * out[r] = Σ_k coeffs[r·n + used[k]] · updates[used[k]] for each distinct row r (rows[r] = true), computed per column
   * block: float32 products summed eight inputs at a time, each partial sum added in float64.
   */
  combineRows(updates: readonly Float32Array[], coeffs: Float64Array, out: Float32Array[], usedStart: Int32Array, usedIdx: Int32Array, distinct: readonly boolean[], from = 0, to = updates[0].length): void {
    const n = updates.length;
    const rows = out.length;
    const wanted = new Uint8Array(n);
    for (let k = 0; k < usedStart[rows]; k++) wanted[usedIdx[k]] = 1;
    const block = blockFor(n);
    const stride = block * 4;
    // Layout: a zero row (what padding slots of a group point at), the n input rows, the float64 sums, the output.
    const zero = 0;
    const base = stride;
    const acc = base + n * stride;
    const outAt = acc + block * 8;
    this.reserve(outAt + stride);
    this.f32.fill(0, 0, block);
    const rowAt = new Int32Array(AXPY_GROUP);
    const coeffAt = new Float32Array(AXPY_GROUP);
    for (let j0 = from; j0 < to; j0 += block) {
      const len = Math.min(block, to - j0);
      const nvec = pad4(len) >> 2;
      this.load(updates, j0, len, base, stride, wanted);
      for (let r = 0; r < rows; r++) {
        if (!distinct[r]) continue;
        this.f64.fill(0, acc >> 3, (acc >> 3) + nvec * 4);
        const o = r * n;
        for (let k = usedStart[r]; k < usedStart[r + 1]; k += AXPY_GROUP) {
          for (let g = 0; g < AXPY_GROUP; g++) {
            const i = k + g < usedStart[r + 1] ? usedIdx[k + g] : -1;
            rowAt[g] = i < 0 ? zero : base + i * stride;
            coeffAt[g] = i < 0 ? 0 : coeffs[o + i];
          }
          this.x.axpy8(acc, nvec, rowAt[0], rowAt[1], rowAt[2], rowAt[3], rowAt[4], rowAt[5], rowAt[6], rowAt[7],
            coeffAt[0], coeffAt[1], coeffAt[2], coeffAt[3], coeffAt[4], coeffAt[5], coeffAt[6], coeffAt[7]);
        }
        this.x.demote(acc, nvec, outAt);
        out[r].set(this.f32.subarray(outAt >> 2, (outAt >> 2) + len), j0);
      }
    }
  }

  /**
   * D[a·n + b] and D[b·n + a] = Σ_j (x_a[j] − x_b[j])² for a < b, over DISTANCE_BLOCK-coordinate blocks (each pair's
   * block sum by dist4, the block sums added in float64 in block order).
   */
  squaredDistances(updates: readonly Float32Array[]): Float64Array {
    const n = updates.length;
    const d = n === 0 ? 0 : updates[0].length;
    const packed = new Float64Array((n * (n - 1)) / 2);
    for (let j0 = 0; j0 < d; j0 += DISTANCE_BLOCK) this.blockPairSums(updates, j0, Math.min(DISTANCE_BLOCK, d - j0), packed, 0, true);
    return pairMatrix(packed, n);
  }

  /**
   * The distance matrix's block sums, for splitting it across threads: sums[b·P + p] = the sum dist4 gives pair p
   * (a < b pairs in row order, P = n(n−1)/2) over distance block b, for the blocks that start in [from, to) (from a
   * multiple of DISTANCE_BLOCK). Adding them in block order gives squaredDistances' entries bit for bit.
   */
  distanceBlockSums(updates: readonly Float32Array[], sums: Float64Array, from: number, to: number): void {
    const pairs = (updates.length * (updates.length - 1)) / 2;
    for (let j0 = from; j0 < to; j0 += DISTANCE_BLOCK) this.blockPairSums(updates, j0, Math.min(DISTANCE_BLOCK, to - j0), sums, (j0 / DISTANCE_BLOCK) * pairs, false);
  }

  /** Each pair's sum over one distance block [j0, j0 + len), added to (or written at) out[at + p], p in pair order. */
  private blockPairSums(updates: readonly Float32Array[], j0: number, len: number, out: Float64Array, at: number, add: boolean): void {
    const n = updates.length;
    const stride = DISTANCE_BLOCK * 4;
    const outAt = n * stride;
    this.reserve(outAt + 32);
    const res = outAt >> 3;
    const nvec = pad4(len) >> 2;
    this.load(updates, j0, len, 0, stride);
    let p = at;
    for (let a = 0; a + 1 < n; a++) {
      const pa = a * stride;
      for (let b = a + 1; b < n; b += 4) {
        // Fewer than four partners left: the spare slots repeat the first, and their sums are not used.
        const p0 = b * stride;
        const p1 = b + 1 < n ? p0 + stride : p0;
        const p2 = b + 2 < n ? p0 + 2 * stride : p0;
        const p3 = b + 3 < n ? p0 + 3 * stride : p0;
        this.x.dist4(pa, p0, p1, p2, p3, nvec, outAt);
        const f64 = this.f64;
        for (let k = 0; k < 4 && b + k < n; k++, p++) out[p] = add ? out[p] + f64[res + k] : f64[res + k];
      }
    }
  }

  /** Per coordinate: the mean of sorted[lo, hi) of the n values (n ≤ 32), bit-identical to the scalar insertion sort. */
  sortedWindowMean(updates: readonly Float32Array[], lo: number, hi: number): Float32Array {
    const out = new Float32Array(updates[0].length);
    this.sortedWindowMeanInto(updates, lo, hi, out, 0, out.length);
    return out;
  }

  /** sortedWindowMean for coordinates [from, to), written into out. */
  sortedWindowMeanInto(updates: readonly Float32Array[], lo: number, hi: number, out: Float32Array, from: number, to: number): void {
    const n = updates.length;
    const block = blockFor(n);
    const stride = block * 4;
    const col = n * stride;
    const outAt = col + n * 16;
    this.reserve(outAt + stride);
    for (let j0 = from; j0 < to; j0 += block) {
      const len = Math.min(block, to - j0);
      this.load(updates, j0, len, 0, stride);
      this.x.window_mean(0, stride, n, pad4(len) >> 2, lo, hi, col, outAt);
      out.set(this.f32.subarray(outAt >> 2, (outAt >> 2) + len), j0);
    }
  }

  /** The index of the first NaN or ±∞ in data, or −1; checked in blocks of SCAN_BLOCK values copied into the module. */
  firstNonFinite(data: Float32Array): number {
    this.reserve(SCAN_BLOCK * 4);
    const f32 = this.f32;
    for (let j0 = 0; j0 < data.length; j0 += SCAN_BLOCK) {
      const len = Math.min(SCAN_BLOCK, data.length - j0);
      const padded = pad4(len);
      f32.set(data.subarray(j0, j0 + len), 0);
      if (padded !== len) f32.fill(0, len, padded);
      const v = this.x.non_finite(0, padded >> 2);
      if (v >= 0) {
        for (let j = j0 + 4 * v; j < j0 + len; j++) if (!Number.isFinite(data[j])) return j;
      }
    }
    return -1;
  }
}

/**
 * Calls whose inputs fit in this many bytes reuse one instance for their resident rows (creating an instance and its
 * memory costs more than a small call's work); larger ones get an instance of their own, dropped after the call, so
 * one large call does not keep its memory.
 */
const REUSED_RESIDENT_BYTES = 16 * 1024 * 1024;
let reusedResident: WasmKernels | undefined;

/** Inputs larger than this take the scalar loops of Weiszfeld and centered clipping rather than a second copy. */
const MAX_RESIDENT_BYTES = 256 * 1024 * 1024;

/** Inputs held in module memory for the many passes of Weiszfeld and centered clipping (docs/kernels.md). */
export class ResidentRows {
  /** Whether n inputs of length d go to resident rows: the kernels run here and the copy is at most 256 MiB. */
  static fits(n: number, d: number): boolean {
    return wasmKernels(d) !== null && n * d * 4 <= MAX_RESIDENT_BYTES;
  }

  private readonly k: WasmKernels;
  private readonly d: number;
  private readonly nvec: number;
  private readonly stride: number;
  /** Byte offset of the first float64 vector after the rows; vectors are 32·nvec bytes apart. */
  private readonly vectors: number;
  private readonly out: number;

  /** Copies the n rows in once (zero-padded to whole vectors) and makes room for `vectors` float64 vectors of length d. */
  constructor(private readonly updates: readonly Float32Array[], vectors: number) {
    const n = updates.length;
    this.d = updates[0].length;
    this.nvec = pad4(this.d) >> 2;
    this.stride = this.nvec * 16;
    this.vectors = n * this.stride;
    this.out = this.vectors + vectors * this.nvec * 32;
    const bytes = this.out + 32;
    this.k = bytes <= REUSED_RESIDENT_BYTES ? (reusedResident ??= new WasmKernels()) : new WasmKernels();
    const k = this.k;
    k.reserve(bytes);
    // A reused instance holds an earlier call's values: the padding of each row and every float64 vector start at 0.
    const f32 = new Float32Array(k.memory.buffer);
    updates.forEach((u, i) => {
      const at = (i * this.stride) >> 2;
      f32.set(u, at);
      f32.fill(0, at + this.d, at + this.nvec * 4);
    });
    new Float64Array(k.memory.buffer, this.vectors, vectors * this.nvec * 4).fill(0);
  }

  /** The byte offset of float64 vector `i`. */
  vector(i: number): number {
    return this.vectors + i * this.nvec * 32;
  }

  /** A view of float64 vector `i` (valid while this call runs: nothing grows the memory after construction). */
  view(i: number): Float64Array {
    return new Float64Array(this.k.memory.buffer, this.vector(i), this.d);
  }

  /** out[i] = Σ_j (z_j − x_ij)², z the float64 vector at byte `z`. */
  squaredDistancesFrom(z: number, out: Float64Array): void {
    const n = this.updates.length;
    const res = new Float64Array(this.k.memory.buffer, this.out, 4);
    for (let i = 0; i < n; i += 4) {
      const p = (k: number): number => (i + k < n ? i + k : i) * this.stride;
      this.k.exports.dist_from4(z, p(0), p(1), p(2), p(3), this.nvec, this.out);
      for (let k = 0; k < 4 && i + k < n; k++) out[i + k] = res[k];
    }
  }

  /** acc = Σ_i c_i x_i, summed per coordinate from 0 in input order (the scalar loop's order, so the same bits). */
  weightedSum(c: Float64Array, acc: number): void {
    const n = this.updates.length;
    new Float64Array(this.k.memory.buffer, acc, this.nvec * 4).fill(0);
    let i = 0;
    for (; i + 3 < n; i += 4) {
      const s = this.stride;
      this.k.exports.axpy64_4(acc, this.nvec, i * s, (i + 1) * s, (i + 2) * s, (i + 3) * s, c[i], c[i + 1], c[i + 2], c[i + 3]);
    }
    for (; i < n; i++) this.k.exports.axpy64_1(acc, this.nvec, i * this.stride, c[i]);
  }

  /**
   * acc = Σ_{i in order} c_i (x_i − z) over the inputs listed in `used` (z the float64 vector at byte `z`), added per
   * coordinate from 0 in that order — the scalar loop's order, so the same bits.
   */
  clippedSum(c: Float64Array, used: readonly number[], z: number, acc: number): void {
    new Float64Array(this.k.memory.buffer, acc, this.nvec * 4).fill(0);
    const s = this.stride;
    let k = 0;
    for (; k + 3 < used.length; k += 4) {
      const [a, b, e, f] = [used[k]!, used[k + 1]!, used[k + 2]!, used[k + 3]!];
      this.k.exports.clip4(acc, z, this.nvec, a * s, b * s, e * s, f * s, c[a], c[b], c[e], c[f]);
    }
    for (; k < used.length; k++) this.k.exports.clip1(acc, z, this.nvec, used[k]! * s, c[used[k]!]);
  }

  /** z = z + acc, per coordinate. */
  addInto(z: number, acc: number): void {
    this.k.exports.add64(z, acc, this.nvec);
  }

  /** acc = acc / s, per coordinate. */
  divide(acc: number, s: number): void {
    this.k.exports.div64(acc, this.nvec, s);
  }

  /** [Σ (next − z)², Σ next²]. */
  stepAndNorm(next: number, z: number): [number, number] {
    this.k.exports.step_norm(next, z, this.nvec, this.out);
    const res = new Float64Array(this.k.memory.buffer, this.out, 2);
    return [res[0], res[1]];
  }
}

/** The symmetric n×n matrix of packed pair values (a < b in row order). */
export function pairMatrix(packed: Float64Array, n: number): Float64Array {
  const D = new Float64Array(n * n);
  let p = 0;
  for (let a = 0; a + 1 < n; a++) {
    for (let b = a + 1; b < n; b++, p++) {
      D[a * n + b] = packed[p];
      D[b * n + a] = packed[p];
    }
  }
  return D;
}

/** Values per block of the NaN scan (64 KiB: in cache while the kernel reads what was just copied). */
const SCAN_BLOCK = 16384;

let kernels: WasmKernels | null | undefined;
let mode: 'wasm' | 'js' = 'wasm';

/**
 * The kernels for vectors of length d, or null for short vectors and where they cannot run (no WebAssembly, no SIMD, or a host that refuses synchronous
 * compilation): the rules then take their scalar paths, which agree within the bound of docs/kernels.md.
 */
export function wasmKernels(d: number): WasmKernels | null {
  if (mode === 'js' || d < MIN_WASM_LENGTH) return null;
  if (kernels === undefined) {
    try {
      kernels = new WasmKernels();
    } catch {
      kernels = null;
    }
  }
  return kernels;
}

/** Selects the kernels ('wasm', the default where available) or the scalar reference ('js'): for tests and benchmarks. */
export function useKernels(which: 'wasm' | 'js'): void {
  mode = which;
}
