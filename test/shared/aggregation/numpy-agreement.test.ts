// Differential test: every aggregation rule against an independent float64 numpy oracle
// (test/reference/aggregate_ref.py), on seeded random inputs of many shapes, with duplicated rows, ×100 outliers and
// integer-valued inputs (exact ties). All cases go to python in ONE subprocess call; agreement is
// |fedpool − numpy| ≤ 1e-4·max(1, |numpy|) per coordinate. python3 and numpy are required: without them this FAILS.
import test from 'ava';
import { endianness } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  FedAUEstimator,
  RobustAggregator,
  centeredClipping,
  coordinateMedian,
  geometricMedian,
  krum,
  multiKrum,
  nearestNeighborMixing,
  nna,
  stalenessWeight,
  trimmedMean,
  weightedMean,
  type RuleName,
  type StalenessSpec,
} from '../../../shared/index.js';
import { mulberry32 } from '../../../shared/random.js';
import { run } from '../../helpers/processes.js';

const ORACLE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../reference/aggregate_ref.py');
const PYTHON = process.env.FEDPOOL_PYTHON ?? 'python3';
const RTOL = 1e-4;

// ---------------------------------------------------------------------------------------------------------------
// Seeded randomness: mulberry32 + Box–Muller
// ---------------------------------------------------------------------------------------------------------------


class Rng {
  private readonly u: () => number;
  private spare: number | null = null;
  constructor(seed: number) {
    this.u = mulberry32(seed);
  }
  uniform(): number {
    return this.u();
  }
  int(lo: number, hiIncl: number): number {
    return lo + Math.floor(this.u() * (hiIncl - lo + 1));
  }
  normal(): number {
    if (this.spare !== null) {
      const s = this.spare;
      this.spare = null;
      return s;
    }
    let u1 = this.u();
    while (u1 <= 0) u1 = this.u();
    const u2 = this.u();
    const r = Math.sqrt(-2 * Math.log(u1));
    this.spare = r * Math.sin(2 * Math.PI * u2);
    return r * Math.cos(2 * Math.PI * u2);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.u() * xs.length)];
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------------------------

type Kind = 'gauss' | 'dup' | 'outlier' | 'int';
const NS = [1, 2, 3, 5, 8, 13, 26] as const;
const DS = [1, 7, 100, 5000] as const;
const KINDS: readonly Kind[] = ['gauss', 'dup', 'outlier', 'int'];

interface Dataset {
  label: string;
  index: number; // into the request's "arrays"
  n: number;
  d: number;
  updates: Float32Array[];
}

function makeUpdates(rng: Rng, n: number, d: number, kind: Kind): Float32Array[] {
  const rows: Float32Array[] = [];
  const shift = rng.normal();
  for (let i = 0; i < n; i++) {
    const x = new Float32Array(d);
    for (let j = 0; j < d; j++) x[j] = kind === 'int' ? rng.int(-3, 3) : shift + rng.normal();
    rows.push(x);
  }
  if ((kind === 'dup' || kind === 'int') && n >= 2) {
    // Copy earlier rows over about a third of the later ones (at least one): exact duplicates, distance 0.
    const copies = Math.max(1, Math.floor(n / 3));
    for (let c = 0; c < copies; c++) {
      const dst = rng.int(1, n - 1);
      rows[dst] = Float32Array.from(rows[rng.int(0, dst - 1)]);
    }
  }
  if (kind === 'outlier' && n >= 2) {
    const count = Math.max(1, Math.floor(n / 4));
    for (let c = 0; c < count; c++) {
      const r = rows[rng.int(0, n - 1)];
      for (let j = 0; j < d; j++) r[j] *= 100;
    }
  }
  return rows;
}

/** Some f values the rule tolerates (n > factor·f + extra), and the smallest one it does not. */
function fChoices(n: number, factor: number, extra: number): { valid: number[]; firstInvalid: number } {
  const max = Math.floor((n - extra - 1) / factor); // largest f with n > factor·f + extra (may be < 0)
  const valid = [...new Set([0, 1, 2, max].filter((f) => f >= 0 && f <= max))].sort((a, b) => a - b);
  return { valid, firstInvalid: Math.max(0, max + 1) };
}

