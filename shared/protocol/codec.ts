import { Packr, addExtension } from 'msgpackr';
import { ProtocolError, describeValue, isProtocolError } from './errors.js';
import { MAX_DIMS, Tensor, bytesPerElement, type DType } from './tensor.js';
import {
  parseMessage,
  type CoordinatorMessage,
  type Direction,
  type Message,
  type WorkerMessage,
} from './messages.js';

/**
 * Frames are MessagePack maps. Tensors travel as a MessagePack extension:
 *
 *   ext type 0x54 ('T', inside msgpackr's 1–100 range for applications; msgpackr itself uses 0x42
 *   and 0x62 there, and 0x65–0x78 / -1 outside it)
 *   payload: u8 dtype code (0 float32, 1 int32, 2 uint8), u8 ndim (≤ 8),
 *            ndim × u32 little-endian dims, u8 pad (≤ 7), pad bytes, the elements as raw little-endian bytes, then
 *            7 − pad bytes.
 *
 * The encoder chooses pad so the elements start at a multiple of 8 bytes from the frame's start, which lets a receiver
 * read a large tensor where it lies in the frame instead of copying it (DecodeOptions.tensorViews).
 *
 * Blob chunks use plain MessagePack bin. msgpackr's `addExtension` is process-global, so
 * importing this module makes every msgpackr Packr in the process encode Tensor this way.
 */
export const TENSOR_EXT_TYPE = 0x54;
export const DEFAULT_MAX_FRAME_BYTES = 256 * 1024 * 1024;
/** Deepest container nesting a frame may have; real messages use about 5. */
export const MAX_FRAME_DEPTH = 32;

