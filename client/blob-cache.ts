// Content-addressed blobs (model bundles) on the worker: assembled from `blob` chunks, verified by sha-256, kept
// in memory by hash and optionally on disk, so a model crosses the network once per worker (once per machine with
// the disk cache), however many leases use it.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { BlobMessage } from '../shared/protocol/index.js';

/** A blob could not be obtained or failed verification. Retryable: another attempt (or worker) may succeed. */
export class BlobError extends Error {
  override readonly name = 'BlobError';
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

const HASH = /^[0-9a-f]{64}$/;
const short = (hash: string): string => `${hash.slice(0, 12)}…`;

/**
 * The on-disk cache directory: FEDPOOL_CACHE_DIR when set (an empty value turns the disk cache off), otherwise
 * ~/.cache/fedpool/blobs (under XDG_CACHE_HOME when that is set).
 */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const configured = env['FEDPOOL_CACHE_DIR'];
  if (configured !== undefined) return configured === '' ? undefined : configured;
  const xdg = env['XDG_CACHE_HOME'];
  return join(xdg !== undefined && xdg !== '' ? xdg : join(homedir(), '.cache'), 'fedpool', 'blobs');
}

export type BlobFetch = (hash: string) => Promise<Uint8Array>;

export interface BlobCacheOptions {
  /** Directory for the disk cache; undefined keeps blobs in memory only. */
  dir?: string | undefined;
  /** Memory budget; the most recently used blob is always kept, whatever its size. Default 1 GiB. */
  maxMemoryBytes?: number;
  /** Disk cache problems are reported here and otherwise ignored (the network still works). */
  onWarning?: (message: string) => void;
}

/** Verified blobs by hash: memory (LRU within a byte budget), then disk, then `fetch`. */
export class BlobCache {
  private readonly memory = new Map<string, Uint8Array>(); // insertion order = recency
  private readonly sizes = new Map<string, number>();
  private memoryBytes = 0;
  private readonly pending = new Map<string, Promise<Uint8Array>>();
  private readonly dir: string | undefined;
  private readonly maxMemoryBytes: number;
  private readonly warn: (message: string) => void;
  /** Blobs that came over the network (for logs and tests). */
  fetches = 0;

  constructor(options: BlobCacheOptions = {}) {
    this.dir = options.dir;
    this.maxMemoryBytes = options.maxMemoryBytes ?? 1024 ** 3;
    this.warn = options.onWarning ?? (() => {});
  }

  has(hash: string): boolean {
    return this.fromMemory(hash) !== undefined;
  }

  /**
   * The verified bytes of `hash`. Concurrent calls for one hash share one load. The bytes are shared with the cache:
   * callers must not modify them (a consumer that transfers the buffer away only costs a reload).
   */
  get(hash: string, fetch: BlobFetch): Promise<Uint8Array> {
    if (!HASH.test(hash)) return Promise.reject(new BlobError(`not a sha-256 hash: ${JSON.stringify(hash.slice(0, 80))}`));
    const cached = this.fromMemory(hash);
    if (cached !== undefined) return Promise.resolve(cached);
    let load = this.pending.get(hash);
    if (load === undefined) {
      load = this.load(hash, fetch).finally(() => this.pending.delete(hash));
      this.pending.set(hash, load);
    }
    return load;
  }

  private fromMemory(hash: string): Uint8Array | undefined {
    const bytes = this.memory.get(hash);
    if (bytes === undefined) return undefined;
    if (bytes.byteLength !== this.sizes.get(hash)) {
      // Its buffer was transferred to another thread (detached): drop it and load again.
      this.forget(hash);
      return undefined;
    }
    this.memory.delete(hash);
    this.memory.set(hash, bytes);
    return bytes;
  }

  private forget(hash: string): void {
    this.memoryBytes -= this.sizes.get(hash) ?? 0;
    this.memory.delete(hash);
    this.sizes.delete(hash);
  }

  private remember(hash: string, bytes: Uint8Array): void {
    this.forget(hash);
    this.memory.set(hash, bytes);
    this.sizes.set(hash, bytes.byteLength);
    this.memoryBytes += bytes.byteLength;
    for (const oldest of this.memory.keys()) {
      if (this.memoryBytes <= this.maxMemoryBytes || oldest === hash) break;
      this.forget(oldest);
    }
  }

  private async load(hash: string, fetch: BlobFetch): Promise<Uint8Array> {
    const fromDisk = await this.readDisk(hash);
    if (fromDisk !== undefined) {
      this.remember(hash, fromDisk);
      return fromDisk;
    }
    const bytes = await fetch(hash);
    this.fetches++;
    const actual = sha256Hex(bytes);
    if (actual !== hash) throw new BlobError(`blob ${short(hash)} failed verification: its sha-256 is ${short(actual)}`);
    this.remember(hash, bytes);
    await this.writeDisk(hash, bytes);
    return bytes;
  }

