// An incremental JSON parser for large request bodies (docs/security.md, "Memory and the event loop"): fed the body
// chunk by chunk as it arrives, it builds the value as it goes, so no step holds the event loop for long, the raw
// bytes are dropped as soon as they are parsed, and the limits on depth and entries refuse a body at the first byte
// past them. Small values (most of a job body: one item, one id) are cut out of the buffer and handed to the native
// JSON.parse; only containers larger than that, and long strings, are assembled here.

/** A complete value of at most this many bytes within the buffered input is parsed natively, in one piece. */
export const NATIVE_VALUE_BYTES = 64 * 1024;

export class JsonSyntaxError extends Error {}

export class JsonLimitError extends Error {
  constructor(
    readonly limit: 'depth' | 'entries',
    message: string,
  ) {
    super(message);
  }
}

export interface JsonStreamLimits {
  /** Deepest nesting of objects and arrays (the top-level container is depth 1). */
  maxDepth: number;
  /** Most entries (elements or members) any one array or object may have. */
  maxEntries: number;
  /** Values up to this size are parsed natively (default NATIVE_VALUE_BYTES; tests make it small). */
  nativeValueBytes?: number;
  /**
   * Elements of the array under this member of the root object are handed to a collector one by one instead of being
   * kept (a job's row-form items become columns as they arrive: server/row-items.ts). Only an array built entry by
   * entry is collected; one small enough to be parsed natively stays an array.
   */
  collect?: { key: string; open: () => ArrayCollector };
}

/** Takes the elements of one collected array, in order; what `finish` returns stands in the array's place. */
export interface ArrayCollector {
  add(value: unknown): void;
  finish(): unknown;
}

interface Frame {
  value: Record<string, unknown> | unknown[];
  array: boolean;
  key: string | undefined;
  entries: number;
  collector?: ArrayCollector;
}

/** A string or number longer than NATIVE_VALUE_BYTES, still arriving: its bytes, kept as received. */
interface Pending {
  kind: 'string' | 'number';
  /** Its body offset (for error messages). */
  start: number;
  pieces: Buffer[];
  escaped: boolean;
  hasEscape: boolean;
  key: boolean;
}

// What the next token may be.
const VALUE = 0; // a value (the root, an element after '[' or ',', a member's value after ':')
const FIRST = 1; // just after '[' or '{': the first entry or the closing bracket
const KEY = 2; // a member's name
const COLON = 3;
const NEXT = 4; // after an entry: ',' or the closing bracket
const DONE = 5; // the root value is complete

const NEED_MORE = -1;
const TOO_BIG = -2;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function isNumberByte(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2b || c === 0x2e || c === 0x65 || c === 0x45;
}

function describe(c: number): string {
  return c >= 0x21 && c <= 0x7e ? `'${String.fromCharCode(c)}'` : `byte 0x${c.toString(16).padStart(2, '0')}`;
}

function setMember(target: Record<string, unknown>, key: string, value: unknown): void {
  // As JSON.parse does: "__proto__" is an own property, never the prototype.
  if (key === '__proto__') Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true });
  else target[key] = value;
}

/**
 * Feed `push(chunk)` the body as it arrives and call `end()` after the last chunk for the value. The work is
 * proportional to the bytes pushed (a value cut by a chunk's end is scanned again, at most once per
 * NATIVE_VALUE_BYTES that arrive after it). Accepts exactly what JSON.parse accepts;
 * the value is the same, except that it is refused as soon as it is nested deeper than `maxDepth` or an array or
 * object has more than `maxEntries` entries (JsonLimitError); malformed input throws JsonSyntaxError.
 */
export class JsonStreamParser {
  private readonly stack: Frame[] = [];
  private state = VALUE;
  private root: unknown;
  /** Bytes of a value that began but did not end in the buffered input (less than NATIVE_VALUE_BYTES). */
  private tail: Buffer | undefined;
  /**
   * Chunks that arrived after `tail`, held until there are NATIVE_VALUE_BYTES of them: the tail is scanned again from
   * its start each time, so a sender trickling a byte at a time must not make each byte cost a tail's scan.
   */
  private waiting: Buffer[] = [];
  private waitingBytes = 0;
  private pending: Pending | undefined;
  /** The body offset of the buffer being parsed (for error messages). */
  private offset = 0;
  /** Commas per nesting level while scanning a value for its end. */
  private readonly commas: Float64Array;
  private readonly native: number;

  constructor(private readonly limits: JsonStreamLimits) {
    this.commas = new Float64Array(limits.maxDepth + 2);
    this.native = Math.max(1, limits.nativeValueBytes ?? NATIVE_VALUE_BYTES);
  }

  push(chunk: Buffer): void {
    let buf = chunk;
    if (this.pending !== undefined) {
      const at = this.continuePending(buf, false);
      if (at === NEED_MORE) {
        this.offset += buf.byteLength;
        return;
      }
      this.offset += at;
      buf = buf.subarray(at);
    }
    if (this.tail !== undefined) {
      this.waiting.push(buf);
      this.waitingBytes += buf.byteLength;
      if (this.waitingBytes < this.native) return;
      // `offset` is already the tail's.
      buf = Buffer.concat([this.tail, ...this.waiting]);
      this.tail = undefined;
      this.waiting = [];
      this.waitingBytes = 0;
    }
    this.run(buf, false);
  }

