// Splitting a central dataset into virtual clients' partitions (train.json `data.partition`): IID or Dirichlet
// label skew. Deterministic per seed on every platform (mulberry32 drives everything).
import { mulberry32, normal, shuffle } from '../random.js';

function checkCount(value: number, what: string, min: number): void {
  if (!Number.isInteger(value) || value < min) throw new RangeError(`partition: ${what} must be an integer ≥ ${min}, got ${String(value)}`);
}

/**
 * IID partition of rows 0..n−1 over `clients`: a seeded shuffle cut into contiguous pieces whose sizes differ by at
 * most one (the first n mod clients clients get one extra row). So no client is empty when n ≥ clients.
 * Each client's indices are returned sorted ascending.
 */
export function partitionIid(n: number, clients: number, seed: number): number[][] {
  checkCount(n, 'n', 0);
  checkCount(clients, 'clients', 1);
  const rand = mulberry32(seed);
  const rows = Array.from({ length: n }, (_, i) => i);
  shuffle(rows, rand);
  const out: number[][] = [];
  const base = Math.floor(n / clients);
  const extra = n % clients;
  let at = 0;
  for (let c = 0; c < clients; c++) {
    const size = base + (c < extra ? 1 : 0);
    out.push(rows.slice(at, at + size).sort((a, b) => a - b));
    at += size;
  }
  return out;
}

/**
 * log of one Gamma(alpha, 1) sample: Marsaglia–Tsang for alpha ≥ 1; for alpha < 1 the boost
 * Gamma(alpha) = Gamma(alpha + 1)·U^(1/alpha), kept in log space so tiny alphas do not underflow to 0.
 */
export function logGammaSample(alpha: number, rand: () => number): number {
  if (!(alpha > 0) || !Number.isFinite(alpha)) throw new RangeError(`gamma: alpha must be a finite number > 0, got ${String(alpha)}`);
  if (alpha < 1) {
    const u = 1 - rand(); // (0, 1]
    return logGammaSample(alpha + 1, rand) + Math.log(u) / alpha;
  }
  const d = alpha - 1 / 3;
  const c = 1 / Math.sqrt(9 * d);
  for (;;) {
    const x = normal(rand);
    const t = 1 + c * x;
    if (t <= 0) continue;
    const v = t * t * t;
    const u = rand();
    if (u < 1 - 0.0331 * x * x * x * x) return Math.log(d * v);
    if (u > 0 && Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return Math.log(d * v);
  }
}

/** One draw from the symmetric Dirichlet(alpha, …, alpha) over k outcomes (normalised Gamma samples). */
export function dirichletSample(k: number, alpha: number, rand: () => number): Float64Array {
  const logs = new Float64Array(k);
  let max = -Infinity;
  for (let i = 0; i < k; i++) {
    logs[i] = logGammaSample(alpha, rand);
    if (logs[i] > max) max = logs[i];
  }
  let sum = 0;
  for (let i = 0; i < k; i++) {
    logs[i] = Math.exp(logs[i] - max);
    sum += logs[i];
  }
  for (let i = 0; i < k; i++) logs[i] /= sum;
  return logs;
}

/**
 * Dirichlet label-skew partition (the usual FL benchmark split): for each class, proportions over clients are drawn
 * from Dir(alpha·1) and the class's shuffled rows are cut at the rounded cumulative proportions. Small alpha → each
 * client sees few classes; large alpha → close to IID.
 *
 * Non-empty guarantee: when n ≥ clients, every client that ended up empty takes one row (the last one assigned) from
 * the currently largest client (lowest id on ties); that client has ≥ 2 rows while any client is empty, so the
 * repair always succeeds and moves at most `clients − 1` rows. When n < clients some clients stay empty.
 * Every row is assigned exactly once; each client's indices are returned sorted ascending.
 */
export function partitionDirichlet(labels: ArrayLike<number>, numClasses: number, clients: number, alpha: number, seed: number): number[][] {
  checkCount(numClasses, 'numClasses', 1);
  checkCount(clients, 'clients', 1);
  if (typeof alpha !== 'number' || !Number.isFinite(alpha) || !(alpha > 0)) throw new RangeError(`partition: alpha must be a finite number > 0, got ${String(alpha)}`);
  const byClass: number[][] = Array.from({ length: numClasses }, () => []);
  for (let i = 0; i < labels.length; i++) {
    const y = labels[i];
    if (!Number.isInteger(y) || y < 0 || y >= numClasses) throw new RangeError(`partition: label of row ${i} must be an integer in [0, ${numClasses}), got ${String(y)}`);
    byClass[y].push(i);
  }
  const rand = mulberry32(seed);
  const out: number[][] = Array.from({ length: clients }, () => []);
  for (const rows of byClass) {
    shuffle(rows, rand);
    const props = dirichletSample(clients, alpha, rand);
    let cum = 0;
    let start = 0;
    for (let c = 0; c < clients; c++) {
      cum += props[c];
      const end = c === clients - 1 ? rows.length : Math.min(rows.length, Math.round(cum * rows.length));
      for (let r = start; r < end; r++) out[c].push(rows[r]);
      start = Math.max(start, end);
    }
  }
  if (labels.length >= clients) {
    for (let c = 0; c < clients; c++) {
      if (out[c].length > 0) continue;
      let largest = 0;
      for (let j = 1; j < clients; j++) if (out[j].length > out[largest].length) largest = j;
      out[c].push(out[largest].pop() as number);
    }
  }
  for (const rows of out) rows.sort((a, b) => a - b);
  return out;
}
