import { createHash } from 'node:crypto';
import { ByteLru } from '../shared/lru.js';
import { encodeMessage } from '../shared/protocol/index.js';
import type { Store } from './store.js';

/** Blobs travel to workers in chunks of this size (one `blob` frame each). */
export const BLOB_CHUNK_BYTES = 1024 * 1024;
/** Encoded blob frames kept for the next worker that asks (a model most workers of a job fetch at its start). */
const FRAME_CACHE_BYTES = 64 * 1024 * 1024;
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
 *
 * Stored bytes are trusted only while they still hash to their name (docs/security.md, "Storage integrity"): verify()
 * hashes a blob before it is served or confirmed (HEAD), once per version of the file (the store's stamp: size,
 * modification time), in 1 MiB steps that yield to the event loop; a blob that fails is removed, so the submitter's
 * next HEAD says 404 and its re-upload stores the right bytes.
 */
export class BlobStore {
  /** Blobs known to hash to their name, with the stamp they had when they did. */
  private readonly verified = new Map<string, string>();
  private readonly verifying = new Map<string, Promise<boolean>>();
  /**
   * When each blob was last used in this process (stored, uploaded, confirmed by HEAD, read for a job, sent to a
   * worker): a blob no job names any more is removed only after a while unused (job-registry.ts, retention), so one
   * that a submitter confirmed moments ago for a job it is about to submit stays.
   */
  private readonly used = new Map<string, number>();
  /** Transfers to workers under way, per blob: such a blob is not removed. */
  private readonly sending = new Map<string, number>();
  /**
   * Encoded `blob` frames by hash and offset, shared by every connection that fetches the blob: a model fetched by
   * 150 workers is read and encoded once per chunk, and what their sockets hold queued is one copy, not 150
   * (docs/security.md, "Rate limits").
   */
  private readonly frameCache = new ByteLru<Uint8Array>(FRAME_CACHE_BYTES, (_key, frame) => frame.byteLength);

  constructor(
    private readonly store: Store,
    private readonly now: () => number = Date.now,
  ) {}

  private touch(hash: string): void {
    this.used.set(hash, this.now());
  }

  /** When this process last used the blob (see `used`), or undefined. */
  lastUsed(hash: string): number | undefined {
    return this.used.get(hash);
  }

  /** Whether the blob is being hashed or sent to a worker now. */
  busy(hash: string): boolean {
    return this.verifying.has(hash) || (this.sending.get(hash) ?? 0) > 0;
  }

  /** Removes a blob that no job names any more (retention); false, and nothing removed, while it is busy. */
  remove(hash: string): boolean {
    if (!isSha256(hash) || this.busy(hash)) return false;
    this.forgetFrames(hash);
    this.store.deleteBlob(hash);
    this.verified.delete(hash);
    this.used.delete(hash);
    return true;
  }

  /** Whether the blob is present and its bytes hash to `hash`; a blob that does not is removed. Never blocks the loop for long. */
  verify(hash: string): Promise<boolean> {
    if (!isSha256(hash)) return Promise.resolve(false);
    const stamp = this.store.blobStamp(hash);
    if (stamp === undefined) return Promise.resolve(false);
    this.touch(hash);
    if (this.verified.get(hash) === stamp) return Promise.resolve(true);
    let pending = this.verifying.get(hash);
    if (pending === undefined) {
      pending = this.hashStored(hash, stamp).finally(() => this.verifying.delete(hash));
      this.verifying.set(hash, pending);
    }
    return pending;
  }

