// Large JSON bodies without blocking the event loop (issue 13): the incremental parser accepts exactly what
// JSON.parse accepts and builds the same value, whatever the chunking, and refuses past its depth and entry limits;
// the sliced validation of a job body gives exactly what parseJobRequest gives (the same request or the same error).
import test from 'ava';
import fc from 'fast-check';
import { JsonLimitError, JsonStreamParser } from '../../server/json-stream.js';
import { parseJobRequest, type ParsedJob } from '../../server/jobs.js';
import type { Strings } from '../../server/columns.js';
import { CollectedItems, parseJobRequestInSlices } from '../../server/job-request-slices.js';
import { TimeSlice } from '../../server/time-slice.js';

type Outcome = { ok: true; value: unknown } | { ok: false; error: string };

function streamParse(bytes: Buffer, cuts: number[], nativeValueBytes: number, maxEntries = 1e9, maxDepth = 64): Outcome {
  const parser = new JsonStreamParser({ maxDepth, maxEntries, nativeValueBytes });
  try {
    let at = 0;
    for (const cut of [...cuts.map((c) => c % (bytes.length + 1)).sort((a, b) => a - b), bytes.length]) {
      if (cut < at) continue;
      parser.push(bytes.subarray(at, cut));
      at = cut;
    }
    return { ok: true, value: parser.end() };
  } catch (e) {
    return { ok: false, error: e instanceof JsonLimitError ? e.limit : 'syntax' };
  }
}

function nativeParse(bytes: Buffer): Outcome {
  try {
    return { ok: true, value: JSON.parse(bytes.toString('utf8')) as unknown };
  } catch {
    return { ok: false, error: 'syntax' };
  }
}

/** JSON text with random whitespace between tokens, and now and then a mangled byte. */
const jsonText = fc
  .tuple(fc.json({ maxDepth: 5 }), fc.array(fc.constantFrom(' ', '\n', '\t', '\r', '', '', ''), { minLength: 1, maxLength: 8 }), fc.nat(), fc.option(fc.constantFrom('', ',', ']', '}', '"', '\\', '\u0001', '1e', '-', 'tru', '[', '{"a"'), { freq: 2 }))
  .map(([text, spaces, n, junk]) => {
    let i = 0;
    const spaced = text.replace(/[,:[\]{}]/g, (m) => `${m}${spaces[i++ % spaces.length] ?? ''}`);
    if (junk === null) return spaced;
    const at = n % (spaced.length + 1);
    return spaced.slice(0, at) + junk + spaced.slice(at);
  });

test('the incremental parser agrees with JSON.parse on any text, cut into any chunks', (t) => {
  fc.assert(
    fc.property(jsonText, fc.array(fc.nat(), { maxLength: 12 }), fc.constantFrom(1, 2, 7, 64, 65_536), (text, cuts, native) => {
      const bytes = Buffer.from(text);
      const expected = nativeParse(bytes);
      const got = streamParse(bytes, cuts, native);
      if (!expected.ok) return !got.ok;
      return got.ok && JSON.stringify(got.value) === JSON.stringify(expected.value) && JSON.stringify(Object.keys(got.value ?? {})) === JSON.stringify(Object.keys(expected.value ?? {}));
    }),
    { numRuns: 1500 },
  );
  // Split multi-byte and invalid UTF-8 inside strings decode as Buffer#toString does; "__proto__" stays a member.
  const bytes = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xe2, 0x82]), Buffer.from('x€𝄞","__proto__":["'), Buffer.from([0xff, 0xc3]), Buffer.from('"]}')]);
  for (let cut = 0; cut <= bytes.length; cut++) t.deepEqual(streamParse(bytes, [cut, cut + 3], 2), nativeParse(bytes));
  t.true(Object.hasOwn((streamParse(bytes, [5], 1) as { value: object }).value, '__proto__'));
});

/** The deepest nesting and the most entries of one container in a parsed JSON value. */
function shapeOf(v: unknown, depth = 0): { depth: number; entries: number } {
  if (typeof v !== 'object' || v === null) return { depth, entries: 0 };
  const children = Array.isArray(v) ? v : Object.values(v);
  let out = { depth: depth + 1, entries: children.length };
  for (const c of children) {
    const s = shapeOf(c, depth + 1);
    out = { depth: Math.max(out.depth, s.depth), entries: Math.max(out.entries, s.entries) };
  }
  return out;
}

test('the parser refuses a body nested deeper than its limit or with more entries in one container, and nothing at the limits', (t) => {
  fc.assert(
    fc.property(fc.json({ maxDepth: 6 }), fc.array(fc.nat(), { maxLength: 6 }), fc.constantFrom(1, 5, 65_536), (text, cuts, native) => {
      const bytes = Buffer.from(text);
      const { depth, entries } = shapeOf(JSON.parse(text));
      const atLimits = streamParse(bytes, cuts, native, Math.max(1, entries), Math.max(1, depth));
      if (!atLimits.ok) return false;
      if (entries > 1 && streamParse(bytes, cuts, native, entries - 1, 64).ok) return false;
      if (depth > 1 && streamParse(bytes, cuts, native, 1e9, depth - 1).ok) return false;
      return true;
    }),
    { numRuns: 800 },
  );
  t.deepEqual(streamParse(Buffer.from(`{"items":[${'1,'.repeat(99)}1]}`), [], 8, 99), { ok: false, error: 'entries' });
  t.deepEqual(streamParse(Buffer.from('['.repeat(65) + ']'.repeat(65)), [], 8, 10, 64), { ok: false, error: 'depth' });
});

const HEX = 'ab'.repeat(32);

