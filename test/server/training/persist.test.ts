// persist.ts: binary packing of central data ('FPD1') and training state ('FPS1'): exact round trips, aligned
// fresh copies, and clear errors on malformed bytes.
import test from 'ava';
import fc from 'fast-check';
import type { CentralData } from '../../../server/training/job-request.js';
import { packCentralData, packState, unpackCentralData, unpackState } from '../../../server/training/persist.js';

const floats = (max = 64) => fc.float32Array({ noNaN: true, maxLength: max });

const classify: CentralData = {
  kind: 'classify', dim: 3, n: 2, rows: Float32Array.of(1, -2, 3.5, 1e-30, -0, 7), labels: Int32Array.of(0, 2_000_000_000),
};
const pairs: CentralData = { kind: 'pairs', dim: 2, n: 2, chosen: Float32Array.of(1, 2, 3, 4), rejected: Float32Array.of(-1, -2, -3, -4) };

/** The bytes copied to an odd offset of a bigger buffer (as a Buffer from SQLite or a pool might sit). */
function unaligned(bytes: Uint8Array): Uint8Array {
  const big = new Uint8Array(bytes.byteLength + 3);
  big.set(bytes, 1);
  return big.subarray(1, 1 + bytes.byteLength);
}

/** A header with its JSON replaced (the arrays kept), to forge lengths that don't match. */
function withHeader(bytes: Uint8Array, header: unknown): Uint8Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const oldLength = view.getUint32(4, true);
  const arrays = bytes.subarray(8 + ((oldLength + 3) & ~3));
  const json = new TextEncoder().encode(JSON.stringify(header));
  const start = 8 + ((json.byteLength + 3) & ~3);
  const out = new Uint8Array(start + arrays.byteLength);
  out.set(bytes.subarray(0, 4));
  new DataView(out.buffer).setUint32(4, json.byteLength, true);
  out.set(json, 8);
  out.set(arrays, start);
  return out;
}

test('central data round-trips exactly, classify and pairs, as aligned fresh copies', (t) => {
  for (const d of [classify, pairs]) {
    const bytes = packCentralData(d);
    t.is(new TextDecoder().decode(bytes.subarray(0, 4)), 'FPD1');
    const back = unpackCentralData(unaligned(bytes));
    t.deepEqual(back, d);
    const arrays = back.kind === 'classify' ? [back.rows, back.labels] : [back.chosen, back.rejected];
    for (const a of arrays) {
      t.is(a.byteOffset, 0);
      t.is(a.buffer.byteLength, a.byteLength, 'owns exactly its buffer');
    }
  }
  const back = unpackCentralData(packCentralData(classify));
  t.true(back.kind === 'classify' && Object.is(back.rows[4], -0), '-0 kept');
});

test('the header is padded to a multiple of 4 and the arrays are raw little-endian', (t) => {
  const bytes = packCentralData(pairs);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = view.getUint32(4, true);
  const start = 8 + ((headerLength + 3) & ~3);
  t.is(start % 4, 0);
  t.is(bytes.byteLength, start + 8 * 4);
  for (let i = 8 + headerLength; i < start; i++) t.is(bytes[i], 0);
  t.like(JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))), { kind: 'pairs', dim: 2, n: 2, chosen: 4, rejected: 4 });
  t.is(view.getFloat32(start, true), 1);
  t.is(view.getFloat32(start + 4 * 4, true), -1);
});

test('central data: random columns round-trip (fast-check)', (t) => {
  const cells = (k: number) => fc.float32Array({ noNaN: true, minLength: k, maxLength: k });
  const data: fc.Arbitrary<CentralData> = fc
    .record({ dim: fc.integer({ min: 1, max: 6 }), n: fc.integer({ min: 1, max: 12 }) })
    .chain(({ dim, n }) =>
      fc.oneof(
        fc.record({ kind: fc.constant('classify' as const), dim: fc.constant(dim), n: fc.constant(n), rows: cells(dim * n), labels: fc.int32Array({ min: 0, minLength: n, maxLength: n }) }),
        fc.record({ kind: fc.constant('pairs' as const), dim: fc.constant(dim), n: fc.constant(n), chosen: cells(dim * n), rejected: cells(dim * n) }),
      ),
    );
  fc.assert(
    fc.property(data, (d) => {
      t.deepEqual(unpackCentralData(unaligned(packCentralData(d))), d);
    }),
  );
});

test('packCentralData refuses columns that do not match n × dim', (t) => {
  t.throws(() => packCentralData({ ...pairs, n: 3 }), { message: /^persist: .*chosen holds 4 values/ });
  t.throws(() => packCentralData({ ...classify, labels: Int32Array.of(1) }), { message: /^persist: .*1 labels/ });
});

