// The worker's pieces on their own: backoff, blob assembly and cache, error classification.
import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobCache, BlobError, BlobReceiver, defaultCacheDir } from '../../../client/blob-cache.js';
import { Backoff, isTokenRefusal } from '../../../client/connection.js';
import { isPermanentError } from '../../../client/lease-failure.js';
import { toScorerItems } from '../../../client/score-shard.js';
import { Tensor, type BlobMessage } from '../../../shared/protocol/index.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');

test('backoff grows exponentially to the cap, each delay jittered within [d/2, d]', (t) => {
  const low = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0 });
  const high = new Backoff({ initialMs: 100, maxMs: 1000, random: () => 0.999999 });
  t.deepEqual(Array.from({ length: 7 }, () => low.next()), [50, 100, 200, 400, 500, 500, 500]);
  t.deepEqual(Array.from({ length: 7 }, () => high.next()), [100, 200, 400, 800, 1000, 1000, 1000]);
  t.is(low.attempts, 7);
  low.reset();
  t.is(low.next(), 50);
  const d = new Backoff(); // defaults: 500 ms doubling, capped near 10 s
  const delays = Array.from({ length: 30 }, () => d.next());
  t.true(delays.every((x) => x >= 250 && x <= 10_000));
  t.true(delays.slice(10).every((x) => x >= 5000));
});

test('token refusals are recognised from the coordinator\'s message', (t) => {
  t.true(isTokenRefusal('unauthorized: unknown worker token'));
  t.true(isTokenRefusal('that is a client token; workers need a worker token'));
  t.false(isTokenRefusal('websocket error'));
  t.false(isTokenRefusal('timeout'));
});

test('permanent scoring errors: invalid bundle or items; everything else is retryable', (t) => {
  class ModelError extends RangeError {
    override name = 'ModelError';
    readonly retryable = false;
  }
  t.true(isPermanentError(new ModelError('features: item 3 has 5 values, the model takes 4')));
  t.true(isPermanentError(Object.assign(new Error('x'), { name: 'BundleError' })));
  t.true(isPermanentError(new Error('model bundle: weights file weights.bin is missing')));
  t.true(isPermanentError(Object.assign(new Error('bad'), { retryable: false })));
  t.false(isPermanentError(new Error('worker thread exited')));
  t.false(isPermanentError('model bundle: a string, not an error'));
});

test('protocol items become scorer items: features as their Float32Array, or the two text fields', (t) => {
  const f = Float32Array.of(1, 2);
  t.deepEqual(toScorerItems([{ id: 'a', features: Tensor.float32(f) }, { id: 'b', prompt: 'p', response: 'r' }]), [{ features: f }, { prompt: 'p', response: 'r' }]);
  t.is((toScorerItems([{ id: 'a', features: Tensor.float32(f) }])[0] as { features: Float32Array }).features, f, 'not copied');
});

function chunks(hash: string, bytes: Uint8Array, size: number): BlobMessage[] {
  const out: BlobMessage[] = [];
  for (let offset = 0; offset === 0 || offset < bytes.length; offset += size) {
    const data = bytes.slice(offset, offset + size);
    out.push({ type: 'blob', hash, offset, total: bytes.length, data, final: offset + data.length === bytes.length });
  }
  return out;
}

test('blob receiver: assembles chunks in order, shares one request per hash, handles an empty blob', async (t) => {
  const requests: string[] = [];
  const rx = new BlobReceiver({ request: (h) => (requests.push(h), true) });
  const bytes = randomBytes(1000);
  const hash = sha(bytes);
  const p1 = rx.fetch(hash);
  const p2 = rx.fetch(hash);
  t.is(p1, p2);
  for (const c of chunks(hash, bytes, 300)) t.true(rx.onChunk(c));
  t.deepEqual(Buffer.from(await p1), bytes);
  t.deepEqual(requests, [hash]);
  t.false(rx.onChunk(chunks(hash, bytes, 300)[0]!), 'nothing waits for it any more');

  const empty = new Uint8Array(0);
  const e = rx.fetch(sha(empty));
  rx.onChunk({ type: 'blob', hash: sha(empty), offset: 0, total: 0, data: empty, final: true });
  t.is((await e).length, 0);
});

