// Adversary (train.json's `adversary` on real workers): which arrivals it replaces, what it replaces them with
// (built from the honest updates of the same aggregation, or of the async buffer), and what it leaves alone.
import test from 'ava';
import { Adversary, type AdversarySetting } from '../../../shared/training/adversary.js';
import type { ClientArrival } from '../../../shared/training/types.js';

function adversary(over: Partial<AdversarySetting> = {}): Adversary {
  return new Adversary({ clients: [1, 3], attack: 'sign-flip', scale: 1, seed: 11, ...over });
}

/** Client c sends `updates[c]`, with fields that identify it (samples, loss, momentum, baseVersion). */
function arrivals(updates: number[][], clients: number[] = updates.map((_, i) => i)): ClientArrival[] {
  return updates.map((u, i) => ({
    client: clients[i]!,
    baseVersion: 4,
    update: Float32Array.from(u),
    momentum: Float32Array.from(u.map((v) => v * 0.5 + 100)),
    samples: 10 + clients[i]!,
    loss: 0.25 * (clients[i]! + 1),
  }));
}

/** Five clients, dim 3; clients 0, 2, 4 honest when 1 and 3 are Byzantine. */
const UPDATES = [
  [1, 2, -3],
  [50, 50, 50],
  [3, -2, 0],
  [-70, 7, 70],
  [2, 6, 6],
];
const HONEST = [UPDATES[0]!, UPDATES[2]!, UPDATES[4]!];

function mean(vs: number[][]): number[] {
  return vs[0]!.map((_, j) => vs.reduce((s, v) => s + v[j]!, 0) / vs.length);
}

/** Unbiased (h − 1) coordinate-wise std. */
function std(vs: number[][]): number[] {
  const mu = mean(vs);
  return mu.map((m, j) => Math.sqrt(vs.reduce((s, v) => s + (v[j]! - m) ** 2, 0) / (vs.length - 1)));
}

function close(t: { true(v: boolean, m?: string): void }, actual: Float32Array, expected: number[], label: string): void {
  t.true(actual.length === expected.length, `${label}: length ${actual.length} vs ${expected.length}`);
  for (let j = 0; j < expected.length; j++) {
    t.true(Math.abs(actual[j]! - expected[j]!) <= 1e-5 * Math.max(1, Math.abs(expected[j]!)), `${label}[${j}]: ${actual[j]} vs ${expected[j]}`);
  }
}

function snapshot(as: readonly ClientArrival[]): unknown {
  return as.map((a) => ({ ...a, update: Array.from(a.update), momentum: a.momentum === undefined ? undefined : Array.from(a.momentum) }));
}

test('sign-flip replaces exactly the Byzantine updates with −mean of the honest ones', (t) => {
  const input = arrivals(UPDATES);
  const out = adversary().apply(input, 0);
  t.is(out.length, 5);
  t.deepEqual(out.map((a) => a.client), [0, 1, 2, 3, 4], 'order kept');
  for (const c of [0, 2, 4]) t.is(out[c], input[c], `honest client ${c} passes through untouched`);
  const expected = mean(HONEST).map((v) => -v);
  close(t, out[1]!.update, expected, 'client 1');
  close(t, out[3]!.update, expected, 'client 3');
});

test('scaled-sign-flip with scale 10 sends −10·mean of the honest updates', (t) => {
  const out = adversary({ attack: 'scaled-sign-flip', scale: 10 }).apply(arrivals(UPDATES), 0);
  const expected = mean(HONEST).map((v) => -10 * v);
  close(t, out[1]!.update, expected, 'client 1');
  close(t, out[3]!.update, expected, 'client 3');
  for (const c of [0, 2, 4]) t.deepEqual(Array.from(out[c]!.update), UPDATES[c]);
});

test('alie with scale z sends μ + z·σ of the honest updates (unbiased σ)', (t) => {
  const z = 1.5;
  const out = adversary({ attack: 'alie', scale: z }).apply(arrivals(UPDATES), 0);
  const mu = mean(HONEST);
  const sigma = std(HONEST);
  const expected = mu.map((m, j) => m + z * sigma[j]!);
  close(t, out[1]!.update, expected, 'client 1');
  close(t, out[3]!.update, expected, 'client 3');
});

