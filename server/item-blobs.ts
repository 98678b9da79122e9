// The blobs a score job's items are in (docs/architecture.md, "Binary job upload"), checked once at submission so
// every lease can be sliced from them without a check: present, hashing to their name, the right size for the job's
// items, and every value readable (finite features; text offsets in order and valid UTF-8). Read in 1 MiB steps that
// yield to the event loop.
import { isUtf8 } from 'node:buffer';
import { textBlobItems, textDataOffset } from '../shared/data/text-blob.js';
import type { BlobStore } from './blobs.js';

const STEP_BYTES = 1 << 20;

export class ItemBlobError extends Error {}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

async function present(blobs: BlobStore, hash: string, field: string): Promise<number> {
  const size = blobs.size(hash);
  if (size === undefined) throw new ItemBlobError(`${field}: unknown blob ${hash}; upload it first (PUT /api/blobs/${hash})`);
  if (!(await blobs.verify(hash))) throw new ItemBlobError(`${field}: blob ${hash} no longer matches its hash on the coordinator; upload it again`);
  return size;
}

/** A features blob: items × dim float32, every value finite. */
export async function checkFeaturesBlob(blobs: BlobStore, hash: string, items: number, dim: number): Promise<void> {
  const size = await present(blobs, hash, 'columns.features.blob');
  if (size !== items * dim * 4) throw new ItemBlobError(`columns.features.blob: holds ${size} bytes, ${items} items × ${dim} float32 need ${items * dim * 4}`);
  for (let offset = 0; offset < size; offset += STEP_BYTES) {
    const bytes = blobs.readRange(hash, offset, Math.min(STEP_BYTES, size - offset));
    const values = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
    for (let j = 0; j < values.length; j++) {
      if (!Number.isFinite(values[j])) {
        const at = offset / 4 + j;
        throw new ItemBlobError(`columns.features: item ${Math.floor(at / dim)} value ${at % dim} is ${values[j]}`);
      }
    }
    await nextTurn();
  }
}

/**
 * A text blob (shared/data/text-blob.ts) of `items` prompt/response pairs: offsets in order and ending at the blob's
 * end, every string valid UTF-8 on its own. Returns the end offsets (2 per item), which size each shard.
 */
export async function checkTextBlob(blobs: BlobStore, hash: string, items: number): Promise<Uint32Array> {
  const field = 'columns.text.blob';
  const size = await present(blobs, hash, field);
  let n: number;
  try {
    n = textBlobItems(blobs.readRange(hash, 0, 8));
  } catch (e) {
    throw new ItemBlobError(`${field}: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (n !== items) throw new ItemBlobError(`${field}: holds ${n} items, the job has ${items} ids`);
  const dataAt = textDataOffset(n);
  if (size < dataAt) throw new ItemBlobError(`${field}: ${size} bytes cannot hold the offsets of ${n} items`);
  const ends = new Uint32Array(2 * n);
  const endsBytes = new Uint8Array(ends.buffer);
  for (let at = 0; at < endsBytes.byteLength; at += STEP_BYTES) {
    endsBytes.set(blobs.readRange(hash, 8 + at, Math.min(STEP_BYTES, endsBytes.byteLength - at)), at);
    await nextTurn();
  }
  let previous = 0;
  for (let k = 0; k < ends.length; k++) {
    const e = ends[k] as number;
    if (e < previous) throw new ItemBlobError(`${field}: the offset of string ${k} goes backwards`);
    previous = e;
  }
  if (dataAt + previous !== size) throw new ItemBlobError(`${field}: its offsets end at ${dataAt + previous} bytes, the blob has ${size}`);
  // Valid UTF-8, read in runs of whole strings: a run is valid and each string starts on a character (not a
  // continuation byte) exactly when every string of it is valid on its own.
  let k = 0;
  while (k < ends.length) {
    const start = k === 0 ? 0 : (ends[k - 1] as number);
    let last = k;
    while (last + 1 < ends.length && (ends[last] as number) - start < STEP_BYTES) last++;
    const end = ends[last] as number;
    const data = blobs.readRange(hash, dataAt + start, end - start);
    if (!isUtf8(data)) throw new ItemBlobError(`${field}: strings ${k}–${last} are not valid UTF-8`);
    for (let s = k; s <= last; s++) {
      const from = (s === 0 ? 0 : (ends[s - 1] as number)) - start;
      if (from < data.byteLength && ((data[from] as number) & 0xc0) === 0x80) throw new ItemBlobError(`${field}: string ${s} is not valid UTF-8`);
    }
    k = last + 1;
    await nextTurn();
  }
  return ends;
}