test('blob receiver: out-of-order or inconsistent chunks, not-found, a dead connection, oversize and silence all fail the fetch', async (t) => {
  const rx = new BlobReceiver({ request: () => true, maxBytes: 500, idleTimeoutMs: 50 });
  const bytes = randomBytes(400);
  const h = sha(bytes);
  const c = chunks(h, bytes, 100);
  const gap = rx.fetch(h);
  rx.onChunk(c[0]!);
  rx.onChunk(c[2]!);
  await t.throwsAsync(gap, { instanceOf: BlobError, message: /chunk at offset 200, expected 100/ });

  const total = rx.fetch(h);
  rx.onChunk(c[0]!);
  rx.onChunk({ ...c[1]!, total: 999 });
  await t.throwsAsync(total, { instanceOf: BlobError, message: /total 999/ });

  const missing = rx.fetch(h);
  t.true(rx.onNotFound(h, 'no such blob'));
  await t.throwsAsync(missing, { instanceOf: BlobError, message: /coordinator has no blob .*no such blob/ });

  const aborted = rx.fetch(h);
  rx.abort('connection lost');
  await t.throwsAsync(aborted, { instanceOf: BlobError, message: /connection lost/ });

  const big = randomBytes(600);
  const oversize = rx.fetch(sha(big));
  rx.onChunk(chunks(sha(big), big, 1000)[0]!);
  await t.throwsAsync(oversize, { instanceOf: BlobError, message: /over the 500-byte limit/ });

  await t.throwsAsync(rx.fetch(h), { instanceOf: BlobError, message: /nothing received for 50 ms/ });

  const offline = new BlobReceiver({ request: () => false });
  await t.throwsAsync(offline.fetch(h), { instanceOf: BlobError, message: /not connected/ });
});

test('blob cache: one load for concurrent gets, verified, kept in memory, reloaded if its buffer was transferred away', async (t) => {
  const bytes = new Uint8Array(randomBytes(256));
  const hash = sha(bytes);
  const cache = new BlobCache();
  let fetches = 0;
  const fetch = async (): Promise<Uint8Array> => {
    fetches++;
    await new Promise((r) => setTimeout(r, 10));
    return bytes.slice();
  };
  const [a, b] = await Promise.all([cache.get(hash, fetch), cache.get(hash, fetch)]);
  t.is(a, b);
  t.is(fetches, 1);
  t.is(await cache.get(hash, fetch), a);
  t.is(fetches, 1);
  structuredClone(a.buffer, { transfer: [a.buffer as ArrayBuffer] }); // detaches a.buffer, as a transfer to a thread would
  t.is(a.byteLength, 0);
  const again = await cache.get(hash, fetch);
  t.is(fetches, 2);
  t.deepEqual(again, bytes);
});

test('blob cache: a sha-256 mismatch is a BlobError and is not cached', async (t) => {
  const cache = new BlobCache();
  const hash = 'ab'.repeat(32);
  let fetches = 0;
  const fetch = async (): Promise<Uint8Array> => (fetches++, new Uint8Array([1, 2, 3]));
  await t.throwsAsync(cache.get(hash, fetch), { instanceOf: BlobError, message: /failed verification/ });
  await t.throwsAsync(cache.get(hash, fetch), { instanceOf: BlobError });
  t.is(fetches, 2);
  t.false(cache.has(hash));
  await t.throwsAsync(cache.get('not-a-hash', fetch), { instanceOf: BlobError });
});

test('blob cache: memory stays within budget (most recent kept); disk cache survives, and a corrupt file is refetched', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'fedpool-blobs-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const blobs = [randomBytes(100), randomBytes(100), randomBytes(300)].map((b) => new Uint8Array(b));
  const cache = new BlobCache({ dir, maxMemoryBytes: 250 });
  for (const b of blobs) await cache.get(sha(b), async () => b.slice());
  t.false(cache.has(sha(blobs[0]!)));
  t.true(cache.has(sha(blobs[2]!)), 'the newest stays even over budget');

  const fresh = new BlobCache({ dir });
  const never = async (): Promise<Uint8Array> => {
    throw new Error('should come from disk');
  };
  t.deepEqual(await fresh.get(sha(blobs[0]!), never), blobs[0]);
  t.deepEqual(readFileSync(join(dir, sha(blobs[1]!))), Buffer.from(blobs[1]!));

  const warnings: string[] = [];
  writeFileSync(join(dir, sha(blobs[1]!)), 'garbage');
  const healing = new BlobCache({ dir, onWarning: (m) => warnings.push(m) });
  t.deepEqual(await healing.get(sha(blobs[1]!), async () => blobs[1]!.slice()), blobs[1]);
  t.regex(warnings.join('\n'), /corrupt/);
  t.deepEqual(readFileSync(join(dir, sha(blobs[1]!))), Buffer.from(blobs[1]!), 'rewritten');
});

test('cache directory: FEDPOOL_CACHE_DIR wins (empty turns the disk cache off), else ~/.cache/fedpool/blobs', (t) => {
  t.is(defaultCacheDir({ FEDPOOL_CACHE_DIR: '/x/y' }), '/x/y');
  t.is(defaultCacheDir({ FEDPOOL_CACHE_DIR: '' }), undefined);
  t.is(defaultCacheDir({ XDG_CACHE_HOME: '/xdg' }), join('/xdg', 'fedpool', 'blobs'));
  t.regex(defaultCacheDir({}) ?? '', /\.cache[/\\]fedpool[/\\]blobs$/);
});
