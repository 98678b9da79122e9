// Aggregation throughput: fedpool's rules beside the fastest idiomatic numpy for the same sizes.
//
//   node --import=tsx bench/aggregate.ts [--quick] [--runs N]
//
// Each case: one warm-up call, then the best of N (default 5) timed calls, on seeded float32 data. The numpy side
// (bench/aggregate_numpy.py) makes its own data of the same sizes and runs in a child python3 whose environment
// lacks OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE (set on some machines here for old OpenBLAS builds; they slow a
// current numpy); the table footer says which OpenBLAS kernel and thread count numpy then used.
// fedpool's WebAssembly SIMD kernels (docs/kernels.md) where a rule has them, on one thread and then with helper
// threads (one per core beyond the first) on the same inputs in shared memory — where a coordinator with aggregation
// threads decodes training updates — beside the scalar JavaScript reference (the fallback where WebAssembly cannot
// run); numpy's BLAS calls may use every core.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  coordinateMedian,
  geometricMedian,
  krum,
  nearestNeighborMixing,
  trimmedMean,
  weightedMean,
} from '../shared/index.js';
import { defaultKernelThreads, startKernelThreads } from '../cli/kernel-threads.js';
import { useKernelThreads } from '../shared/kernels/parallel.js';
import { useKernels } from '../shared/kernels/wasm.js';
import { mulberry32 } from '../shared/random.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const runsAt = args.indexOf('--runs');
const runs = runsAt >= 0 ? Number(args[runsAt + 1]) : 5;
if (!Number.isInteger(runs) || runs < 1) {
  console.error('usage: node --import=tsx bench/aggregate.ts [--quick] [--runs N]  (N ≥ 1)');
  process.exit(2);
}

// Sizes: keep in step with bench/aggregate_numpy.py.
const [nA, dA] = quick ? [10, 100_000] : [50, 1_000_000];
const [nB, dB, f] = quick ? [12, 20_000, 2] : [30, 200_000, 5];


/** n rows of d standard normals (Box–Muller, both outputs used). */
function gaussianRows(rand: () => number, n: number, d: number): Float32Array[] {
  const rows: Float32Array[] = [];
  for (let i = 0; i < n; i++) {
    const x = new Float32Array(d);
    for (let j = 0; j < d; j += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - rand()));
      const th = 2 * Math.PI * rand();
      x[j] = r * Math.cos(th);
      if (j + 1 < d) x[j + 1] = r * Math.sin(th);
    }
    rows.push(x);
  }
  return rows;
}