  private async readDisk(hash: string): Promise<Uint8Array | undefined> {
    if (this.dir === undefined) return undefined;
    const path = join(this.dir, hash);
    let data: Buffer;
    try {
      data = await readFile(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.warn(`blob cache: cannot read ${path}: ${(e as Error).message}`);
      return undefined;
    }
    // Own, aligned memory rather than a view into Node's Buffer pool.
    const bytes = new Uint8Array(data.byteLength);
    bytes.set(data);
    if (sha256Hex(bytes) === hash) return bytes;
    this.warn(`blob cache: ${path} is corrupt; fetching it again`);
    await rm(path, { force: true }).catch(() => {});
    return undefined;
  }

  private async writeDisk(hash: string, bytes: Uint8Array): Promise<void> {
    if (this.dir === undefined) return;
    const path = join(this.dir, hash);
    // Write-then-rename, so a concurrent reader (another worker on this machine) never sees half a file.
    const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
    try {
      await mkdir(this.dir, { recursive: true });
      await writeFile(tmp, bytes);
      await rename(tmp, path);
    } catch (e) {
      this.warn(`blob cache: cannot write ${path}: ${(e as Error).message}`);
      await rm(tmp, { force: true }).catch(() => {});
    }
  }
}

// ---- chunk assembly ------------------------------------------------------------------------------

interface PendingBlob {
  promise: Promise<Uint8Array>;
  resolve: (bytes: Uint8Array) => void;
  reject: (error: Error) => void;
  buffer: Uint8Array | undefined;
  received: number;
  timer: NodeJS.Timeout | undefined;
}

export interface BlobReceiverOptions {
  /** Sends `blob-request` for a hash; false when the connection is gone. */
  request: (hash: string) => boolean;
  /** Give up when no chunk arrived for this long (ms). Default 60 s. */
  idleTimeoutMs?: number;
  /** Refuse blobs larger than this. Default 2 GiB. */
  maxBytes?: number;
}

/**
 * Assembles one connection's `blob` chunks. socket.io delivers in order, so chunks must arrive contiguously from
 * offset 0; anything else fails that blob rather than guessing.
 */
export class BlobReceiver {
  private readonly pending = new Map<string, PendingBlob>();
  private readonly idleTimeoutMs: number;
  private readonly maxBytes: number;

  constructor(private readonly options: BlobReceiverOptions) {
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.maxBytes = options.maxBytes ?? 2 * 1024 ** 3;
  }

  /** Requests `hash` and resolves with its bytes (unverified: BlobCache verifies). */
  fetch(hash: string): Promise<Uint8Array> {
    const existing = this.pending.get(hash);
    if (existing !== undefined) return existing.promise;
    let resolve!: (bytes: Uint8Array) => void;
    let reject!: (error: Error) => void;
    const promise = new Promise<Uint8Array>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    const entry: PendingBlob = { promise, resolve, reject, buffer: undefined, received: 0, timer: undefined };
    this.pending.set(hash, entry);
    this.arm(hash, entry);
    let sent: boolean;
    try {
      sent = this.options.request(hash);
    } catch (e) {
      sent = false;
      this.fail(hash, `cannot request blob ${short(hash)}: ${(e as Error).message}`);
    }
    if (!sent) this.fail(hash, `cannot request blob ${short(hash)}: not connected`);
    return promise;
  }

  /** Handles a chunk; returns false when nothing was waiting for it. */
  onChunk(chunk: BlobMessage): boolean {
    const entry = this.pending.get(chunk.hash);
    if (entry === undefined) return false;
    if (entry.buffer === undefined) {
      if (chunk.total > this.maxBytes) {
        this.fail(chunk.hash, `blob ${short(chunk.hash)} is ${chunk.total} bytes, over the ${this.maxBytes}-byte limit`);
        return true;
      }
      entry.buffer = new Uint8Array(chunk.total);
    } else if (chunk.total !== entry.buffer.length) {
      this.fail(chunk.hash, `blob ${short(chunk.hash)}: chunk says total ${chunk.total}, earlier chunks said ${entry.buffer.length}`);
      return true;
    }
    if (chunk.offset !== entry.received) {
      this.fail(chunk.hash, `blob ${short(chunk.hash)}: chunk at offset ${chunk.offset}, expected ${entry.received}`);
      return true;
    }
    entry.buffer.set(chunk.data, chunk.offset);
    entry.received += chunk.data.length;
    if (chunk.final) {
      this.settle(chunk.hash);
      entry.resolve(entry.buffer);
    } else {
      this.arm(chunk.hash, entry);
    }
    return true;
  }

  /** The coordinator does not have `hash` (an `error` with code not-found and ref = hash). */
  onNotFound(hash: string, message: string): boolean {
    if (!this.pending.has(hash)) return false;
    this.fail(hash, `coordinator has no blob ${short(hash)}: ${message}`);
    return true;
  }

  /** Fails every pending fetch, e.g. because the connection ended. */
  abort(reason: string): void {
    for (const hash of [...this.pending.keys()]) this.fail(hash, `blob ${short(hash)}: ${reason}`);
  }

  private arm(hash: string, entry: PendingBlob): void {
    clearTimeout(entry.timer);
    entry.timer = setTimeout(() => this.fail(hash, `blob ${short(hash)}: nothing received for ${this.idleTimeoutMs} ms`), this.idleTimeoutMs);
  }

  private settle(hash: string): void {
    const entry = this.pending.get(hash);
    if (entry === undefined) return;
    clearTimeout(entry.timer);
    this.pending.delete(hash);
  }

  private fail(hash: string, message: string): void {
    const entry = this.pending.get(hash);
    if (entry === undefined) return;
    this.settle(hash);
    entry.reject(new BlobError(message));
  }
}