// ---------------------------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------------------------

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type TsResult = Float32Array | Float32Array[] | Float64Array | number[];

interface Case {
  id: string;
  group: string;
  request: { [k: string]: Json };
  run: () => TsResult;
  inputs?: Float32Array[]; // echoed in failure messages when small
}

interface Skipped {
  what: string;
  call: () => unknown;
}

interface Suite {
  arrays: { shape: number[]; f32: string }[];
  cases: Case[];
  skipped: Skipped[];
}

function toBase64(rows: readonly Float32Array[], d: number): string {
  const flat = new Float32Array(rows.length * d);
  rows.forEach((r, i) => flat.set(r, i * d));
  return Buffer.from(flat.buffer, flat.byteOffset, flat.byteLength).toString('base64');
}

const PY_RULE: Record<RuleName, string> = {
  mean: 'mean',
  median: 'median',
  'trimmed-mean': 'trimmed_mean',
  krum: 'krum',
  'multi-krum': 'multi_krum',
  geomed: 'geometric_median',
  cclip: 'centered_clipping',
};

function buildSuite(): Suite {
  const rng = new Rng(0x5eed_f00d);
  const arrays: Suite['arrays'] = [];
  const cases: Case[] = [];
  const skipped: Skipped[] = [];
  const addArray = (rows: readonly Float32Array[], d: number): number => {
    arrays.push({ shape: [rows.length, d], f32: toBase64(rows, d) });
    return arrays.length - 1;
  };

  const datasets: Dataset[] = [];
  for (const n of NS) {
    for (const d of DS) {
      for (const kind of KINDS) {
        const updates = makeUpdates(rng, n, d, kind);
        datasets.push({ label: `${kind} n=${n} d=${d}`, index: addArray(updates, d), n, d, updates });
      }
    }
  }

  for (const ds of datasets) {
    const { n, d, updates: X, label } = ds;
    const u = ds.index;
    // At d = 5000 fewer variants per rule: the big vectors dominate the oracle's I/O, and small d already covers them.
    const big = d >= 5000;
    const thin = (fs: number[]): number[] => (big && fs.length > 2 ? [fs[0], fs[fs.length - 1]] : fs);
    const add = (group: string, tag: string, request: { [k: string]: Json }, run: () => TsResult): void => {
      cases.push({ id: `${group}${tag} [${label}]`, group, request: { ...request, updates: u }, run, inputs: X });
    };

    // weightedMean: plain, random positive weights, and some zero weights (never all zero).
    add('weighted_mean', ' unweighted', { op: 'weighted_mean' }, () => weightedMean(X));
    const w = Array.from({ length: n }, () => 0.01 + 5 * rng.uniform());
    add('weighted_mean', ' weighted', { op: 'weighted_mean', weights: w }, () => weightedMean(X, w));
    if (n >= 2) {
      const wz = w.map((v, i) => (i % 2 === 1 ? 0 : v));
      add('weighted_mean', ' zero-weights', { op: 'weighted_mean', weights: wz }, () => weightedMean(X, wz));
    }

    add('coordinate_median', '', { op: 'coordinate_median' }, () => coordinateMedian(X));

    const tm = fChoices(n, 2, 0);
    for (const f of tm.valid) add('trimmed_mean', ` f=${f}`, { op: 'trimmed_mean', f }, () => trimmedMean(X, f));
    skipped.push({ what: `trimmedMean f=${tm.firstInvalid} [${label}]`, call: () => trimmedMean(X, tm.firstInvalid) });

    const kr = fChoices(n, 2, 2);
    for (const f of kr.valid) {
      add('krum', ` f=${f}`, { op: 'krum', f }, () => krum(X, f));
      for (const m of big ? [undefined, rng.int(1, n)] : [undefined, 1, n, rng.int(1, n)]) {
        const req: { [k: string]: Json } = { op: 'multi_krum', f };
        if (m !== undefined) req.m = m;
        add('multi_krum', ` f=${f} m=${m ?? 'n-f'}`, req, () => multiKrum(X, f, m));
      }
    }
    skipped.push({ what: `krum f=${kr.firstInvalid} [${label}]`, call: () => krum(X, kr.firstInvalid) });
    skipped.push({ what: `multiKrum f=${kr.firstInvalid} [${label}]`, call: () => multiKrum(X, kr.firstInvalid) });

    add('geometric_median', '', { op: 'geometric_median' }, () => geometricMedian(X));
    if (rng.uniform() < 0.3) {
      add('geometric_median', ' tol=1e-3 maxIter=5', { op: 'geometric_median', tol: 1e-3, max_iter: 5 }, () =>
        geometricMedian(X, { tol: 1e-3, maxIter: 5 }),
      );
    }

    // Centered clipping: zero or random center, τ from "clips everything" to ∞, one or several iterations.
    const zero = new Float32Array(d);
    const rand = Float32Array.from({ length: d }, () => rng.normal());
    const zi = addArray([zero], d);
    const ri = addArray([rand], d);
    const ccs: [Float32Array, number, number, number][] = [
      [zero, zi, Infinity, 1],
      [rand, ri, 0, 2],
      [rand, ri, 0.5, 3],
      [zero, zi, 0.1 * Math.sqrt(d) + rng.uniform(), rng.int(1, 4)],
    ];
    for (const [center, ci, tau, iters] of ccs) {
      const req: { [k: string]: Json } = { op: 'centered_clipping', center: ci, tau: Number.isFinite(tau) ? tau : null, iters };
      cases.push({
        id: `centered_clipping tau=${tau} iters=${iters} center=${center === zero ? 'zero' : 'rand'} [${label}]`,
        group: 'centered_clipping',
        request: { ...req, updates: u },
        run: () => centeredClipping(X, center, { tau, iters }),
        inputs: X,
      });
    }

    const mixF = fChoices(n, 2, 0);
    for (const f of thin(mixF.valid)) {
      add('nnm', ` f=${f}`, { op: 'nnm', f }, () => nearestNeighborMixing(X, f));
      const pivots = big ? [0, n - 1] : n <= 8 ? Array.from({ length: n }, (_, i) => i) : [0, rng.int(1, n - 2), n - 1];
      for (const p of pivots) add('nna', ` f=${f} pivot=${p}`, { op: 'nna', f, pivot: p }, () => nna(X, f, p));
    }
    skipped.push({ what: `nearestNeighborMixing f=${mixF.firstInvalid} [${label}]`, call: () => nearestNeighborMixing(X, mixF.firstInvalid) });
    skipped.push({ what: `nna f=${mixF.firstInvalid} [${label}]`, call: () => nna(X, mixF.firstInvalid, 0) });

    // RobustAggregator: NNM then every rule, on the materialised NNM rows (oracle side); plus Krum without NNM.
    const robustRules: RuleName[] = ['krum', 'multi-krum', 'trimmed-mean', 'median', 'mean', 'geomed', 'cclip'];
    for (const rule of robustRules) {
      const ch = rule === 'krum' || rule === 'multi-krum' ? fChoices(n, 2, 2) : fChoices(n, 2, 0);
      for (const f of ch.valid) {
        const ms: (number | undefined)[] = rule === 'multi-krum' ? [undefined, 1] : [undefined];
        for (const m of ms) {
          const tau = rule === 'cclip' ? 0.2 * Math.sqrt(d) : undefined;
          const iters = rule === 'cclip' ? 2 : undefined;
          const req: { [k: string]: Json } = { op: 'nnm_then', rule: PY_RULE[rule], f };
          if (m !== undefined) req.m = m;
          if (tau !== undefined) req.tau = tau;
          if (iters !== undefined) req.iters = iters;
          add(`nnm+${rule}`, ` f=${f}${m !== undefined ? ` m=${m}` : ''}`, req, () =>
            new RobustAggregator({ mix: 'nnm', rule, f, m, tau, iters }).aggregate(X),
          );
        }
      }
      if (rule !== 'mean' && rule !== 'geomed' && rule !== 'cclip') {
        skipped.push({
          what: `RobustAggregator nnm+${rule} f=${ch.firstInvalid} [${label}]`,
          call: () => new RobustAggregator({ mix: 'nnm', rule, f: ch.firstInvalid }).aggregate(X),
        });
      }
    }
    for (const rule of ['krum', 'multi-krum'] as const) {
      for (const f of fChoices(n, 2, 2).valid) {
        add(`robust ${rule}`, ` f=${f}`, { op: PY_RULE[rule], f }, () => new RobustAggregator({ mix: 'none', rule, f }).aggregate(X));
      }
    }
  }

  // FedAU over random participation histories: Bernoulli clients, never/always clients, periodic clients.
  for (const N of [1, 4, 25]) {
    for (const T of [1, 40, 300]) {
      for (const cutoff of [Infinity, 1, 2, 7, 50]) {
        const kinds = Array.from({ length: N }, () => rng.pick(['bern', 'bern', 'never', 'always', 'periodic'] as const));
        const ps = kinds.map(() => 0.02 + 0.9 * rng.uniform());
        const periods = kinds.map(() => rng.int(2, 12));
        const rounds: number[][] = [];
        for (let t = 0; t < T; t++) {
          const part: number[] = [];
          for (let c = 0; c < N; c++) {
            const k = kinds[c];
            const on = k === 'always' || (k === 'bern' && rng.uniform() < ps[c]) || (k === 'periodic' && t % periods[c] === 0);
            if (on) part.push(c);
          }
          rounds.push(part);
        }
        const asSet = rng.uniform() < 0.5;
        cases.push({
          id: `fedau N=${N} T=${T} K=${cutoff}${asSet ? ' (Set)' : ''}`,
          group: 'fedau',
          request: { op: 'fedau', num_clients: N, cutoff: Number.isFinite(cutoff) ? cutoff : null, rounds },
          run: () => {
            const est = new FedAUEstimator(N, cutoff);
            const out: number[] = [];
            const readAll = (): void => {
              for (let c = 0; c < N; c++) out.push(est.weight(c));
            };
            readAll();
            for (const part of rounds) {
              est.observeRound(asSet ? new Set(part) : part);
              readAll();
            }
            return out;
          },
        });
      }
    }
  }

  // Staleness weights over integer and fractional τ.
  const taus = [...Array.from({ length: 41 }, (_, i) => i), ...Array.from({ length: 20 }, () => 200 * rng.uniform()), 1e6];
  const specs: StalenessSpec[] = [
    { kind: 'constant' },
    { kind: 'poly', exponent: 0 },
    { kind: 'poly', exponent: 0.5 },
    { kind: 'poly', exponent: 1 },
    { kind: 'poly', exponent: 2.3 },
    { kind: 'hinge', a: 10, b: 4 },
    { kind: 'hinge', a: 0.5, b: 0 },
    { kind: 'hinge', a: 0, b: 3 },
    { kind: 'hinge', a: 2, b: 7.5 },
  ];
  for (const spec of specs) {
    cases.push({
      id: `staleness ${JSON.stringify(spec)}`,
      group: 'staleness',
      request: { op: 'staleness', spec: { ...spec }, taus },
      run: () => taus.map((tau) => stalenessWeight(spec, tau)),
    });
  }

  return { arrays, cases, skipped };
}