test('state round-trips exactly: header JSON and vectors, including none and empty ones', (t) => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.array(floats(), { maxLength: 5 }), (header, vectors) => {
      const bytes = packState({ header, vectors });
      t.is(new TextDecoder().decode(bytes.subarray(0, 4)), 'FPS1');
      const back = unpackState(unaligned(bytes));
      t.deepEqual(back.header, JSON.parse(JSON.stringify(header)) as unknown);
      t.deepEqual(back.vectors, vectors);
    }),
  );
  t.deepEqual(unpackState(packState({ header: { step: 3 }, vectors: [] })), { header: { step: 3 }, vectors: [] });
  t.deepEqual(unpackState(packState({ header: null, vectors: [new Float32Array(0), Float32Array.of(1)] })).vectors, [new Float32Array(0), Float32Array.of(1)]);
});

test('state: a 1e6-length vector round-trips bit-exactly as an aligned copy', (t) => {
  const w = new Float32Array(1_000_000);
  for (let i = 0; i < w.length; i++) w[i] = Math.sin(i) * 1e3 + i * 1e-7;
  const bias = Float32Array.of(0.5, -0.25);
  const bytes = packState({ header: { names: ['w', 'b'], step: 12 }, vectors: [w, bias] });
  t.true(bytes.byteLength < 4_000_200, `${bytes.byteLength} bytes: binary, not JSON text`);
  const back = unpackState(unaligned(bytes));
  t.deepEqual(back.header, { names: ['w', 'b'], step: 12 });
  const got = back.vectors[0]!;
  t.is(got.length, w.length);
  t.is(got.byteOffset, 0);
  t.true(Buffer.from(got.buffer, got.byteOffset, got.byteLength).equals(Buffer.from(w.buffer)));
  t.deepEqual(back.vectors[1], bias);
  got[0] = 42;
  t.not(unpackState(bytes).vectors[0]![0], 42, 'a fresh copy, not a view into the bytes');
});

test('malformed input throws a clear persist error', (t) => {
  const state = packState({ header: { a: 1 }, vectors: [Float32Array.of(1, 2, 3)] });
  const data = packCentralData(classify);
  const err = (re: RegExp) => ({ message: new RegExp(`^persist: .*${re.source}`) });

  t.throws(() => unpackState(new Uint8Array(0)), err(/truncated/));
  t.throws(() => unpackState(state.subarray(0, 6)), err(/truncated/));
  t.throws(() => unpackState(data), err(/bad magic "FPD1"/), 'central data is not a state');
  t.throws(() => unpackCentralData(state), err(/bad magic "FPS1"/));
  const badMagic = state.slice();
  badMagic[0] = 0x58;
  t.throws(() => unpackState(badMagic), err(/bad magic/));

  const longHeader = state.slice();
  new DataView(longHeader.buffer).setUint32(4, 0xffffffff, true);
  t.throws(() => unpackState(longHeader), err(/header length 4294967295 runs past the end/));

  t.throws(() => unpackState(state.subarray(0, state.byteLength - 1)), err(/truncated in vector 0/));
  t.throws(() => unpackCentralData(data.subarray(0, data.byteLength - 4)), err(/truncated in labels/));
  const trailing = new Uint8Array(state.byteLength + 4);
  trailing.set(state);
  t.throws(() => unpackState(trailing), err(/4 bytes past the arrays/));

  t.throws(() => unpackState(withHeader(state, { header: { a: 1 }, lengths: [2] })), err(/4 bytes past/));
  t.throws(() => unpackState(withHeader(state, { header: { a: 1 }, lengths: [4] })), err(/truncated in vector 0/));
  t.throws(() => unpackState(withHeader(state, { header: 1, lengths: [-1] })), err(/invalid header/));
  t.throws(() => unpackState(withHeader(state, [1, 2])), err(/invalid header/));
  t.throws(() => unpackCentralData(withHeader(data, { kind: 'classify', dim: 3, n: 2, rows: 5, labels: 2 })), err(/don't match n 2 × dim 3/));
  t.throws(() => unpackCentralData(withHeader(data, { kind: 'classify', dim: 2, n: 3, rows: 6, labels: 3 })), err(/truncated in labels/));
  t.throws(() => unpackCentralData(withHeader(data, { kind: 'ranking', dim: 3, n: 2 })), err(/invalid header/));

  const notJson = state.slice();
  notJson[8] = 0x7b + 1; // '{' -> '|'
  t.throws(() => unpackState(notJson), err(/not UTF-8 JSON/));
  const header = { header: 1, lengths: [3] };
  const jsonLength = JSON.stringify(header).length;
  t.not(jsonLength % 4, 0, 'the forged header needs padding');
  const padded = withHeader(state, header);
  padded[8 + jsonLength] = 1;
  t.throws(() => unpackState(padded), err(/nonzero header padding/));
});
