import type * as z from 'zod';

/**
 * The one error type the wire protocol throws. Decoding untrusted frames must never surface
 * anything else, so callers can `catch` once and answer the peer with an `error` message.
 */

export const PROTOCOL_ERROR_CODES = [
  'oversize', // frame larger than the receiver's limit (checked before decoding)
  'malformed', // not a frame, or not valid MessagePack / not exactly one value
  'unknown-type', // `type` is not a message type (or not one this direction may send)
  'invalid-field', // a field has the wrong type, range or an unknown key
  'non-finite', // NaN or ±Infinity in a float tensor that must be finite
  'shape-mismatch', // a tensor's shape differs from what the receiver expects
  'bad-tensor', // a tensor extension whose header disagrees with its bytes
  'version', // peer speaks a protocol version we do not
  'handler', // a message handler threw: wrapped so socket listeners never throw (see events.ts)
] as const;

export type ProtocolErrorCode = (typeof PROTOCOL_ERROR_CODES)[number];

export interface ProtocolErrorOptions {
  /** The offending field, e.g. `payload.update` or `task.items[3].id`. */
  path?: string;
  cause?: unknown;
}

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  readonly code: ProtocolErrorCode;
  readonly path?: string;

  constructor(code: ProtocolErrorCode, message: string, options: ProtocolErrorOptions = {}) {
    // Messages end up in logs and in `error` frames: keep them to one line.
    super(oneLine(message), options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options.path !== undefined) this.path = options.path;
  }
}

export function isProtocolError(e: unknown): e is ProtocolError {
  return e instanceof ProtocolError;
}

const MAX_MESSAGE_CHARS = 500;

/** Collapse whitespace runs (incl. newlines) and cap the length, so a message is always one line. */
export function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > MAX_MESSAGE_CHARS ? `${flat.slice(0, MAX_MESSAGE_CHARS - 1)}…` : flat;
}

/**
 * A short, safe description of a value for error messages. Strings are described by type only,
 * so attacker-controlled text is never echoed into logs (use `quote` where the value helps).
 */
export function describeValue(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'undefined':
      return 'undefined';
    case 'number':
      return String(value); // numbers (incl. NaN / Infinity) are safe and informative
    case 'boolean':
      return String(value);
    case 'string':
      return 'string';
    case 'bigint':
      return 'bigint';
    case 'function':
      return 'function';
    case 'symbol':
      return 'symbol';
    default:
      break;
  }
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'object') {
    // Use the prototype's constructor: an own `constructor` key on decoded data is just data.
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto === null || proto === Object.prototype) return 'object';
    const ctor: unknown = typeof proto === 'object' ? Reflect.get(proto, 'constructor') : undefined;
    const name: unknown = typeof ctor === 'function' ? ctor.name : undefined;
    if (typeof name !== 'string' || name === '') return 'object';
    // Tensors describe themselves ("float32 Tensor [2,3]"); duck-typed to keep errors.ts free
    // of a circular import with tensor.ts.
    const describe: unknown = Reflect.get(value, 'describe');
    if (name === 'Tensor' && typeof describe === 'function') {
      const text: unknown = describe.call(value);
      if (typeof text === 'string') return text;
    }
    return name.slice(0, 40);
  }
  return typeof value;
}

/** JSON-quote a (possibly hostile) string for a message, truncated. */
export function quote(text: string, max = 40): string {
  return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text);
}

// ---- zod issues → ProtocolError ---------------------------------------------------------------

type Path = readonly PropertyKey[];

/** `task.items[3].id` style. */
function formatPath(path: Path): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else out += out === '' ? String(key) : `.${String(key)}`;
  }
  return out;
}

/** Walks `path` through own properties; `found` is false when a key is absent. */
function valueAt(root: unknown, path: Path): { found: boolean; value: unknown } {
  let current: unknown = root;
  for (const key of path) {
    if (typeof current !== 'object' || current === null || !Object.prototype.hasOwnProperty.call(current, key)) {
      return { found: false, value: undefined };
    }
    current = Reflect.get(current, key);
  }
  return { found: true, value: current };
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

function gotText(value: unknown): string {
  return typeof value === 'string' ? quote(value) : describeValue(value);
}

/** Schemas tag custom issues with `params.protocolCode` when 'invalid-field' is not the right code. */
function protocolCodeOf(issue: z.core.$ZodIssue): ProtocolErrorCode | undefined {
  if (issue.code !== 'custom' || issue.params === undefined) return undefined;
  const code: unknown = issue.params['protocolCode'];
  return code === 'non-finite' || code === 'shape-mismatch' ? code : undefined;
}

/**
 * Turns the first zod issue into a one-line ProtocolError naming the field, e.g.
 * `invalid field "payload.update": expected float32 Tensor, got string`. `input` is the value
 * that was parsed; it is only read to say what was found at the path.
 */
export function fromZodIssue(issue: z.core.$ZodIssue | undefined, input: unknown): ProtocolError {
  if (issue === undefined) return new ProtocolError('invalid-field', 'invalid message'); // zod always reports one
  let path: Path = issue.path;
  const at = (): { found: boolean; value: unknown } => valueAt(input, path);
  let detail: string;
  switch (issue.code) {
    case 'unrecognized_keys':
      path = [...path, issue.keys[0] ?? '?'];
      detail = 'unknown field';
      break;
    case 'invalid_type': {
      const { found, value } = at();
      detail = found ? `expected ${issue.expected}, got ${describeValue(value)}` : 'missing required field';
      break;
    }
    case 'invalid_value':
      detail = `expected ${issue.values.map((v) => JSON.stringify(v)).join(' | ')}, got ${gotText(at().value)}`;
      break;
    case 'invalid_union': {
      const { found, value } = at();
      detail = found ? `${lowerFirst(issue.message)}, got ${gotText(value)}` : 'missing required field';
      break;
    }
    case 'custom': {
      const { found, value } = at();
      if (!issue.message.startsWith('expected ')) detail = issue.message;
      else detail = found && value !== undefined ? `${issue.message}, got ${describeValue(value)}` : 'missing required field';
      break;
    }
    default:
      detail = lowerFirst(issue.message);
  }
  const where = formatPath(path);
  const code = protocolCodeOf(issue) ?? 'invalid-field';
  const options = where === '' ? {} : { path: where };
  if (code === 'non-finite') return new ProtocolError(code, `non-finite value in "${where}" ${detail}`, options);
  if (code === 'shape-mismatch') return new ProtocolError(code, `shape mismatch in "${where}": ${detail}`, options);
  return new ProtocolError(code, where === '' ? `invalid message: ${detail}` : `invalid field "${where}": ${detail}`, options);
}
