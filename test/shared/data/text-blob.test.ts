// A job's text columns as one blob (shared/data/text-blob.ts): any range of items reads back exactly the strings
// encoded (UTF-8; lone surrogates as U+FFFD), and what is not a text blob is refused in one line.
import test from 'ava';
import fc from 'fast-check';
import { TextBlobError, encodeTextBlob, readTextItems, textBlobItems } from '../../../shared/data/text-blob.js';

const asUtf8 = (s: string): string => new TextDecoder().decode(new TextEncoder().encode(s));

test('any range of items reads back the strings encoded', (t) => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.string({ unit: 'binary' }), fc.string({ unit: 'grapheme' })), { maxLength: 40 }), fc.nat(), fc.nat(), (pairs, a, b) => {
      const prompts = pairs.map((p) => p[0]);
      const responses = pairs.map((p) => p[1]);
      const blob = encodeTextBlob(prompts, responses);
      const read = (offset: number, length: number): Uint8Array => blob.slice(offset, offset + length);
      const n = textBlobItems(blob.subarray(0, 8));
      t.is(n, pairs.length);
      const from = a % (n + 1);
      const to = from + (b % (n + 1 - from));
      t.deepEqual(readTextItems(read, n, from, to), { prompts: prompts.slice(from, to).map(asUtf8), responses: responses.slice(from, to).map(asUtf8) });
    }),
    { numRuns: 300 },
  );
});

test('what is not a text blob is refused', (t) => {
  t.throws(() => textBlobItems(new TextEncoder().encode('{"ids":[]}')), { instanceOf: TextBlobError, message: /not a text blob/ });
  t.throws(() => encodeTextBlob(['a'], []), { instanceOf: TextBlobError, message: '1 prompts but 0 responses' });
  const blob = encodeTextBlob(['p'], ['r']);
  t.throws(() => readTextItems((o, l) => blob.slice(o, o + l), 2, 0, 2), { instanceOf: TextBlobError });
});
