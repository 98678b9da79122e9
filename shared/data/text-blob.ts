// A score job's text columns as one blob (docs/architecture.md, "Binary job upload"): `fedpool score` uploads its
// prompts and responses this way, and the coordinator reads each shard's strings straight from the blob file, so a
// large text job is never a JSON body of millions of strings.
//
// Layout, little-endian: "FPT1", u32 n, then 2n u32 end offsets (prompt 0, response 0, prompt 1, …) into the data,
// then the data: the 2n strings in UTF-8, back to back. Lone surrogates encode as U+FFFD, as in any UTF-8 transport.

const MAGIC = [0x46, 0x50, 0x54, 0x31]; // "FPT1"
const HEADER_BYTES = 8;

export class TextBlobError extends Error {}

/** Encodes n prompts and n responses as one text blob. */
export function encodeTextBlob(prompts: readonly string[], responses: readonly string[]): Uint8Array {
  const n = prompts.length;
  if (responses.length !== n) throw new TextBlobError(`${n} prompts but ${responses.length} responses`);
  const encoder = new TextEncoder();
  const parts: Uint8Array[] = [];
  const ends = new Uint32Array(2 * n);
  let end = 0;
  for (let i = 0; i < n; i++) {
    for (const [k, s] of [[2 * i, prompts[i] as string], [2 * i + 1, responses[i] as string]] as const) {
      const bytes = encoder.encode(s);
      end += bytes.byteLength;
      if (end > 0xffffffff) throw new TextBlobError('text columns over 4 GiB');
      ends[k] = end;
      parts.push(bytes);
    }
  }
  const dataAt = textDataOffset(n);
  const out = new Uint8Array(dataAt + end);
  out.set(MAGIC, 0);
  new DataView(out.buffer).setUint32(4, n, true);
  out.set(new Uint8Array(ends.buffer), HEADER_BYTES);
  let at = dataAt;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Where the data of a text blob of n items begins. */
export function textDataOffset(n: number): number {
  return HEADER_BYTES + 8 * n;
}

/** The item count a text blob's first 8 bytes declare; throws TextBlobError when they are not a text blob's. */
export function textBlobItems(header: Uint8Array): number {
  if (header.byteLength < HEADER_BYTES || MAGIC.some((b, i) => header[i] !== b)) throw new TextBlobError('not a text blob (it must start with "FPT1")');
  return new DataView(header.buffer, header.byteOffset, header.byteLength).getUint32(4, true);
}

/** Reads `length` bytes of a blob from `offset`. */
export type ReadRange = (offset: number, length: number) => Uint8Array;

/** The byte range [start, end) of items [from, to) in the data part, from the end offsets. */
export function textItemsRange(read: ReadRange, n: number, from: number, to: number): { start: number; ends: Uint32Array } {
  // The end offsets of strings 2·from − 1 … 2·to − 1 (the one before the first gives its start).
  const first = Math.max(0, 2 * from - 1);
  const raw = read(HEADER_BYTES + 4 * first, 4 * (2 * to - first));
  if (raw.byteLength !== 4 * (2 * to - first) || to > n) throw new TextBlobError('shorter than its item count');
  const all = new Uint32Array(raw.slice().buffer);
  const start = from === 0 ? 0 : (all[0] as number);
  return { start, ends: from === 0 ? all : all.subarray(1) };
}

/** Items [from, to) of a text blob of n items: their prompts and responses. */
export function readTextItems(read: ReadRange, n: number, from: number, to: number): { prompts: string[]; responses: string[] } {
  const { start, ends } = textItemsRange(read, n, from, to);
  const endAll = to > from ? (ends[ends.length - 1] as number) : start;
  const data = read(textDataOffset(n) + start, endAll - start);
  if (data.byteLength !== endAll - start) throw new TextBlobError('shorter than its offsets say');
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const prompts: string[] = [];
  const responses: string[] = [];
  let at = 0;
  for (let k = 0; k < ends.length; k++) {
    const e = (ends[k] as number) - start;
    const s = decoder.decode(data.subarray(at, e));
    if (k % 2 === 0) prompts.push(s);
    else responses.push(s);
    at = e;
  }
  return { prompts, responses };
}