const DTYPE_CODES: { readonly [D in DType]: number } = { float32: 0, int32: 1, uint8: 2 };
const DTYPE_BY_CODE: readonly DType[] = ['float32', 'int32', 'uint8'];
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Reverses each element's bytes in place (only on big-endian hosts: the wire is little-endian). */
function swapBytes(bytes: Uint8Array, width: number): void {
  if (width === 1) return;
  for (let i = 0; i + width <= bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

/** Bytes before an extension's payload: the token, the length (none for fixext 1/2/4/8/16), the type. */
function extHeaderBytes(length: number): number {
  if (length === 1 || length === 2 || length === 4 || length === 8 || length === 16) return 2;
  return length < 0x100 ? 3 : length < 0x10000 ? 4 : 6;
}

/** Where msgpackr lets an extension write its bytes itself: `size` bytes at `position` of `target` (call it once). */
type AllocateForWrite = (size: number) => { target: Uint8Array; position: number };

/** Padding bytes in every tensor, split between before and after the elements so the elements can start 8-aligned. */
const TENSOR_PADDING = 7;

/**
 * Writes the whole extension (header and payload) straight into msgpackr's output, so the elements are copied once,
 * from the tensor to the frame. Its size must be known before msgpackr says where it goes, so every tensor carries
 * TENSOR_PADDING bytes: `pad` of them before the elements, the rest after. msgpackr starts every frame at a multiple of
 * 8 in its buffer, so `position` modulo 8 is the offset modulo 8 within the frame; if that ever stopped holding,
 * frames would stay valid and receivers would copy instead of viewing.
 */
function encodeTensor(t: Tensor, allocateForWrite: AllocateForWrite): undefined {
  const dims = 2 + 4 * t.ndim; // dtype, ndim, dims
  const bytes = t.byteLength;
  const length = dims + 1 + TENSOR_PADDING + bytes;
  const header = extHeaderBytes(length);
  const { target, position } = allocateForWrite(header + length);
  const pad = (8 - ((position + header + dims + 1) % 8)) % 8;
  const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
  let p = position;
  if (header === 2) target[p++] = 0xd4 + Math.log2(length);
  else if (header === 3) {
    target[p++] = 0xc7;
    target[p++] = length;
  } else if (header === 4) {
    target[p++] = 0xc8;
    view.setUint16(p, length);
    p += 2;
  } else {
    target[p++] = 0xc9;
    view.setUint32(p, length);
    p += 4;
  }
  target[p++] = TENSOR_EXT_TYPE;
  target[p++] = DTYPE_CODES[t.dtype];
  target[p++] = t.ndim;
  for (const dim of t.shape) {
    view.setUint32(p, dim, true);
    p += 4;
  }
  target[p++] = pad;
  target.fill(0, p, p + pad);
  p += pad;
  target.set(new Uint8Array(t.data.buffer, t.data.byteOffset, bytes), p);
  if (!LITTLE_ENDIAN) swapBytes(target.subarray(p, p + bytes), t.data.BYTES_PER_ELEMENT);
  p += bytes;
  target.fill(0, p, p + TENSOR_PADDING - pad);
  return undefined;
}

function badTensor(detail: string): ProtocolError {
  return new ProtocolError('bad-tensor', `bad tensor: ${detail}`);
}

/**
 * `bytes` is a view into the received frame. By default the elements are copied exactly once, into a fresh
 * ArrayBuffer that the tensor owns: the frame may sit at any byte offset (a Float32Array view on it could be
 * unaligned, which throws), it may be a slice of Node's shared Buffer pool (a view would keep unrelated data alive and
 * expose it), and a worker transfers tensors to its threads, which transfers the whole underlying ArrayBuffer. A
 * decode with `tensorViews` (the coordinator's, of worker frames) instead views tensors of at least MIN_VIEW_BYTES
 * where they lie in the frame when they are aligned there — the frame's own memory, not the pool's at that size.
 */
function decodeTensor(bytes: Uint8Array): Tensor {
  if (bytes.length < 2) throw badTensor('header shorter than 2 bytes');
  const dtype = DTYPE_BY_CODE[bytes[0]!];
  if (dtype === undefined) throw badTensor(`unknown dtype code ${bytes[0]!}`);
  const ndim = bytes[1]!;
  if (ndim > MAX_DIMS) throw badTensor(`${ndim} dims (at most ${MAX_DIMS})`);
  const dims = 2 + 4 * ndim;
  if (bytes.length < dims + 1 + TENSOR_PADDING) throw badTensor(`header and padding need ${dims + 1 + TENSOR_PADDING} bytes, extension has ${bytes.length}`);
  const pad = bytes[dims]!;
  if (pad > TENSOR_PADDING) throw badTensor(`${pad} padding bytes before the elements (at most ${TENSOR_PADDING})`);
  const header = dims + 1 + pad;
  const view = new DataView(bytes.buffer, bytes.byteOffset, dims);
  const shape: number[] = [];
  let size = 1;
  for (let i = 0; i < ndim; i++) {
    const dim = view.getUint32(2 + 4 * i, true);
    shape.push(dim);
    size *= dim; // float product: exact below 2^53, and anything larger cannot match a byte count
  }
  const width = bytesPerElement(dtype);
  const dataBytes = bytes.length - dims - 1 - TENSOR_PADDING;
  if (size * width !== dataBytes) {
    throw badTensor(`${dtype} shape [${shape.join(',')}] needs ${size * width} bytes, got ${dataBytes}`);
  }
  const shared = dtype === 'float32' && sharedTensorBytes !== null && dataBytes >= sharedTensorBytes;
  const at = bytes.byteOffset + header;
  if (viewing && !shared && dataBytes >= MIN_VIEW_BYTES && at % width === 0 && LITTLE_ENDIAN && bytes.buffer instanceof ArrayBuffer) {
    tensorViews++;
    switch (dtype) {
      case 'float32':
        return new Tensor(dtype, new Float32Array(bytes.buffer, at, size), shape);
      case 'int32':
        return new Tensor(dtype, new Int32Array(bytes.buffer, at, size), shape);
      case 'uint8':
        return new Tensor(dtype, new Uint8Array(bytes.buffer, at, size), shape);
    }
  }
  // The one copy. Not bytes.slice(): when msgpackr is fed a Node Buffer directly, `bytes` is a
  // Buffer, whose slice() returns a view of the same memory. Large float32 tensors land in a SharedArrayBuffer when
  // this process aggregates with kernel threads (setSharedTensorDecoding), so the helpers read them in place.
  tensorCopies++;
  const own = new Uint8Array(shared ? new SharedArrayBuffer(dataBytes) : new ArrayBuffer(dataBytes));
  own.set(bytes.subarray(header, header + dataBytes));
  if (!LITTLE_ENDIAN) swapBytes(own, width);
  switch (dtype) {
    case 'float32':
      return new Tensor(dtype, new Float32Array(own.buffer), shape);
    case 'int32':
      return new Tensor(dtype, new Int32Array(own.buffer), shape);
    case 'uint8':
      return new Tensor(dtype, own, shape);
  }
}

let sharedTensorBytes: number | null = null;
/** Tensors at least this large may be viewed in their frame (DecodeOptions.tensorViews); smaller ones are copied. */
export const MIN_VIEW_BYTES = 64 * 1024;
/** Set for the duration of one decodeMessage call with tensorViews (msgpackr's extension hook takes no options). */
let viewing = false;
let tensorViews = 0;
let tensorCopies = 0;

/** Tensors decoded so far in this process: viewed in their frame, and copied (for tests that count copies). */
export function tensorDecodeCounts(): { views: number; copies: number } {
  return { views: tensorViews, copies: tensorCopies };
}

/**
 * From now on, decoded float32 tensors of at least `minBytes` bytes are copied into SharedArrayBuffers instead of
 * ArrayBuffers (null: never, the default). For a coordinator whose aggregation kernels run on helper threads
 * (docs/kernels.md, "Threads"); not for a worker, which transfers its tensors' buffers to its own threads.
 */
export function setSharedTensorDecoding(minBytes: number | null): void {
  sharedTensorBytes = minBytes;
}

// msgpackr calls `pack` with an allocator as its second argument (its own Date and Set extensions write through it);
// its typings declare only the one-argument form, which returns the bytes to copy in.
addExtension({ Class: Tensor, type: TENSOR_EXT_TYPE, pack: encodeTensor as unknown as (value: unknown) => Uint8Array, unpack: decodeTensor });

const packr = new Packr({
  useRecords: false, // plain maps: any MessagePack decoder can read our frames
  mapsAsObjects: true,
  moreTypes: false,
  copyBuffers: true, // decoded bin (blob chunks) must own its memory, not view the frame
});

// ---- structural pre-scan ---------------------------------------------------------------------

function malformed(detail: string): ProtocolError {
  return new ProtocolError('malformed', `malformed frame: ${detail}`);
}

/**
 * One iterative pass over the MessagePack structure before msgpackr sees it. It guarantees
 * exactly one value with no trailing bytes, no truncation, string map keys, nesting of at most
 * MAX_FRAME_DEPTH, and only the extensions we emit (tensors, and msgpackr's fixext "undefined").
 * This keeps hostile frames away from msgpackr's recursion (a stack overflow mid-decode can
 * leave its key cache half-written) and from its records / structured-clone / string-bundle
 * extensions, which plain-map frames never need.
 */
function scanFrame(b: Uint8Array): void {
  const n = b.length;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  // Items still to read in each open container; maps count keys and values separately.
  const remaining = new Float64Array(MAX_FRAME_DEPTH + 1);
  const inMap = new Uint8Array(MAX_FRAME_DEPTH + 1);
  let depth = 0;
  remaining[0] = 1;
  let p = 0;
  const need = (bytes: number): void => {
    if (p + bytes > n) throw malformed('truncated');
  };
  for (;;) {
    while (depth > 0 && remaining[depth] === 0) depth--;
    if (depth === 0 && remaining[0] === 0) break;
    const isKey = inMap[depth] === 1 && remaining[depth]! % 2 === 0; // maps alternate key, value
    remaining[depth] -= 1;
    need(1);
    const t = b[p]!;
    if (isKey && !((t >= 0xa0 && t <= 0xbf) || (t >= 0xd9 && t <= 0xdb))) throw malformed('map key is not a string');
    let skip = 0; // bytes after the token byte
    let open = -1; // item count of a container starting here
    let map = false;
    if (t <= 0x7f || t >= 0xe0 || t === 0xc0 || t === 0xc2 || t === 0xc3) skip = 0;
    else if (t <= 0x8f) {
      open = (t & 0x0f) * 2;
      map = true;
    } else if (t <= 0x9f) open = t & 0x0f;
    else if (t <= 0xbf) skip = t & 0x1f;
    else {
      switch (t) {
        case 0xc4: // bin 8
        case 0xd9: // str 8
          need(2);
          skip = 1 + b[p + 1]!;
          break;
        case 0xc5:
        case 0xda:
          need(3);
          skip = 2 + view.getUint16(p + 1);
          break;
        case 0xc6:
        case 0xdb:
          need(5);
          skip = 4 + view.getUint32(p + 1);
          break;
        case 0xc7: // ext 8/16/32: length, type, payload
        case 0xc8:
        case 0xc9: {
          const lenBytes = t === 0xc7 ? 1 : t === 0xc8 ? 2 : 4;
          need(2 + lenBytes);
          const len = lenBytes === 1 ? b[p + 1]! : lenBytes === 2 ? view.getUint16(p + 1) : view.getUint32(p + 1);
          if (b[p + 1 + lenBytes] !== TENSOR_EXT_TYPE) throw malformed(`unsupported extension type ${b[p + 1 + lenBytes]!}`);
          skip = lenBytes + 1 + len;
          break;
        }
        case 0xd4: // fixext 1, 2, 4, 8, 16: type, payload
        case 0xd5:
        case 0xd6:
        case 0xd7:
        case 0xd8: {
          need(2);
          const len = 1 << (t - 0xd4);
          const type = b[p + 1]!;
          // Type 0 is msgpackr's `undefined` (an optional field set to undefined).
          if (type !== TENSOR_EXT_TYPE && !(type === 0 && len === 1)) throw malformed(`unsupported extension type ${type}`);
          skip = 1 + len;
          break;
        }
        case 0xca:
          skip = 4;
          break;
        case 0xcb:
          skip = 8;
          break;
        case 0xcc:
        case 0xd0:
          skip = 1;
          break;
        case 0xcd:
        case 0xd1:
          skip = 2;
          break;
        case 0xce:
        case 0xd2:
          skip = 4;
          break;
        case 0xcf:
        case 0xd3:
          skip = 8;
          break;
        case 0xdc:
        case 0xde:
          need(3);
          open = view.getUint16(p + 1) * (t === 0xde ? 2 : 1);
          map = t === 0xde;
          skip = 2;
          break;
        case 0xdd:
        case 0xdf:
          need(5);
          open = view.getUint32(p + 1) * (t === 0xdf ? 2 : 1);
          map = t === 0xdf;
          skip = 4;
          break;
        default: // only 0xc1, "never used"
          throw malformed(`invalid token 0x${t.toString(16)}`);
      }
    }
    need(1 + skip);
    p += 1 + skip;
    if (open > 0) {
      // Every item takes at least one byte: refuse impossible counts before anyone allocates.
      if (open > n - p) throw malformed('truncated');
      if (depth === MAX_FRAME_DEPTH) throw malformed(`nested deeper than ${MAX_FRAME_DEPTH}`);
      depth++;
      remaining[depth] = open;
      inMap[depth] = map ? 1 : 0;
    }
  }
  if (p !== n) throw malformed(`${n - p} trailing bytes after the message`);
}

// ---- public API ------------------------------------------------------------------------------

export interface DecodeOptions {
  /** Largest accepted frame in bytes (default DEFAULT_MAX_FRAME_BYTES), checked before decoding. */
  maxBytes?: number;
  /** Who sent the frame; types the other side sends are rejected as 'unknown-type'. */
  direction?: Direction;
  /**
   * Tensors of at least MIN_VIEW_BYTES that are aligned in the frame (as encodeMessage lays them out) view the frame
   * instead of owning a copy: the caller hands over the frame, which must not change afterwards and whose memory the
   * tensors keep alive. Default false. Not for tensors whose buffer is later transferred (a worker's, to its threads).
   */
  tensorViews?: boolean;
}

export type DecodeResult<M extends Message = Message> = { ok: true; message: M } | { ok: false; error: ProtocolError };

export interface EncodeOptions {
  /** Refuse ('oversize') to produce a frame larger than this, e.g. the peer's welcome.maxFrameBytes. */
  maxBytes?: number;
  /**
   * The message was built by the sender from parts it already checked (a coordinator's lease: items validated at
   * submission): skip validating it again. Validating a lease cost the coordinator ~8 µs, its largest cost per shard
   * after the socket write. The receiver validates every frame whatever the sender did.
   */
  trusted?: boolean;
}

/**
 * Validates then encodes a message. Throws ProtocolError for an invalid message, so an invalid
 * frame is never sent. The result may be a view into msgpackr's shared output buffer: send or
 * copy it, but do not transfer its `.buffer`.
 */
export function encodeMessage(message: Message, options: EncodeOptions = {}): Uint8Array {
  if (options.trusted !== true) parseMessage(message);
  let frame: Uint8Array;
  try {
    const buf = packr.pack(message);
    frame = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  } catch (e) {
    throw new ProtocolError('malformed', `could not encode message: ${e instanceof Error ? e.message : typeof e}`, { cause: e });
  }
  if (options.maxBytes !== undefined && frame.byteLength > options.maxBytes) {
    throw new ProtocolError('oversize', `${message.type} frame of ${frame.byteLength} bytes exceeds the ${options.maxBytes}-byte limit`);
  }
  return frame;
}

/** A plain Uint8Array view of the frame (never the caller's object: msgpackr caches a DataView on it). */
function frameBytes(frame: unknown): Uint8Array {
  if (frame instanceof Uint8Array) return new Uint8Array(frame.buffer, frame.byteOffset, frame.byteLength);
  if (frame instanceof ArrayBuffer) return new Uint8Array(frame);
  throw malformed(`expected Uint8Array, Buffer or ArrayBuffer, got ${describeValue(frame)}`);
}

/**
 * Decodes and validates one untrusted frame. Throws only ProtocolError: 'malformed',
 * 'oversize', 'bad-tensor', 'unknown-type', 'invalid-field', 'non-finite', 'shape-mismatch'.
 * Work is linear in the frame size; tensors are copied once into buffers they own (or viewed: tensorViews).
 */
export function decodeMessage(frame: unknown, options: DecodeOptions & { direction: 'worker' }): WorkerMessage;
export function decodeMessage(frame: unknown, options: DecodeOptions & { direction: 'coordinator' }): CoordinatorMessage;
export function decodeMessage(frame: unknown, options?: DecodeOptions): Message;
export function decodeMessage(frame: unknown, options: DecodeOptions = {}): Message {
  try {
    const bytes = frameBytes(frame);
    const maxBytes = options.maxBytes ?? DEFAULT_MAX_FRAME_BYTES;
    if (bytes.byteLength > maxBytes) {
      throw new ProtocolError('oversize', `frame of ${bytes.byteLength} bytes exceeds the ${maxBytes}-byte limit`);
    }
    if (bytes.byteLength === 0) throw malformed('empty');
    scanFrame(bytes);
    let value: unknown;
    viewing = options.tensorViews === true;
    try {
      value = packr.unpack(bytes);
    } finally {
      viewing = false;
    }
    return parseMessage(value, options.direction);
  } catch (e) {
    if (isProtocolError(e)) throw e;
    // Anything else (msgpackr errors, a RangeError) means a bad frame, never a crash of the caller.
    throw new ProtocolError('malformed', `malformed frame: ${e instanceof Error ? e.message : typeof e}`, { cause: e });
  }
}

/** Like decodeMessage, but returns the error instead of throwing. */
export function safeDecodeMessage(frame: unknown, options: DecodeOptions & { direction: 'worker' }): DecodeResult<WorkerMessage>;
export function safeDecodeMessage(frame: unknown, options: DecodeOptions & { direction: 'coordinator' }): DecodeResult<CoordinatorMessage>;
export function safeDecodeMessage(frame: unknown, options?: DecodeOptions): DecodeResult;
export function safeDecodeMessage(frame: unknown, options: DecodeOptions = {}): DecodeResult {
  try {
    return { ok: true, message: decodeMessage(frame, options) };
  } catch (e) {
    // decodeMessage only throws ProtocolError; the fallback keeps the result type honest.
    const error = isProtocolError(e) ? e : new ProtocolError('malformed', 'malformed frame', { cause: e });
    return { ok: false, error };
  }
}