function bestMs(fn: () => unknown): number {
  fn(); // warm-up
  let best = Infinity;
  for (let r = 0; r < runs; r++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

interface Row {
  key: string;
  label: string;
  ms: number;
  scalarMs: number;
  threadedMs: number | null;
}

const rand = mulberry32(12345);
const XA = gaussianRows(rand, nA, dA);
const w = Array.from({ length: nA }, () => 0.01 + 4.99 * rand());
const XB = gaussianRows(rand, nB, dB);
// The same inputs in shared memory, where a coordinator with aggregation threads decodes its updates.
const shared = (rows: Float32Array[]): Float32Array[] => rows.map((r) => {
  const s = new Float32Array(new SharedArrayBuffer(r.byteLength));
  s.set(r);
  return s;
});
const helpers = defaultKernelThreads();
const threads = helpers > 0 ? await startKernelThreads(helpers) : null;
useKernelThreads(null);
const [SA, SB] = threads === null ? [XA, XB] : [shared(XA), shared(XB)];
const g = (x: number): string => x.toExponential(0).replace('e+', 'e');

const rows: Row[] = [];
/** fn(inputs) with the scalar code, with the kernels, and with the kernels and helper threads on shared inputs. */
const add = <X,>(key: string, label: string, inputs: X, sharedInputs: X, fn: (x: X) => unknown): void => {
  process.stderr.write(`fedpool ${label} …\n`);
  useKernels('js');
  const scalarMs = bestMs(() => fn(inputs));
  useKernels('wasm');
  const ms = bestMs(() => fn(inputs));
  let threadedMs: number | null = null;
  if (threads !== null) {
    useKernelThreads(threads);
    threadedMs = bestMs(() => fn(sharedInputs));
    useKernelThreads(null);
  }
  rows.push({ key, label, ms, scalarMs, threadedMs });
};
add('weightedMean', `weightedMean n=${nA} d=${g(dA)} (weighted)`, XA, SA, (x) => weightedMean(x, w));
add('nearestNeighborMixing', `nearestNeighborMixing n=${nB} d=${g(dB)} f=${f}`, XB, SB, (x) => nearestNeighborMixing(x, f));
add('coordinateMedian', `coordinateMedian n=${nB} d=${g(dB)}`, XB, SB, (x) => coordinateMedian(x));
add('trimmedMean', `trimmedMean n=${nB} d=${g(dB)} f=${f}`, XB, SB, (x) => trimmedMean(x, f));
add('krum', `krum n=${nB} d=${g(dB)} f=${f}`, XB, SB, (x) => krum(x, f));
add('geometricMedian', `geometricMedian n=${nB} d=${g(dB)}`, XB, SB, (x) => geometricMedian(x));

// numpy, in a child without the OpenBLAS overrides.
interface NumpyReport {
  numpy: string;
  python: string;
  blas: Record<string, unknown>;
  env: Record<string, string | null>;
  results: { key: string; ms: number; note: string }[];
}
const removed = ['OPENBLAS_CORETYPE', 'OPENBLAS_L2_SIZE'].filter((k) => process.env[k] !== undefined);
const childEnv: NodeJS.ProcessEnv = { ...process.env };
delete childEnv.OPENBLAS_CORETYPE;
delete childEnv.OPENBLAS_L2_SIZE;
const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'aggregate_numpy.py');
process.stderr.write('numpy …\n');
const py = spawnSync('python3', [script, ...(quick ? ['--quick'] : []), '--runs', String(runs)], {
  env: childEnv,
  encoding: 'utf8',
  maxBuffer: 1 << 24,
});
let numpy: NumpyReport | null = null;
let numpyError = '';
if (py.error) numpyError = `python3 could not be started: ${py.error.message}`;
else if (py.status !== 0) numpyError = `python3 ${script} exited with status ${String(py.status)}:\n${py.stderr}`;
else {
  try {
    numpy = JSON.parse(py.stdout) as NumpyReport;
  } catch (e) {
    numpyError = `could not parse the numpy helper's output (${(e as Error).message})`;
  }
}

// Table.
const threadedHeader = `+ ${helpers} thread${helpers === 1 ? '' : 's'} ms`;
const header = ['case', 'fedpool ms', threadedHeader, 'scalar JS ms', 'numpy ms', 'ratio (fedpool/numpy)', 'numpy method'];
const ms = (x: number): string => (x < 10 ? x.toFixed(2) : x.toFixed(1));
const body = rows.map((r) => {
  const np = numpy?.results.find((x) => x.key === r.key);
  const best = Math.min(r.ms, r.threadedMs ?? Infinity);
  return [r.label, ms(r.ms), r.threadedMs === null ? 'n/a' : ms(r.threadedMs), ms(r.scalarMs), np ? ms(np.ms) : 'n/a', np ? (best / np.ms).toFixed(1) + '×' : 'n/a', np?.note ?? ''];
});
const widths = header.map((h, c) => Math.max(h.length, ...body.map((b) => b[c].length)));
const line = (cells: string[]): string => '| ' + cells.map((s, c) => (c === 0 || c === 6 ? s.padEnd(widths[c]) : s.padStart(widths[c]))).join(' | ') + ' |';
console.log(`\nfedpool aggregation vs numpy${quick ? ' (--quick sizes)' : ''}: best of ${runs} runs after one warm-up\n`);
console.log(line(header));
console.log('|' + widths.map((wd, c) => (c === 0 || c === 6 ? ':' + '-'.repeat(wd + 1) : '-'.repeat(wd + 1) + ':')).join('|') + '|');
for (const b of body) console.log(line(b));
console.log('');
console.log(`node ${process.version} (fedpool: WebAssembly SIMD kernels where a rule has them, on one thread; then with ${helpers} helper thread(s) on inputs in shared memory, as a coordinator decodes updates; scalar JS: float64 accumulation; the ratio takes the faster fedpool column)`);
if (numpy) {
  const b = numpy.blas;
  const show = (k: string): string => (b[k] === undefined || b[k] === null ? '?' : String(b[k]));
  console.log(`python ${numpy.python}, numpy ${numpy.numpy}`);
  console.log(`numpy BLAS: ${show('name')} ${show('version')}, kernel ${show('corename')}, ${show('threads')} thread(s) (via ${show('source')})`);
  if (b.config !== undefined) console.log(`  build: ${show('config')}`);
}
console.log(
  `OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE: ${removed.length > 0 ? `removed from numpy's environment (${removed.join(', ')} were set)` : 'not set here (and removed from the child env regardless)'}`,
);
if (numpyError) {
  console.error(`\nnumpy side failed: ${numpyError}`);
  process.exitCode = 1;
}
