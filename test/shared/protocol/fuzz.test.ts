// Hostile input: random and mutated frames. decodeMessage must either return a valid message or
// throw a ProtocolError — never anything else, never hang — and must stay healthy afterwards.
import test from 'ava';
import fc from 'fast-check';
import {
  PROTOCOL_ERROR_CODES,
  ProtocolError,
  TENSOR_EXT_TYPE,
  decodeMessage,
  encodeMessage,
  messageSchema,
  type ProtocolErrorCode,
} from '../../../shared/protocol/index.js';
import { anyMessageArb, normalize } from './arbitraries.js';

type Outcome = 'ok' | ProtocolErrorCode;

/** Decode one frame; anything thrown that is not a ProtocolError fails the property. */
function outcome(frame: Uint8Array): Outcome {
  try {
    const message = decodeMessage(frame, { maxBytes: 1 << 20 });
    const check = messageSchema.safeParse(message);
    if (!check.success) throw new Error(`decoded an invalid message: ${check.error.message}`);
    return 'ok';
  } catch (e) {
    if (e instanceof ProtocolError && PROTOCOL_ERROR_CODES.includes(e.code)) return e.code;
    throw e;
  }
}

function tally(counts: Map<Outcome, number>, o: Outcome): void {
  counts.set(o, (counts.get(o) ?? 0) + 1);
}

/** Copy into a fresh buffer at `offset`, so odd, unaligned placements get fuzzed too. */
function placeAt(bytes: Uint8Array, offset: number): Uint8Array {
  const out = new Uint8Array(bytes.length + offset).subarray(offset);
  out.set(bytes);
  return out;
}

test('10,000 random frames decode or throw ProtocolError', (t) => {
  const counts = new Map<Outcome, number>();
  let runs = 0;
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(7), (bytes, offset) => {
      runs++;
      tally(counts, outcome(placeAt(bytes, offset)));
    }),
    { numRuns: 10_000 },
  );
  t.is(runs, 10_000);
  t.true((counts.get('malformed') ?? 0) > 5_000, JSON.stringify([...counts]));
});

// Frames that start like a message (a small map whose first key is "type") get past the
// first byte far more often than uniform noise, reaching the validator.
const messageishArb = fc
  .tuple(fc.integer({ min: 1, max: 8 }), fc.constantFrom('hello', 'pull', 'lease', 'result', 'blob', 'error', 'nope'), fc.uint8Array({ maxLength: 200 }))
  .map(([n, type, rest]) => new Uint8Array([0x80 + n, 0xa4, 0x74, 0x79, 0x70, 0x65, 0xa0 + type.length, ...Buffer.from(type), ...rest]));

test('4,000 message-shaped random frames decode or throw ProtocolError', (t) => {
  const counts = new Map<Outcome, number>();
  fc.assert(fc.property(messageishArb, (frame) => void tally(counts, outcome(frame))), { numRuns: 4_000 });
  t.true(counts.size >= 2, JSON.stringify([...counts]));
});

// ---- mutations of valid frames ---------------------------------------------------------------

const INTERESTING: readonly number[][] = [
  [0xc1], // never-used token
  [0xdd, 0xff, 0xff, 0xff, 0xff], // array32 of 4G items
  [0xdf, 0x7f, 0xff, 0xff, 0xff], // map32 of 2G entries
  [0xdb, 0xff, 0xff, 0xff, 0xf0], // str32 far past the end
  [0xc6, 0x7f, 0xff, 0xff, 0xff], // bin32 far past the end
  [0xc9, 0xff, 0xff, 0xff, 0xff, TENSOR_EXT_TYPE], // huge tensor ext
  [0xd4, TENSOR_EXT_TYPE, 0x00], // 1-byte tensor
  [0xc7, 0x06, TENSOR_EXT_TYPE, 0x00, 0x01, 0x01, 0x00, 0x00], // tensor header without data
  [0xd4, 0x72, 0x40], // msgpackr record definition
  [0xd6, 0x70, 0, 0, 0, 1], // msgpackr structured-clone pointer
  [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // uint64
  [0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0], // float64 NaN
  [0xca, 0x7f, 0x80, 0, 0], // float32 +Infinity
  new Array<number>(64).fill(0x91), // deep nesting
  [0x80], // empty map
];

type Mutation =
  | { op: 'flip'; pos: number; bit: number }
  | { op: 'set'; pos: number; byte: number }
  | { op: 'insert'; pos: number; bytes: Uint8Array }
  | { op: 'delete'; pos: number; len: number }
  | { op: 'truncate'; len: number }
  | { op: 'splice'; pos: number; bytes: readonly number[]; overwrite: boolean };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), pos: fc.nat(), bit: fc.nat(7) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('set' as const), pos: fc.nat(), byte: fc.nat(255) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('insert' as const), pos: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), pos: fc.nat(), len: fc.integer({ min: 1, max: 16 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('truncate' as const), len: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('splice' as const), pos: fc.nat(), bytes: fc.constantFrom(...INTERESTING), overwrite: fc.boolean() }) },
);

function mutate(frame: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let bytes = Array.from(frame);
  for (const m of mutations) {
    const at = (pos: number): number => (bytes.length === 0 ? 0 : pos % bytes.length);
    switch (m.op) {
      case 'flip':
        if (bytes.length > 0) bytes[at(m.pos)]! ^= 1 << m.bit;
        break;
      case 'set':
        if (bytes.length > 0) bytes[at(m.pos)] = m.byte;
        break;
      case 'insert':
        bytes.splice(at(m.pos), 0, ...m.bytes);
        break;
      case 'delete':
        bytes.splice(at(m.pos), m.len);
        break;
      case 'truncate':
        bytes = bytes.slice(0, at(m.len));
        break;
      case 'splice':
        bytes.splice(at(m.pos), m.overwrite ? m.bytes.length : 0, ...m.bytes);
        break;
    }
  }
  return Uint8Array.from(bytes);
}

// A fixed pool of valid frames (fixed seed, so the pool is the same each run; mutations vary).
const POOL = fc.sample(anyMessageArb, { numRuns: 300, seed: 20_240_601 }).map((m) => encodeMessage(m).slice());

test('12,000 mutated valid frames decode or throw ProtocolError', (t) => {
  const counts = new Map<Outcome, number>();
  let runs = 0;
  fc.assert(
    fc.property(
      fc.nat(POOL.length - 1),
      fc.array(mutationArb, { minLength: 1, maxLength: 4 }),
      fc.nat(3),
      (index, mutations, offset) => {
        runs++;
        tally(counts, outcome(placeAt(mutate(POOL[index]!, mutations), offset)));
      },
    ),
    { numRuns: 12_000 },
  );
  t.is(runs, 12_000);
  t.log(JSON.stringify(Object.fromEntries(counts)));
  // Mutations inside tensor bytes or strings keep frames valid; the rest must be caught.
  t.true((counts.get('ok') ?? 0) > 100, JSON.stringify([...counts]));
  t.true((counts.get('malformed') ?? 0) > 1_000, JSON.stringify([...counts]));
  t.true(counts.size >= 4, JSON.stringify([...counts]));
});

test('the decoder is healthy after the fuzzing (no corrupted global state)', (t) => {
  const messages = fc.sample(anyMessageArb, { numRuns: 200, seed: 7 });
  for (const m of messages) t.deepEqual(normalize(decodeMessage(encodeMessage(m))), normalize(m));
});
