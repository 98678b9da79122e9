// A job's columns built as a large body arrives (server/columns.ts) give back exactly what was pushed — strings with
// lone surrogates, long strings, values across block boundaries — at any index and in any slice.
import test from 'ava';
import fc from 'fast-check';
import { FloatColumn, StringColumn } from '../../server/columns.js';

test('a string column gives back exactly what was pushed, in any slice', (t) => {
  fc.assert(
    fc.property(fc.array(fc.oneof(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' }), fc.constantFrom('', '\ud800', 'a\udc00b', 'x'.repeat(5_000))), { maxLength: 60 }), fc.nat(), fc.nat(), (strings, a, b) => {
      const column = new StringColumn();
      for (const s of strings) column.push(s);
      t.is(column.length, strings.length);
      t.deepEqual(column.slice(0, strings.length), strings);
      const start = a % (strings.length + 1);
      const end = start + (b % (strings.length + 1 - start));
      t.deepEqual(column.slice(start, end), strings.slice(start, end));
      for (let i = 0; i < strings.length; i++) t.is(column.at(i), strings[i]);
    }),
    { numRuns: 150 },
  );
  t.throws(() => new StringColumn().at(0), { instanceOf: RangeError });
});

/** Element by element (t.deepEqual over 200,000 strings takes seconds). */
function same(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((s, i) => s === b[i]);
}

test('columns cross their blocks without losing or moving a value', (t) => {
  const strings = Array.from({ length: 200_000 }, (_, i) => (i % 7 === 0 ? `é${i}` : String(i)));
  const long = 'y'.repeat(9 * 1024 * 1024); // longer than a string block's bytes
  strings.splice(100_000, 0, long, '', '\udfff');
  const column = new StringColumn();
  for (const s of strings) column.push(s);
  t.is(column.length, strings.length);
  t.true(same(column.slice(0, strings.length), strings));
  for (const [from, to] of [ [65_530, 65_542], [99_999, 100_004], [131_070, 131_075], [strings.length - 3, strings.length + 5]] as const) {
    t.deepEqual(column.slice(from, to), strings.slice(from, to), `${from}–${to}`);
  }
  t.is(column.at(100_000), long);

  const floats = new FloatColumn();
  const values = Float32Array.from({ length: 2_500_003 }, (_, i) => i * 0.5 - 7);
  for (let i = 0; i < values.length; i += 3) floats.push(Array.from(values.subarray(i, i + 3)));
  t.is(floats.length, values.length);
  t.true(Buffer.from(floats.slice(0, values.length).buffer).equals(Buffer.from(values.buffer)));
  for (const [from, to] of [[1_048_570, 1_048_580], [2_097_151, 2_097_153], [0, 0], [2_500_000, 2_600_000]] as const) {
    t.deepEqual(floats.slice(from, to), values.slice(from, to), `${from}–${to}`);
  }
});
