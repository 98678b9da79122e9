// JSON.stringify in steps (server/json-steps.ts) writes exactly JSON.stringify's text for any JSON value, pausing
// between steps however large the value.
import test from 'ava';
import fc from 'fast-check';
import { stringifyInSteps } from '../../server/json-steps.js';

test('stringifying in steps gives exactly JSON.stringify', async (t) => {
  await fc.assert(
    fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), fc.constantFrom(1, 3, 16_384), async (value, nodesPerStep) => {
      t.is(await stringifyInSteps(value, () => Promise.resolve(), nodesPerStep), JSON.stringify(value));
    }),
    { numRuns: 500 },
  );
  const proto = JSON.parse('{"__proto__":[1,{"a":[2,{"b":3}]}],"x":[]}') as unknown;
  t.is(await stringifyInSteps(proto, () => Promise.resolve(), 1), JSON.stringify(proto));
});

test('a meta of many lines is written in many steps', async (t) => {
  const meta = { format: 'f', lines: Array.from({ length: 50_000 }, (_, i) => ({ id: `line-${i}`, pair: [i, { w: i % 3 }], group: `g${i % 7}` })) };
  let pauses = 0;
  const text = await stringifyInSteps(meta, () => {
    pauses++;
    return Promise.resolve();
  }, 1_000);
  t.is(text, JSON.stringify(meta));
  t.true(pauses >= 100, `${pauses} pauses`);
});