test('foe with scale z sends (1 − z)·μ of the honest updates', (t) => {
  const out = adversary({ attack: 'foe', scale: 3 }).apply(arrivals(UPDATES), 0);
  const expected = mean(HONEST).map((m) => -2 * m);
  close(t, out[1]!.update, expected, 'client 1');
  close(t, out[3]!.update, expected, 'client 3');
});

test('Byzantine arrivals keep every field but the update (samples, loss, momentum, baseVersion)', (t) => {
  const input = arrivals(UPDATES);
  const out = adversary({ attack: 'scaled-sign-flip', scale: 10 }).apply(input, 2);
  for (const c of [1, 3]) {
    const { update: _u, ...rest } = out[c]!;
    const { update: _v, ...orig } = input[c]!;
    t.deepEqual(rest, orig);
    t.is(out[c]!.momentum, input[c]!.momentum, 'the momentum is the client’s own');
    t.not(out[c]!.update, input[c]!.update);
  }
});

test('apply leaves its inputs unmutated and returns a new array', (t) => {
  for (const attack of ['sign-flip', 'scaled-sign-flip', 'alie', 'foe', 'random'] as const) {
    const input = arrivals(UPDATES);
    const before = snapshot(input);
    const out = adversary({ attack, scale: 2 }).apply(input, 1);
    t.not(out, input);
    t.deepEqual(snapshot(input), before, attack);
  }
});

test('Byzantine clients are found by client id, not position; order is kept when they come first', (t) => {
  // Clients 3, 0, 1 arrive in that order; 1 and 3 are Byzantine, so the one honest update is client 0's.
  const input = arrivals([UPDATES[3]!, UPDATES[0]!, UPDATES[1]!], [3, 0, 1]);
  const out = adversary().apply(input, 0);
  t.deepEqual(out.map((a) => a.client), [3, 0, 1]);
  t.is(out[1], input[1]);
  const expected = UPDATES[0]!.map((v) => -v);
  close(t, out[0]!.update, expected, 'client 3');
  close(t, out[2]!.update, expected, 'client 1');
});

test('with no honest arrival the attack builds on the Byzantine clients’ own updates', (t) => {
  const input = arrivals([UPDATES[1]!, UPDATES[3]!], [1, 3]);
  const out = adversary().apply(input, 0);
  const expected = mean([UPDATES[1]!, UPDATES[3]!]).map((v) => -v);
  close(t, out[0]!.update, expected, 'client 1');
  close(t, out[1]!.update, expected, 'client 3');
  const scaled = adversary({ attack: 'scaled-sign-flip', scale: 10 }).apply(input, 0);
  close(t, scaled[0]!.update, expected.map((v) => 10 * v), 'client 1, scaled');
});

test('no Byzantine arrival: the arrivals come back as they are', (t) => {
  const input = arrivals([UPDATES[0]!, UPDATES[2]!], [0, 2]);
  const out = adversary().apply(input, 0);
  t.deepEqual(out, input);
  t.is(out[0], input[0]);
  t.is(out[1], input[1]);
  t.deepEqual(adversary().apply([], 0), []);
});

test('random: deterministic per step, different across steps, one noise vector per Byzantine client', (t) => {
  const a = adversary({ attack: 'random', scale: 1, seed: 5 });
  const s3 = a.apply(arrivals(UPDATES), 3);
  const again = a.apply(arrivals(UPDATES), 3);
  const fresh = adversary({ attack: 'random', scale: 1, seed: 5 }).apply(arrivals(UPDATES), 3);
  const s4 = a.apply(arrivals(UPDATES), 4);
  t.deepEqual(Array.from(again[1]!.update), Array.from(s3[1]!.update), 'same step, same vectors');
  t.deepEqual(Array.from(again[3]!.update), Array.from(s3[3]!.update));
  t.deepEqual(Array.from(fresh[1]!.update), Array.from(s3[1]!.update), 'a new Adversary with the same seed agrees');
  t.notDeepEqual(Array.from(s4[1]!.update), Array.from(s3[1]!.update), 'another step, other noise');
  t.notDeepEqual(Array.from(s3[1]!.update), Array.from(s3[3]!.update), 'each Byzantine client its own noise');
  const otherSeed = adversary({ attack: 'random', scale: 1, seed: 6 }).apply(arrivals(UPDATES), 3);
  t.notDeepEqual(Array.from(otherSeed[1]!.update), Array.from(s3[1]!.update), 'the seed matters');
  for (const c of [0, 2, 4]) t.deepEqual(Array.from(s3[c]!.update), UPDATES[c]);
  t.true(s3[1]!.update.every((v) => Number.isFinite(v)));
});