  /** The value, once the whole body was pushed. */
  end(): unknown {
    if (this.pending !== undefined) this.continuePending(Buffer.alloc(0), true);
    if (this.tail !== undefined) {
      const rest = Buffer.concat([this.tail, ...this.waiting]);
      this.tail = undefined;
      this.waiting = [];
      this.run(rest, true);
    }
    if (this.state !== DONE) throw new JsonSyntaxError(`unexpected end of the body at byte ${this.offset}`);
    return this.root;
  }

  private syntax(message: string, at: number): JsonSyntaxError {
    return new JsonSyntaxError(`${message} at byte ${this.offset + at}`);
  }

  private depthError(): JsonLimitError {
    return new JsonLimitError('depth', `nested deeper than ${this.limits.maxDepth} levels`);
  }

  private entriesError(): JsonLimitError {
    return new JsonLimitError('entries', `an array or object has more than ${this.limits.maxEntries} entries`);
  }

  /** Parses `buf` as far as it can; keeps an incomplete value's bytes in `tail` (or `pending`) for the next push. */
  private run(buf: Buffer, final: boolean): void {
    const n = buf.byteLength;
    let p = 0;
    for (;;) {
      while (p < n && isSpace(buf[p] as number)) p++;
      if (p >= n) break;
      const c = buf[p] as number;
      const top = this.stack[this.stack.length - 1];
      if (this.state === DONE) throw this.syntax(`unexpected ${describe(c)} after the end of the value`, p);
      if (this.state === COLON) {
        if (c !== 0x3a) throw this.syntax(`expected ':' but found ${describe(c)}`, p);
        p++;
        this.state = VALUE;
        continue;
      }
      if (this.state === NEXT || this.state === FIRST) {
        const closing = top?.array === true ? 0x5d : 0x7d;
        if (c === closing) {
          p++;
          this.close();
          continue;
        }
        if (this.state === NEXT) {
          if (c !== 0x2c) throw this.syntax(`expected ',' or '${String.fromCharCode(closing)}' but found ${describe(c)}`, p);
          p++;
        }
        this.state = top?.array === true ? VALUE : KEY;
        continue;
      }
      if (this.state === KEY) {
        if (c !== 0x22) throw this.syntax(`expected a member name in double quotes but found ${describe(c)}`, p);
        const at = this.scalar(buf, p, final, true);
        if (at === NEED_MORE) return this.carry(buf, p);
        p = at;
        continue;
      }
      // VALUE
      if (c === 0x7b || c === 0x5b) {
        const depth = this.stack.length + 1;
        const end = this.scanContainer(buf, p, Math.min(n, p + this.native), depth);
        if (end >= 0) {
          this.attach(this.parseSlice(buf, p, end));
          p = end;
          continue;
        }
        if (end === NEED_MORE && !final) return this.carry(buf, p);
        // Larger than NATIVE_VALUE_BYTES (or cut off at the end of the body): built entry by entry.
        const frame: Frame = { value: c === 0x5b ? [] : {}, array: c === 0x5b, key: undefined, entries: 0 };
        const parent = this.stack[0];
        const collect = this.limits.collect;
        if (frame.array && collect !== undefined && this.stack.length === 1 && parent?.array === false && parent.key === collect.key) frame.collector = collect.open();
        this.stack.push(frame);
        this.state = FIRST;
        p++;
        continue;
      }
      const at = this.scalar(buf, p, final, false);
      if (at === NEED_MORE) return this.carry(buf, p);
      p = at;
    }
    this.offset += n;
  }

  private carry(buf: Buffer, from: number): void {
    this.tail = buf.subarray(from);
    this.offset += from;
  }

  /**
   * The end (exclusive) of the object or array starting at `start`, if it ends before `limit`; NEED_MORE if the
   * buffer ended first, TOO_BIG if `limit` came first. Counts depth and entries on the way (the value is then parsed
   * by JSON.parse, which checks everything else).
   */
  private scanContainer(buf: Buffer, start: number, limit: number, depth: number): number {
    const { maxDepth, maxEntries } = this.limits;
    const commas = this.commas;
    let d = 0;
    let inString = false;
    let escaped = false;
    for (let i = start; i < limit; i++) {
      const c = buf[i] as number;
      if (inString) {
        if (escaped) escaped = false;
        else if (c === 0x5c) escaped = true;
        else if (c === 0x22) inString = false;
        continue;
      }
      if (c === 0x22) inString = true;
      else if (c === 0x7b || c === 0x5b) {
        d++;
        if (depth - 1 + d > maxDepth) throw this.depthError();
        commas[d] = 0;
      } else if (c === 0x7d || c === 0x5d) {
        d--;
        if (d === 0) return i + 1;
      } else if (c === 0x2c) {
        // Entries = commas + 1 (a stray comma is JSON.parse's to refuse).
        const k = (commas[d] as number) + 1;
        commas[d] = k;
        if (k >= maxEntries) throw this.entriesError();
      }
    }
    return limit === buf.byteLength ? NEED_MORE : TOO_BIG;
  }

