import { wasmKernels } from '../kernels/wasm.js';
import { ProtocolError, describeValue } from './errors.js';

/**
 * A dense, row-major tensor as carried on the wire. The codec treats it as opaque bytes:
 * element-level checks (shape against the model, finiteness) are the receiver's job, done
 * with `assertTensor` / `assertFinite`, because only handlers know what they expect.
 */

export const DTYPES = ['float32', 'int32', 'uint8'] as const;
export type DType = (typeof DTYPES)[number];

export interface DTypeArrayMap {
  float32: Float32Array;
  int32: Int32Array;
  uint8: Uint8Array;
}
export type TypedArrayOf<D extends DType> = DTypeArrayMap[D];

/** Rank limit; the wire header stores ndim in one byte, and no model here needs more. */
export const MAX_DIMS = 8;
/** Each dim is a uint32 on the wire, so larger dims (possible only with a zero-size tensor) are refused. */
export const MAX_DIM_SIZE = 0xffff_ffff;

const ARRAY_CTORS = { float32: Float32Array, int32: Int32Array, uint8: Uint8Array } as const;

export function isDType(value: unknown): value is DType {
  return value === 'float32' || value === 'int32' || value === 'uint8';
}

export function bytesPerElement(dtype: DType): number {
  return ARRAY_CTORS[dtype].BYTES_PER_ELEMENT;
}

function formatShape(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

function checkShape(shape: readonly number[], length: number): void {
  if (!Array.isArray(shape)) throw new RangeError('tensor shape must be an array of dims');
  if (shape.length > MAX_DIMS) {
    throw new RangeError(`tensor has ${shape.length} dims; at most ${MAX_DIMS} are allowed`);
  }
  let product = 1;
  for (const dim of shape) {
    if (!Number.isSafeInteger(dim) || dim < 0 || dim > MAX_DIM_SIZE) {
      throw new RangeError(`tensor dim ${String(dim)} in shape ${formatShape(shape)} is not an integer in [0, ${MAX_DIM_SIZE}]`);
    }
    product *= dim; // float product: exact below 2^53, and anything above cannot equal a length
  }
  if (product !== length) {
    throw new RangeError(`tensor shape ${formatShape(shape)} has ${product} elements but data has ${length}`);
  }
}

export class Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly data: TypedArrayOf<D>;

  /** Wraps `data` without copying. `shape` defaults to `[data.length]` and must multiply to it. */
  constructor(dtype: D, data: TypedArrayOf<D>, shape: readonly number[] = [data.length]) {
    if (!isDType(dtype)) throw new TypeError(`unknown tensor dtype ${describeValue(dtype)}`);
    if (!(data instanceof ARRAY_CTORS[dtype])) {
      throw new TypeError(`a ${dtype} tensor needs a ${ARRAY_CTORS[dtype].name}, got ${describeValue(data)}`);
    }
    checkShape(shape, data.length);
    this.dtype = dtype;
    this.data = data;
    this.shape = Object.freeze(shape.slice());
  }

  /** Number of elements. */
  get size(): number {
    return this.data.length;
  }

  get ndim(): number {
    return this.shape.length;
  }

  get byteLength(): number {
    return this.data.byteLength;
  }

  /** e.g. `float32 Tensor [2,3]` — used in error messages. */
  describe(): string {
    return `${this.dtype} Tensor ${formatShape(this.shape)}`;
  }

  toString(): string {
    return this.describe();
  }

  /** A summary, so logging a message never serialises megabytes of weights as JSON. */
  toJSON(): { dtype: D; shape: readonly number[]; size: number } {
    return { dtype: this.dtype, shape: this.shape, size: this.size };
  }

  /** Wraps a Float32Array as is, or copies any other list of numbers. */
  static float32(data: Float32Array | ArrayLike<number>, shape?: readonly number[]): Tensor<'float32'> {
    return new Tensor('float32', data instanceof Float32Array ? data : Float32Array.from(data), shape);
  }

  static int32(data: Int32Array | ArrayLike<number>, shape?: readonly number[]): Tensor<'int32'> {
    return new Tensor('int32', data instanceof Int32Array ? data : Int32Array.from(data), shape);
  }

  static uint8(data: Uint8Array | ArrayLike<number>, shape?: readonly number[]): Tensor<'uint8'> {
    return new Tensor('uint8', data instanceof Uint8Array ? data : Uint8Array.from(data), shape);
  }
}

export function isTensor(value: unknown): value is Tensor {
  return value instanceof Tensor;
}

/**
 * Checks that a received value is the tensor a handler needs. `shape` entries may be `null`
 * for "any size" (e.g. `[null, dim]` for a batch of rows); omit `shape` to check dtype only.
 * Throws ProtocolError: 'invalid-field' for a non-tensor or wrong dtype, 'shape-mismatch' otherwise.
 */
export function assertTensor<D extends DType>(
  value: unknown,
  dtype: D,
  shape?: readonly (number | null)[],
  path = 'tensor',
): asserts value is Tensor<D> {
  if (!(value instanceof Tensor) || value.dtype !== dtype) {
    throw new ProtocolError('invalid-field', `invalid field "${path}": expected ${dtype} Tensor, got ${describeValue(value)}`, { path });
  }
  if (shape === undefined) return;
  const actual = value.shape;
  const matches = actual.length === shape.length && shape.every((dim, i) => dim === null || dim === actual[i]);
  if (!matches) {
    const expected = `[${shape.map((d) => (d === null ? '*' : String(d))).join(',')}]`;
    throw new ProtocolError('shape-mismatch', `shape mismatch in "${path}": expected ${expected}, got ${formatShape(actual)}`, { path });
  }
}

/**
 * Float32 arrays decoded from an inbound frame, whose schema found them finite: a later check of the same array (the
 * training driver's, which also serves the simulator's arrays that never crossed the wire) skips its loop, so a 4 MB
 * update is scanned once. Marked by the receiver that decoded the frame, for arrays the decoder made, which nothing
 * writes to before they are aggregated.
 */
const decodedFinite = new WeakSet<Float32Array>();

/** Records that `data`, just decoded, holds no NaN or ±Infinity (see decodedFinite). */
export function markDecodedFinite(data: Float32Array): void {
  decodedFinite.add(data);
}

/** Whether `data` was decoded from a frame and found finite there. */
export function isDecodedFinite(data: Float32Array): boolean {
  return decodedFinite.has(data);
}

/**
 * Index of the first NaN/±Infinity, or -1. Long arrays (every update and score batch) go through the SIMD kernel
 * (docs/kernels.md), ~3× faster for a 4 MB update; short ones and hosts without the kernels take the loop, where
 * `v - v` is NaN exactly for those values.
 */
export function firstNonFinite(data: Float32Array): number {
  const kernels = wasmKernels(data.length);
  if (kernels !== null) return kernels.firstNonFinite(data);
  for (let i = 0, n = data.length; i < n; i++) {
    const v = data[i];
    if (v - v !== 0) return i;
  }
  return -1;
}

/** Throws ProtocolError('non-finite') naming the first bad index. Integer tensors are always finite. */
export function assertFinite(tensor: Tensor, path: string): void {
  if (tensor.dtype !== 'float32') return;
  const data = tensor.data as Float32Array;
  const i = firstNonFinite(data);
  if (i >= 0) {
    throw new ProtocolError('non-finite', `non-finite value in "${path}" at index ${i}: ${String(data[i])}`, { path });
  }
}