// ---------------------------------------------------------------------------------------------------------------
// Oracle call and comparison
// ---------------------------------------------------------------------------------------------------------------

interface OracleResult {
  shape: number[];
  values: Float64Array;
}

function decodeF64(b64: string): Float64Array {
  const buf = Buffer.from(b64, 'base64');
  const copy = new Uint8Array(buf.byteLength); // aligned copy
  copy.set(buf);
  return new Float64Array(copy.buffer);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

async function runOracle(suite: Suite): Promise<{ numpy: string; results: (OracleResult | string)[] }> {
  const request = JSON.stringify({ arrays: suite.arrays, cases: suite.cases.map((c) => ({ id: c.id, ...c.request })) });
  let proc: Awaited<ReturnType<typeof run>>;
  try {
    proc = await run(PYTHON, [ORACLE], { input: request, env: process.env });
  } catch (e) {
    throw new Error(`${PYTHON} could not be started (${(e as Error).message}). This test needs python3 with numpy (both are required on dev machines and CI).`);
  }
  // A python that dies before reading its input (e.g. numpy missing): report its status.
  if (proc.status !== 0) {
    const hint = proc.status === 3 ? ' (numpy is missing: it is required for this test; pip install numpy)' : '';
    throw new Error(`${PYTHON} ${ORACLE} exited with status ${String(proc.status)}${hint}\nstderr:\n${proc.stderr}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(proc.stdout);
  } catch (e) {
    throw new Error(`oracle printed invalid JSON (${(e as Error).message}); stderr:\n${proc.stderr}`);
  }
  if (!isRecord(parsed) || !Array.isArray(parsed.results) || parsed.results.length !== suite.cases.length) {
    throw new Error(`oracle answered ${Array.isArray((parsed as { results?: unknown })?.results) ? 'the wrong number of results' : 'without results'}`);
  }
  const results = parsed.results.map((r: unknown, i: number): OracleResult | string => {
    if (!isRecord(r) || r.id !== suite.cases[i].id) return `oracle result ${i} is malformed or out of order`;
    if (typeof r.error === 'string') return `oracle error: ${r.error}`;
    if (!Array.isArray(r.shape) || typeof r.f64 !== 'string') return 'oracle result lacks shape/f64';
    return { shape: r.shape.map(Number), values: decodeF64(r.f64) };
  });
  return { numpy: String(parsed.numpy), results };
}

function flatten(r: TsResult): { shape: number[]; values: Float64Array } {
  if (r instanceof Float32Array || r instanceof Float64Array) return { shape: [r.length], values: Float64Array.from(r) };
  if (r.length > 0 && r[0] instanceof Float32Array) {
    const rows = r as Float32Array[];
    const d = rows[0].length;
    const v = new Float64Array(rows.length * d);
    rows.forEach((row, i) => v.set(row, i * d));
    return { shape: [rows.length, d], values: v };
  }
  return { shape: [r.length], values: Float64Array.from(r as number[]) };
}

interface Mismatch {
  id: string;
  detail: string;
  ratio: number; // |a−b| / (RTOL·max(1,|b|)); > 1 fails; Infinity for shape/NaN/error problems
}

interface GroupReport {
  cases: number;
  worst: Mismatch | null; // worst case seen, even if within tolerance
  failures: Mismatch[];
}

interface Report {
  numpy: string;
  groups: Map<string, GroupReport>;
  skipped: Skipped[];
  tsMs: number;
  pyMs: number;
}

function dumpInputs(inputs: Float32Array[] | undefined): string {
  if (!inputs || inputs.length * (inputs[0]?.length ?? 0) > 64) return '';
  return `\n      inputs: ${JSON.stringify(inputs.map((r) => Array.from(r)))}`;
}

function compare(c: Case, ts: TsResult | Error, py: OracleResult | string): Mismatch {
  if (ts instanceof Error) return { id: c.id, detail: `fedpool threw ${ts.name}: ${ts.message}${dumpInputs(c.inputs)}`, ratio: Infinity };
  if (typeof py === 'string') return { id: c.id, detail: py, ratio: Infinity };
  const a = flatten(ts);
  const expectSize = py.shape.reduce((s, x) => s * x, 1);
  const sameShape = a.shape.length === py.shape.length ? a.shape.every((x, i) => x === py.shape[i]) : a.values.length === expectSize;
  if (!sameShape || a.values.length !== py.values.length) {
    return { id: c.id, detail: `shape: fedpool [${a.shape.join(',')}] vs numpy [${py.shape.join(',')}]`, ratio: Infinity };
  }
  let worst = 0;
  let at = -1;
  for (let k = 0; k < a.values.length; k++) {
    const x = a.values[k];
    const y = py.values[k];
    const r = Number.isNaN(x) || Number.isNaN(y) ? Infinity : Math.abs(x - y) / (RTOL * Math.max(1, Math.abs(y)));
    if (r > worst || at < 0) {
      worst = r;
      at = k;
    }
  }
  const cols = py.shape.length === 2 ? py.shape[1] : 0;
  const where = cols > 0 ? `[${Math.floor(at / cols)}][${at % cols}]` : `[${at}]`;
  const detail =
    at < 0
      ? 'empty result'
      : `at ${where}: fedpool ${a.values[at]} vs numpy ${py.values[at]} (|Δ| = ${Math.abs(a.values[at] - py.values[at]).toExponential(3)}, ${worst.toFixed(3)}× the tolerance)${worst > 1 ? dumpInputs(c.inputs) : ''}`;
  return { id: c.id, detail, ratio: worst };
}

let memo: Promise<Report> | null = null;

function report(): Promise<Report> {
  memo ??= buildReport();
  return memo;
}

async function buildReport(): Promise<Report> {
  if (endianness() !== 'LE') throw new Error('the oracle protocol assumes a little-endian host');
  const suite = buildSuite();
  const t0 = performance.now();
  const tsResults = suite.cases.map((c): TsResult | Error => {
    try {
      return c.run();
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e));
    }
  });
  const t1 = performance.now();
  const oracle = await runOracle(suite);
  const t2 = performance.now();
  const groups = new Map<string, GroupReport>();
  suite.cases.forEach((c, i) => {
    const g = groups.get(c.group) ?? { cases: 0, worst: null, failures: [] };
    groups.set(c.group, g);
    g.cases++;
    const m = compare(c, tsResults[i], oracle.results[i]);
    if (g.worst === null || m.ratio > g.worst.ratio) g.worst = m;
    if (!(m.ratio <= 1)) g.failures.push(m);
  });
  return { numpy: oracle.numpy, groups, skipped: suite.skipped, tsMs: t1 - t0, pyMs: t2 - t1 };
}

// ---------------------------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------------------------

const GROUPS: { group: string; min: number }[] = [
  { group: 'weighted_mean', min: 250 },
  { group: 'coordinate_median', min: 100 },
  { group: 'trimmed_mean', min: 150 },
  { group: 'krum', min: 50 },
  { group: 'multi_krum', min: 200 },
  { group: 'geometric_median', min: 100 },
  { group: 'centered_clipping', min: 400 },
  { group: 'nnm', min: 150 },
  { group: 'nna', min: 500 },
  { group: 'nnm+krum', min: 50 },
  { group: 'nnm+multi-krum', min: 100 },
  { group: 'nnm+trimmed-mean', min: 150 },
  { group: 'nnm+median', min: 150 },
  { group: 'nnm+mean', min: 150 },
  { group: 'nnm+geomed', min: 150 },
  { group: 'nnm+cclip', min: 150 },
  { group: 'robust krum', min: 50 },
  { group: 'robust multi-krum', min: 50 },
  { group: 'fedau', min: 45 },
  { group: 'staleness', min: 9 },
];

test('the numpy oracle runs (python3 + numpy are required)', async (t) => {
  const r = await report();
  const total = [...r.groups.values()].reduce((s, g) => s + g.cases, 0);
  t.log(`numpy ${r.numpy}: ${total} cases; fedpool ${r.tsMs.toFixed(0)} ms, oracle subprocess ${r.pyMs.toFixed(0)} ms`);
  t.true(total > 0);
});

test('generation covers every rule (invalid f values are skipped, not passed)', async (t) => {
  const r = await report();
  const known = new Set(GROUPS.map((g) => g.group));
  for (const g of r.groups.keys()) t.true(known.has(g), `case group ${g} has no assertion below`);
  for (const { group, min } of GROUPS) {
    const n = r.groups.get(group)?.cases ?? 0;
    t.true(n >= min, `${group}: only ${n} cases generated (expected ≥ ${min})`);
  }
});

test('the f values skipped in generation are exactly those the library rejects', async (t) => {
  const r = await report();
  t.true(r.skipped.length > 0);
  for (const s of r.skipped) t.throws(s.call, { instanceOf: RangeError }, `${s.what} should throw RangeError`);
});

for (const { group } of GROUPS) {
  test(`${group} agrees with numpy (|Δ| ≤ 1e-4·max(1,|numpy|))`, async (t) => {
    const g = (await report()).groups.get(group);
    if (g === undefined) return t.fail(`no ${group} cases were generated`);
    if (g.worst !== null) t.log(`${g.cases} cases; worst ${g.worst.id} ${g.worst.detail.split('\n')[0]}`);
    if (g.failures.length === 0) return t.pass();
    const worst = g.failures.reduce((a, b) => (b.ratio > a.ratio ? b : a));
    const listed = g.failures.slice(0, 12).map((m) => `  - ${m.id}: ${m.detail}`);
    t.fail(
      `${g.failures.length} of ${g.cases} ${group} cases disagree with numpy.\n` +
        `worst: ${worst.id}: ${worst.detail}\n${listed.join('\n')}${g.failures.length > 12 ? `\n  … and ${g.failures.length - 12} more` : ''}`,
    );
  });
}