  private parseSlice(buf: Buffer, from: number, to: number): unknown {
    try {
      return JSON.parse(buf.toString('utf8', from, to)) as unknown;
    } catch (e) {
      throw this.syntax(`${e instanceof Error ? e.message : String(e)}, in the value`, from);
    }
  }

  /** A string, number or literal starting at `p`: the offset after it, or NEED_MORE (carry it over). */
  private scalar(buf: Buffer, p: number, final: boolean, key: boolean): number {
    const n = buf.byteLength;
    const c = buf[p] as number;
    if (c === 0x22) {
      let escaped = false;
      let hasEscape = false;
      for (let i = p + 1; i < n; i++) {
        const b = buf[i] as number;
        if (escaped) {
          escaped = false;
          continue;
        }
        if (b === 0x5c) {
          escaped = hasEscape = true;
          continue;
        }
        if (b === 0x22) {
          this.deliver(hasEscape ? this.parseSlice(buf, p, i + 1) : buf.toString('utf8', p + 1, i), key);
          return i + 1;
        }
        if (b < 0x20) throw this.syntax('a control character in a string', i);
      }
      if (final) throw this.syntax('unterminated string', p);
      if (n - p < this.native) return NEED_MORE;
      this.pending = { kind: 'string', start: this.offset + p, pieces: [buf.subarray(p)], escaped, hasEscape, key };
      return n;
    }
    if (key) throw this.syntax(`expected a member name but found ${describe(c)}`, p);
    if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      let i = p + 1;
      while (i < n && isNumberByte(buf[i] as number)) i++;
      if (i === n && !final) {
        if (n - p < this.native) return NEED_MORE;
        this.pending = { kind: 'number', start: this.offset + p, pieces: [buf.subarray(p)], escaped: false, hasEscape: false, key: false };
        return n;
      }
      this.deliver(this.parseSlice(buf, p, i), false);
      return i;
    }
    if (c >= 0x61 && c <= 0x7a) {
      let i = p + 1;
      while (i < n && i - p <= 5 && (buf[i] as number) >= 0x61 && (buf[i] as number) <= 0x7a) i++;
      if (i === n && !final && i - p <= 5) return NEED_MORE;
      const word = buf.toString('latin1', p, i);
      if (word === 'true') this.deliver(true, false);
      else if (word === 'false') this.deliver(false, false);
      else if (word === 'null') this.deliver(null, false);
      else throw this.syntax(`unexpected '${word}'`, p);
      return i;
    }
    throw this.syntax(`unexpected ${describe(c)}`, p);
  }

  /** Continues a long string or number with the next chunk: the offset after its end, or NEED_MORE. */
  private continuePending(buf: Buffer, final: boolean): number {
    const pd = this.pending as Pending;
    const n = buf.byteLength;
    let end = -1;
    if (pd.kind === 'string') {
      for (let i = 0; i < n; i++) {
        const b = buf[i] as number;
        if (pd.escaped) {
          pd.escaped = false;
          continue;
        }
        if (b === 0x5c) {
          pd.escaped = pd.hasEscape = true;
          continue;
        }
        if (b === 0x22) {
          end = i + 1;
          break;
        }
        if (b < 0x20) throw this.syntax('a control character in a string', i);
      }
      if (end < 0 && final) throw this.syntax('unterminated string', 0);
    } else {
      let i = 0;
      while (i < n && isNumberByte(buf[i] as number)) i++;
      if (i < n || final) end = i;
    }
    if (end < 0) {
      pd.pieces.push(buf);
      return NEED_MORE;
    }
    pd.pieces.push(buf.subarray(0, end));
    this.pending = undefined;
    const all = Buffer.concat(pd.pieces);
    let value: unknown;
    if (pd.kind === 'string' && !pd.hasEscape) value = all.toString('utf8', 1, all.byteLength - 1);
    else {
      try {
        value = JSON.parse(all.toString('utf8')) as unknown;
      } catch (e) {
        throw new JsonSyntaxError(`${e instanceof Error ? e.message : String(e)}, in the value at byte ${pd.start}`);
      }
    }
    this.deliver(value, pd.key);
    return end;
  }

  private deliver(value: unknown, key: boolean): void {
    if (key) {
      (this.stack[this.stack.length - 1] as Frame).key = value as string;
      this.state = COLON;
    } else this.attach(value);
  }

  private attach(value: unknown): void {
    const top = this.stack[this.stack.length - 1];
    if (top === undefined) {
      this.root = value;
      this.state = DONE;
      return;
    }
    if (++top.entries > this.limits.maxEntries) throw this.entriesError();
    if (top.collector !== undefined) top.collector.add(value);
    else if (top.array) (top.value as unknown[]).push(value);
    else setMember(top.value as Record<string, unknown>, top.key as string, value);
    this.state = NEXT;
  }

  private close(): void {
    const frame = this.stack.pop() as Frame;
    this.attach(frame.collector !== undefined ? frame.collector.finish() : frame.value);
  }
}