  private async hashStored(hash: string, stamp: string): Promise<boolean> {
    const total = this.store.blobSize(hash) ?? 0;
    const hasher = createHash('sha256');
    for (let offset = 0; offset < total; offset += BLOB_CHUNK_BYTES) {
      hasher.update(this.store.readBlob(hash, offset, Math.min(BLOB_CHUNK_BYTES, total - offset)));
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    if (hasher.digest('hex') === hash && this.store.blobStamp(hash) === stamp) {
      this.verified.set(hash, stamp);
      return true;
    }
    // Bytes that no longer hash to their name (or that changed while hashed): not served, not confirmed, removed.
    this.verified.delete(hash);
    this.used.delete(hash);
    this.forgetFrames(hash);
    this.store.deleteBlob(hash);
    return false;
  }

  private forgetFrames(hash: string): void {
    const total = this.store.blobSize(hash) ?? 0;
    for (let offset = 0; offset === 0 || offset < total; offset += BLOB_CHUNK_BYTES) this.frameCache.delete(`${hash}:${offset}`);
  }

  private trust(hash: string): void {
    const stamp = this.store.blobStamp(hash);
    if (stamp !== undefined) this.verified.set(hash, stamp);
  }

  has(hash: string): boolean {
    return isSha256(hash) && this.store.hasBlob(hash);
  }

  size(hash: string): number | undefined {
    return isSha256(hash) ? this.store.blobSize(hash) : undefined;
  }

  /** The whole blob, or undefined when absent. */
  read(hash: string): Uint8Array | undefined {
    const size = this.size(hash);
    if (size === undefined) return undefined;
    this.touch(hash);
    return this.store.readBlob(hash, 0, size);
  }

  /** `length` bytes of the blob from `offset` (fewer at its end), in an array of their own (aligned for any view). */
  readRange(hash: string, offset: number, length: number): Uint8Array<ArrayBuffer> {
    this.touch(hash);
    return this.store.readBlob(hash, offset, length);
  }

  /** Stores `bytes`, returning their hash. */
  put(bytes: Uint8Array): string {
    const hash = sha256Hex(bytes);
    const existed = this.store.hasBlob(hash);
    this.store.putBlob(hash, [bytes]);
    // Only bytes written now are known good; a copy that was already there is checked by verify() before use.
    if (!existed) this.trust(hash);
    this.touch(hash);
    return hash;
  }

  /**
   * Reads a streamed body, hashing as it arrives, and stores it only if it hashes to `expected`.
   * Throws BlobTooLargeError as soon as more than `limit` bytes arrived (the caller answers 413
   * and drops the connection), BlobHashMismatchError after the last byte.
   */
  async receive(body: AsyncIterable<unknown>, expected: string, limit: number): Promise<{ hash: string; size: number }> {
    const hasher = createHash('sha256');
    // Written as it arrives (store.ts, BlobWriter): a 500 MB upload is neither held whole nor written in one stop.
    const writer = this.store.createBlobWriter();
    try {
      let size = 0;
      for await (const chunk of body) {
        if (!(chunk instanceof Uint8Array)) throw new TypeError('blob body must be bytes');
        size += chunk.byteLength;
        if (size > limit) throw new BlobTooLargeError(limit);
        hasher.update(chunk);
        await writer.write(chunk);
      }
      const actual = hasher.digest('hex');
      if (actual !== expected) throw new BlobHashMismatchError(expected, actual);
      // A stored copy that fails its hash is removed by verify(), so this upload replaces it.
      if (this.store.hasBlob(actual)) await this.verify(actual);
      await writer.commit(actual);
      this.trust(actual);
      this.touch(actual);
      return { hash: actual, size };
    } catch (e) {
      await writer.abort();
      throw e;
    }
  }

  /**
   * The encoded `blob` frames that carry `hash` to a worker, 1 MiB of the blob each (one empty final chunk for an
   * empty blob), with the blob bytes each carries; read and encoded only when not in the frame cache.
   */
  *frames(hash: string): Generator<{ frame: Uint8Array; bytes: number }> {
    const total = this.size(hash);
    if (total === undefined) throw new Error(`no blob ${hash}`);
    this.sending.set(hash, (this.sending.get(hash) ?? 0) + 1);
    try {
      let offset = 0;
      do {
        const key = `${hash}:${offset}`;
        let frame = this.frameCache.get(key);
        const bytes = Math.min(BLOB_CHUNK_BYTES, total - offset);
        if (frame === undefined) {
          const data = this.store.readBlob(hash, offset, bytes);
          if (data.byteLength < bytes) throw new Error(`blob ${hash} is shorter than its recorded size`);
          frame = encodeMessage({ type: 'blob', hash, offset, total, data, final: offset + bytes === total });
          this.frameCache.set(key, frame);
        }
        this.touch(hash);
        yield { frame, bytes };
        offset += bytes;
      } while (offset < total);
    } finally {
      // Also when the consumer stops early (a worker gone): for-of ends the generator through return().
      const n = (this.sending.get(hash) ?? 1) - 1;
      if (n > 0) this.sending.set(hash, n);
      else this.sending.delete(hash);
    }
  }
}