/** `good` elements with, now and then, one or two `bad` ones at random places. */
function withStrays<T>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<unknown>, maxLength: number): fc.Arbitrary<unknown[]> {
  return fc
    .tuple(fc.array(good, { maxLength }), fc.array(fc.tuple(fc.nat(), bad), { maxLength: 2 }), fc.boolean())
    .map(([values, strays, clean]) => {
      const out: unknown[] = [...values];
      if (!clean) for (const [at, v] of strays) out.splice(at % (out.length + 1), 0, v);
      return out;
    });
}

const featureItem = fc.record({ id: fc.constantFrom('a', 'b', 'c'), features: fc.array(fc.double({ noNaN: true, noDefaultInfinity: true, min: -10, max: 10 }), { minLength: 2, maxLength: 2 }) });
const textItem = fc.record({ id: fc.constantFrom('a', 'b'), prompt: fc.string(), response: fc.string(), group: fc.string() });
const badItem = fc.constantFrom<unknown>({ id: '' }, { id: 'a' }, { id: 'a', features: ['x'] }, { id: 'a', features: [1] }, { id: 'a', prompt: 'p' }, { id: 'a', features: [1, 1e39] }, { id: 'a', prompt: 'p', response: 'r' }, 7, null);

/** Job bodies, mostly valid, in both forms, with stray bad elements and fields. */
const jobBody = fc
  .tuple(
    fc.oneof(
      fc.record({ model: fc.constant(HEX), items: withStrays(featureItem, badItem, 40) }),
      fc.record({ model: fc.constant(HEX), items: withStrays(textItem, badItem, 40) }),
      fc.record({
        scorer: fc.constant({ model: 'm' }),
        columns: fc.nat({ max: 30 }).chain((n) =>
          fc.record({
            ids: withStrays(fc.constantFrom('a', 'b'), fc.constantFrom<unknown>('', 3), n),
            prompts: withStrays(fc.constantFrom('p', 'q'), fc.constantFrom<unknown>(1, null), n),
            responses: withStrays(fc.constant('r'), fc.constantFrom<unknown>(false), n),
          }, { requiredKeys: ['ids'] }),
        ),
      }),
      fc.record({ model: fc.constant(HEX), columns: fc.record({ ids: withStrays(fc.constant('a'), fc.constant(''), 3), features: fc.constantFrom({ dim: 1, base64: 'AACAPw==' }, { dim: 0, base64: '' }) }) }),
    ),
    fc.record(
      {
        model: fc.constantFrom(HEX, 'abc'),
        kind: fc.constantFrom('score', 'other'),
        shardSize: fc.constantFrom(2, 0, 'x'),
        shardsize: fc.constant(1),
        meta: fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant({ lines: [{ id: 'a' }, 1e400] })),
        items: fc.constant([{ id: 'x', features: [1, 2] }]),
      },
      { requiredKeys: [] },
    ),
    fc.nat({ max: 3 }),
  )
  .map(([body, extra, n]) => (n === 0 ? { ...body, ...extra } : n === 1 && extra.meta !== undefined ? { ...body, meta: extra.meta } : body));

/** A parse's outcome with its columns as plain arrays (a row-form job's strings are StringColumns). */
function plain(p: ParsedJob): unknown {
  if (!p.ok) return p;
  const c = p.columns;
  const all = (s: Strings | undefined): string[] | undefined => s?.slice(0, s.length);
  return { ...p, columns: { ids: all(c.ids), features: c.features?.slice(0, c.features.length), prompts: all(c.prompts), responses: all(c.responses) } };
}

test('sliced validation of a job body gives exactly what parseJobRequest gives', async (t) => {
  await fc.assert(
    fc.asyncProperty(jobBody, fc.constantFrom(0, 1_000), async (body, sliceMs) => {
      const text = JSON.stringify(body);
      const expected = parseJobRequest(JSON.parse(text));
      const got = await parseJobRequestInSlices(JSON.parse(text), new TimeSlice(sliceMs));
      t.deepEqual(plain(got), plain(expected), text);
    }),
    { numRuns: 1500 },
  );
});

test('row-form items collected as the body arrives give exactly what parseJobRequest gives, without the item objects', async (t) => {
  await fc.assert(
    fc.asyncProperty(jobBody, fc.array(fc.nat(), { maxLength: 6 }), fc.constantFrom(1, 7, 64), async (body, cuts, native) => {
      const text = JSON.stringify(body);
      const expected = parseJobRequest(JSON.parse(text));
      const parser = new JsonStreamParser({ maxDepth: 64, maxEntries: 1e9, nativeValueBytes: native, collect: { key: 'items', open: () => new CollectedItems() } });
      const bytes = Buffer.from(text);
      let at = 0;
      for (const cut of [...cuts.map((c) => c % (bytes.length + 1)).sort((a, b) => a - b), bytes.length]) {
        parser.push(bytes.subarray(at, Math.max(at, cut)));
        at = Math.max(at, cut);
      }
      const value = parser.end() as Record<string, unknown>;
      const collected = value['items'] instanceof CollectedItems;
      const got = await parseJobRequestInSlices(value, new TimeSlice(0));
      if (!expected.ok || !got.ok) {
        t.deepEqual(got, expected, text);
        return;
      }
      // Collected items are columns only: the request keeps the first item.
      const { items, ...rest } = got.request;
      const { items: expectedItems, ...expectedRest } = expected.request;
      t.deepEqual(rest, expectedRest, text);
      t.deepEqual(items, collected ? expectedItems?.slice(0, 1) : expectedItems, text);
      t.deepEqual([got.form, got.dim, (plain(got) as { columns: unknown }).columns], [expected.form, expected.dim, (plain(expected) as { columns: unknown }).columns], text);
    }),
    { numRuns: 1500 },
  );
});
