// Columns of a job's items built as a large body arrives (docs/security.md, "Memory and the event loop"). Strings are
// kept as UTF-8 bytes and end offsets, not as millions of heap objects that every full garbage collection would trace
// (about 170 ms for 5 million ids, a stop of the whole coordinator); and both kinds grow in blocks, so no step ever
// copies what came before (doubling one 64 MB array stopped the loop for 25–40 ms).

/** Strings by index: an array as it came (a job's columns form), or a StringColumn. */
export interface Strings {
  readonly length: number;
  slice(start: number, end: number): string[];
}

/** Float32 values by index: one array (the columns form), or a FloatColumn. */
export interface Floats {
  readonly length: number;
  slice(start: number, end: number): Float32Array;
}

/** Strings per block, and the bytes after which a block takes no more. */
const BLOCK_STRINGS = 65_536;
const BLOCK_BYTES = 8 * 1024 * 1024;

interface StringBlock {
  /** Index of its first string in the column. */
  first: number;
  bytes: Buffer;
  used: number;
  /** End offset of each of its strings in `bytes`. */
  ends: Float64Array;
  count: number;
}

/** The index of the last block whose `first` is ≤ i (blocks sorted by `first`). */
function blockOf<B extends { first: number }>(blocks: readonly B[], i: number): number {
  let lo = 0;
  let hi = blocks.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if ((blocks[mid] as B).first <= i) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

export class StringColumn implements Strings {
  private readonly blocks: StringBlock[] = [];
  private count = 0;
  /** Strings that UTF-8 cannot hold as they are (lone surrogates), by index; kept whole, as rare as they are. */
  private readonly odd = new Map<number, string>();

  get length(): number {
    return this.count;
  }

  push(s: string): void {
    const i = this.count;
    // At most 3 bytes per UTF-16 unit.
    const most = s.isWellFormed() ? s.length * 3 : 0;
    let block = this.blocks[this.blocks.length - 1];
    if (block === undefined || block.count === BLOCK_STRINGS || (block.used > 0 && block.used + most > BLOCK_BYTES)) {
      // Small at first (a job of ten items is ten strings), grown by doubling within the block's limits.
      block = { first: i, bytes: Buffer.allocUnsafe(Math.min(BLOCK_BYTES, Math.max(most, 1024))), used: 0, ends: new Float64Array(64), count: 0 };
      this.blocks.push(block);
    }
    if (block.count === block.ends.length) {
      const ends = new Float64Array(Math.min(BLOCK_STRINGS, block.ends.length * 2));
      ends.set(block.ends);
      block.ends = ends;
    }
    if (most === 0 && s.length > 0) this.odd.set(i, s);
    else {
      if (block.used + most > block.bytes.length) {
        // Within one block: at most BLOCK_BYTES copied (or one long string's bytes, in a block of its own).
        const grown = Buffer.allocUnsafe(Math.max(block.used + most, Math.min(BLOCK_BYTES, block.bytes.length * 2)));
        block.bytes.copy(grown, 0, 0, block.used);
        block.bytes = grown;
      }
      block.used += block.bytes.write(s, block.used, 'utf8');
    }
    block.ends[block.count++] = block.used;
    this.count = i + 1;
  }

  at(i: number): string {
    if (!(i >= 0 && i < this.count)) throw new RangeError(`index ${i} outside a column of ${this.count}`);
    return this.read(this.blocks[blockOf(this.blocks, i)] as StringBlock, i);
  }

  private read(block: StringBlock, i: number): string {
    const odd = this.odd.get(i);
    if (odd !== undefined) return odd;
    const k = i - block.first;
    return block.bytes.toString('utf8', k === 0 ? 0 : (block.ends[k - 1] as number), block.ends[k] as number);
  }

  /** The strings from `start` to `end` (exclusive), as an array. */
  slice(start: number, end: number): string[] {
    const from = Math.max(0, start);
    const to = Math.min(end, this.count);
    const out: string[] = [];
    if (from >= to) return out;
    let b = blockOf(this.blocks, from);
    let block = this.blocks[b] as StringBlock;
    for (let i = from; i < to; i++) {
      while (i >= block.first + block.count) block = this.blocks[++b] as StringBlock;
      out.push(this.read(block, i));
    }
    return out;
  }
}

/** Values per block of a FloatColumn. */
const BLOCK_FLOATS = 1 << 20;

export class FloatColumn implements Floats {
  private readonly blocks: Float32Array[] = [];
  private count = 0;

  get length(): number {
    return this.count;
  }

  /** Appends `values` (any array of numbers). */
  push(values: ArrayLike<number>): void {
    let from = 0;
    while (from < values.length) {
      const at = this.count % BLOCK_FLOATS;
      if (at === 0) this.blocks.push(new Float32Array(this.blocks.length === 0 ? 1024 : BLOCK_FLOATS));
      let block = this.blocks[this.blocks.length - 1] as Float32Array;
      const n = Math.min(values.length - from, BLOCK_FLOATS - at);
      if (at + n > block.length) {
        // Only the first block starts small (a small job's few values) and grows, up to BLOCK_FLOATS.
        const grown = new Float32Array(Math.min(BLOCK_FLOATS, Math.max(at + n, block.length * 2)));
        grown.set(block);
        block = grown;
        this.blocks[this.blocks.length - 1] = grown;
      }
      for (let j = 0; j < n; j++) block[at + j] = values[from + j] as number;
      from += n;
      this.count += n;
    }
  }

  /** Values `start` to `end` (exclusive), copied into one array. */
  slice(start: number, end: number): Float32Array {
    const from = Math.max(0, start);
    const to = Math.min(end, this.count);
    const out = new Float32Array(Math.max(0, to - from));
    for (let i = from; i < to; ) {
      const block = this.blocks[Math.floor(i / BLOCK_FLOATS)] as Float32Array;
      const at = i % BLOCK_FLOATS;
      const n = Math.min(to - i, BLOCK_FLOATS - at);
      out.set(block.subarray(at, at + n), i - from);
      i += n;
    }
    return out;
  }
}
