// The tally of redundant results (server/quorum.ts): examples, then properties against a brute-force count of
// agreeing results per item.
import test from 'ava';
import fc from 'fast-check';
import { maxRepliesOf, quorumOf, tally } from '../../server/quorum.js';

test('quorum ⌈(R + 1)/2⌉ and the replica limit 2R + 1 (at least 5)', (t) => {
  t.deepEqual([1, 2, 3, 4, 5].map(quorumOf), [1, 2, 2, 3, 3]);
  t.deepEqual([1, 2, 3, 4].map(maxRepliesOf), [5, 5, 7, 9]);
});

test('items are tallied one by one: settled items take their quorum’s value, the rest are unresolved', (t) => {
  const r = tally([Float32Array.of(1, 2, 3), Float32Array.of(1, 9, 3 + 1e-6), Float32Array.of(42, 9, 3)], 1, 2, 1e-4);
  t.deepEqual([...r.value], [1, 9, 3]);
  t.deepEqual(r.unresolved, []);
  t.deepEqual(r.outvoted, [0, 2], 'reply 0 lost item 1, reply 2 lost item 0');
  t.true(r.disagreed);
  const split = tally([Float32Array.of(1, 5), Float32Array.of(2, 5)], 1, 2, 1e-4);
  t.deepEqual(split.unresolved, [0]);
  t.is(split.short, 1);
  t.deepEqual([...split.value], [1, 5], 'an unresolved item shows its earliest largest group');
  t.deepEqual(split.outvoted, [], 'nobody is outvoted on an unsettled item');
});

test('width: an item agrees only when all of its values do', (t) => {
  const r = tally([Float32Array.of(1, 2, 7, 8), Float32Array.of(1, 3, 7, 8)], 2, 2, 1e-4);
  t.deepEqual(r.unresolved, [0]);
  t.deepEqual([...r.value.subarray(2)], [7, 8]);
});

test('relative tolerance with a floor of 1: |a − b| ≤ tol · max(1, |a|, |b|)', (t) => {
  t.deepEqual(tally([Float32Array.of(1000), Float32Array.of(1000.05)], 1, 2, 1e-4).unresolved, []);
  t.deepEqual(tally([Float32Array.of(1000), Float32Array.of(1000.2)], 1, 2, 1e-4).unresolved, [0]);
  t.deepEqual(tally([Float32Array.of(0), Float32Array.of(5e-5)], 1, 2, 1e-4).unresolved, []);
});

test('property: with values drawn from a few well-separated levels, the tally matches a brute-force count', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 7 }), fc.array(fc.array(fc.integer({ min: 0, max: 2 }), { minLength: 3, maxLength: 3 }), { minLength: 1, maxLength: 7 }), (quorum, levels) => {
      const replies = levels.map((l) => Float32Array.from(l, (x) => x * 10));
      const r = tally(replies, 1, quorum, 1e-4);
      for (let i = 0; i < 3; i++) {
        const counts = new Map<number, number>();
        for (const rep of replies) counts.set(rep[i] as number, (counts.get(rep[i] as number) ?? 0) + 1);
        const top = Math.max(...counts.values());
        // The earliest reply whose value has the top count.
        const winner = replies.find((rep) => counts.get(rep[i] as number) === top)?.[i];
        if (r.value[i] !== winner) return false;
        if (r.unresolved.includes(i) !== top < quorum) return false;
        for (let j = 0; j < replies.length; j++) {
          if (top >= quorum && replies[j]?.[i] !== winner && !r.outvoted.includes(j)) return false;
        }
      }
      return true;
    }),
  );
  t.pass();
});
