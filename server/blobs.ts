import { createHash } from 'node:crypto';
import type { BlobMessage } from '../shared/protocol/index.js';
import type { Store } from './store.js';

/** Blobs travel to workers in chunks of this size (one `blob` frame each). */
export const BLOB_CHUNK_BYTES = 1024 * 1024;
export const SHA256_HEX = /^[0-9a-f]{64}$/;

export function isSha256(value: string): boolean {
  return SHA256_HEX.test(value);
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export class BlobTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`blob exceeds the ${limit}-byte limit`);
  }
}

export class BlobHashMismatchError extends Error {
  constructor(readonly expected: string, readonly actual: string) {
    super(`body hashes to ${actual}, not ${expected}`);
  }
}

/**
 * Content-addressed blobs over the store's raw blob methods: a blob is stored only under the
 * sha-256 of its bytes, so a hash names exactly one content and workers can cache by it.
 */
export class BlobStore {
  constructor(private readonly store: Store) {}

  has(hash: string): boolean {
    return isSha256(hash) && this.store.hasBlob(hash);
  }

  size(hash: string): number | undefined {
    return isSha256(hash) ? this.store.blobSize(hash) : undefined;
  }

  /** The whole blob, or undefined when absent. */
  read(hash: string): Uint8Array | undefined {
    const size = this.size(hash);
    return size === undefined ? undefined : this.store.readBlob(hash, 0, size);
  }

  /** Stores `bytes`, returning their hash. */
  put(bytes: Uint8Array): string {
    const hash = sha256Hex(bytes);
    this.store.putBlob(hash, [bytes]);
    return hash;
  }

  /**
   * Reads a streamed body, hashing as it arrives, and stores it only if it hashes to `expected`.
   * Throws BlobTooLargeError as soon as more than `limit` bytes arrived (the caller answers 413
   * and drops the connection), BlobHashMismatchError after the last byte.
   */
  async receive(body: AsyncIterable<unknown>, expected: string, limit: number): Promise<{ hash: string; size: number }> {
    const hasher = createHash('sha256');
    const chunks: Uint8Array[] = [];
    let size = 0;
    for await (const chunk of body) {
      if (!(chunk instanceof Uint8Array)) throw new TypeError('blob body must be bytes');
      size += chunk.byteLength;
      if (size > limit) throw new BlobTooLargeError(limit);
      hasher.update(chunk);
      chunks.push(chunk);
    }
    const actual = hasher.digest('hex');
    if (actual !== expected) throw new BlobHashMismatchError(expected, actual);
    this.store.putBlob(actual, chunks);
    return { hash: actual, size };
  }

  /** The `blob` messages that carry `hash` to a worker, 1 MiB each (one empty final chunk for an empty blob). */
  *chunks(hash: string, chunkBytes = BLOB_CHUNK_BYTES): Generator<BlobMessage> {
    const total = this.size(hash);
    if (total === undefined) throw new Error(`no blob ${hash}`);
    let offset = 0;
    do {
      const data = this.store.readBlob(hash, offset, Math.min(chunkBytes, total - offset));
      const end = offset + data.byteLength;
      if (data.byteLength === 0 && end < total) throw new Error(`blob ${hash} is shorter than its recorded size`);
      yield { type: 'blob', hash, offset, total, data, final: end === total };
      offset = end;
    } while (offset < total);
  }
}