test('random: the scale is the noise std', (t) => {
  const d = 4000;
  const big = Array.from({ length: d }, () => 0);
  const input = arrivals([big, big], [0, 1]);
  const out = new Adversary({ clients: [1], attack: 'random', scale: 3, seed: 1 }).apply(input, 0);
  let ss = 0;
  for (const v of out[1]!.update) ss += v * v;
  const sd = Math.sqrt(ss / d);
  t.true(Math.abs(sd - 3) < 0.2, `sample std ${sd}`);
});

test('flipsLabels: only for label-flip and only for the listed clients', (t) => {
  const flip = adversary({ attack: 'label-flip' });
  t.deepEqual([0, 1, 2, 3, 4].map((c) => flip.flipsLabels(c)), [false, true, false, true, false]);
  for (const attack of ['sign-flip', 'scaled-sign-flip', 'alie', 'foe', 'random'] as const) {
    const a = adversary({ attack });
    t.false(a.flipsLabels(1), attack);
    t.false(a.flipsLabels(0), attack);
  }
  t.true(flip.isByzantine(3));
  t.false(flip.isByzantine(2));
});

test('label-flip: apply and applyOne are the identity (the attack is on the data side)', (t) => {
  const a = adversary({ attack: 'label-flip' });
  const input = arrivals(UPDATES);
  const out = a.apply(input, 0);
  t.is(out.length, input.length);
  for (let i = 0; i < input.length; i++) t.is(out[i], input[i]);
  t.is(a.applyOne(input[1]!, [input[0]!.update], 0, 1), input[1]);
});

test('applyOne builds on the buffered honest updates, not on the client’s own', (t) => {
  const input = arrivals(UPDATES);
  const buffered = [Float32Array.from(UPDATES[0]!), Float32Array.from(UPDATES[2]!)];
  const bufferedCopy = buffered.map((b) => Array.from(b));
  const own = Array.from(input[1]!.update);
  const out = adversary({ attack: 'scaled-sign-flip', scale: 10 }).applyOne(input[1]!, buffered, 7, 2);
  close(t, out.update, mean([UPDATES[0]!, UPDATES[2]!]).map((v) => -10 * v), 'client 1');
  const { update: _u, ...rest } = out;
  const { update: _v, ...orig } = input[1]!;
  t.deepEqual(rest, orig, 'other fields kept');
  t.deepEqual(Array.from(input[1]!.update), own, 'input unmutated');
  t.deepEqual(buffered.map((b) => Array.from(b)), bufferedCopy, 'buffer unmutated');
});

test('applyOne with an empty buffer builds on the client’s own update; honest clients pass through', (t) => {
  const input = arrivals(UPDATES);
  const a = adversary();
  close(t, a.applyOne(input[3]!, [], 0, 0).update, UPDATES[3]!.map((v) => -v), 'client 3');
  t.is(a.applyOne(input[2]!, [input[0]!.update], 0, 1), input[2], 'honest client untouched');
});

test('applyOne random: deterministic per (step, index), different otherwise', (t) => {
  const a = adversary({ attack: 'random', scale: 1 });
  const x = arrivals(UPDATES)[1]!;
  const v = (step: number, index: number) => Array.from(a.applyOne(x, [], step, index).update);
  t.deepEqual(v(2, 1), v(2, 1));
  t.notDeepEqual(v(2, 1), v(2, 2));
  t.notDeepEqual(v(2, 1), v(3, 1));
});
