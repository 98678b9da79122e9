// Loaded by ava before every test file (package.json "ava.require"): every fast-check property starts from one
// seed, so that a run is reproducible and CI cannot fail on a seed nobody can replay. FEDPOOL_FC_SEED=N runs another
// seed, FEDPOOL_FC_SEED=random a fresh one per test file (fast-check prints the seed of any failure) — for hunting
// the cases a fixed seed never reaches.
import fc from 'fast-check';

const given = process.env.FEDPOOL_FC_SEED;
const seed = given === undefined || given === '' ? 20261204 : given === 'random' ? (Math.random() * 2 ** 32) | 0 : Number(given);
if (!Number.isSafeInteger(seed)) throw new Error(`FEDPOOL_FC_SEED: expected an integer or "random", got ${JSON.stringify(given)}`);
fc.configureGlobal({ ...fc.readConfigureGlobal(), seed });
