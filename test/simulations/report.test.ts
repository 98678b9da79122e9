// fedpool simulate's outputs: metrics.csv (header, quoting, null/non-finite), summary.json rows (means and null
// rules), the terminal table, and report.html (self-contained, escaped, one <svg> per plot, deterministic, small).
import test from 'ava';
import { csvNumber, metricsCsv, metricsCsvLines, METRICS_HEADER } from '../../simulations/report/csv.js';
import { aggregateSeeds, escapeHtml, MAX_POINTS, reportHtml } from '../../simulations/report/html.js';
import { formatSig4, summarize, summaryStats, summaryTable } from '../../simulations/report/summary.js';
import type { MetricRow, RunResult } from '../../simulations/types.js';

function row(over: Partial<MetricRow> = {}): MetricRow {
  return { experiment: 'exp', algorithm: 'alg', seed: 1, step: 0, time: 0, loss: 1, accuracy: null, ...over };
}

/** A run with `points` rows: loss decaying from 10 to ~10^-(decay), time jittered by seed when `jitter`. */
function run(experiment: string, algorithm: string, seed: number, opts: { points?: number; decay?: number; accuracy?: boolean; jitter?: boolean } = {}): RunResult {
  const points = opts.points ?? 60;
  const decay = opts.decay ?? 3;
  const rows: MetricRow[] = [];
  let time = 0;
  for (let i = 0; i < points; i++) {
    const step = i * 50;
    rows.push({
      experiment,
      algorithm,
      seed,
      step,
      time,
      loss: 10 * 10 ** (-(decay + 1) * (i / Math.max(1, points - 1))) * (1 + 0.05 * seed),
      accuracy: opts.accuracy === true ? Math.min(1, 0.1 + (0.9 * i) / points) : null,
    });
    time += opts.jitter === true ? 1 + ((seed * 7 + i * 3) % 5) / 10 : 1;
  }
  const last = rows[rows.length - 1];
  return { experiment, algorithm, seed, rows, finalLoss: last.loss, finalAccuracy: last.accuracy, timeToTarget: null, updates: points * 10 };
}

// ---------- CSV ----------

test('metricsCsv: exact header, one line per row, trailing newline', (t) => {
  const csv = metricsCsv([row({ step: 50, time: 12.5, loss: 0.25, accuracy: 0.5 }), row({ seed: 2 })]);
  const lines = csv.split('\n');
  t.is(lines[0], 'experiment,algorithm,seed,step,time,loss,accuracy');
  t.is(METRICS_HEADER, lines[0]);
  t.is(lines[1], 'exp,alg,1,50,12.5,0.25,0.5');
  t.is(lines[2], 'exp,alg,2,0,0,1,');
  t.is(lines[3], '');
  t.is(lines.length, 4);
  t.is(metricsCsv([]), `${METRICS_HEADER}\n`);
});

test('metricsCsv: RFC 4180 quoting only where needed', (t) => {
  const csv = metricsCsv([
    row({ experiment: 'a,b', algorithm: 'say "hi"' }),
    row({ experiment: 'line\nbreak', algorithm: 'cr\rhere' }),
    row({ experiment: 'plain-name/x', algorithm: 'known-1/p' }),
  ]);
  const lines = csv.split('\n');
  t.is(lines[1], '"a,b","say ""hi""",1,0,0,1,');
  t.is(`${lines[2]}\n${lines[3]}`, '"line\nbreak","cr\rhere",1,0,0,1,');
  t.is(lines[4], 'plain-name/x,known-1/p,1,0,0,1,');
});

test('metricsCsv: null and non-finite → empty field; numbers to 9 significant digits, no float noise', (t) => {
  const csv = metricsCsv([row({ loss: null, accuracy: null }), row({ loss: Infinity, accuracy: NaN }), row({ loss: -Infinity, time: 0.1 + 0.2 })]);
  const lines = csv.trimEnd().split('\n');
  t.is(lines[1], 'exp,alg,1,0,0,,');
  t.is(lines[2], 'exp,alg,1,0,0,,');
  t.is(lines[3], 'exp,alg,1,0,0.3,,');
  t.is(csvNumber(1 / 3), '0.333333333');
  t.is(csvNumber(123456.789012), '123456.789');
  t.is(csvNumber(2 / 3 * 1e-3), '0.000666666667');
  t.is(csvNumber(3000), '3000');
  t.is(csvNumber(12345678901), '12345678901');
  t.is(csvNumber(-0), '0');
  t.is(csvNumber(null), '');
  // Every non-empty numeric field round-trips to within 9 significant digits.
  for (const x of [Math.PI, 1e-5 / 3, 7.000000001, 0.1]) t.true(Math.abs(Number(csvNumber(x)) - x) <= Math.abs(x) * 1e-8);
});

test('metricsCsvLines: the streaming form joins to metricsCsv', (t) => {
  const rows = [row(), row({ algorithm: 'x,y', loss: 0.5 })];
  const lines = [...metricsCsvLines(rows)];
  t.is(lines.length, 3);
  t.true(lines.every((l) => l.endsWith('\n')));
  t.is(lines.join(''), metricsCsv(rows));
});

// ---------- summary ----------

function result(experiment: string, algorithm: string, seed: number, finalLoss: number | null, finalAccuracy: number | null, timeToTarget: number | null): RunResult {
  return { experiment, algorithm, seed, rows: [], finalLoss, finalAccuracy, timeToTarget, updates: 0 };
}

test('summarize: groups by (experiment, algorithm) in first-seen order, means over seeds, contract keys only', (t) => {
  const rs = [
    result('e2', 'b', 1, 1, 0.5, 10),
    result('e1', 'a', 1, 2, null, 4),
    result('e2', 'b', 2, 3, 0.7, 20),
    result('e1', 'a', 2, 4, null, 6),
    result('e2', 'a', 1, 5, null, null),
  ];
  const s = summarize(rs);
  t.deepEqual(
    s.map((r) => [r.experiment, r.algorithm, r.seeds]),
    [['e2', 'b', 2], ['e1', 'a', 2], ['e2', 'a', 1]],
  );
  t.deepEqual(s[0], { experiment: 'e2', algorithm: 'b', seeds: 2, final_loss_mean: 2, final_accuracy_mean: 0.6, time_to_target_mean: 15 });
  t.deepEqual(Object.keys(s[0]), ['experiment', 'algorithm', 'seeds', 'final_loss_mean', 'final_accuracy_mean', 'time_to_target_mean']);
  t.is(s[1].final_loss_mean, 3);
  t.is(s[1].final_accuracy_mean, null);
  t.is(s[1].time_to_target_mean, 5);
  t.is(s[2].time_to_target_mean, null);
  t.deepEqual(summarize([]), []);
});

test('summarize: means skip null values; time to target is null unless every seed reached it', (t) => {
  const rs = [result('e', 'a', 1, 1, 0.9, 10), result('e', 'a', 2, null, null, null), result('e', 'a', 3, 3, 0.7, 30)];
  const [s] = summarize(rs);
  t.is(s.seeds, 3);
  t.is(s.final_loss_mean, 2);
  t.true(Math.abs((s.final_accuracy_mean ?? NaN) - 0.8) < 1e-12);
  t.is(s.time_to_target_mean, null);
  const [st] = summaryStats(rs);
  t.is(st.reached, 2);
  const [all] = summarize([result('e', 'a', 1, null, null, null), result('e', 'a', 2, null, null, null)]);
  t.deepEqual([all.final_loss_mean, all.final_accuracy_mean, all.time_to_target_mean], [null, null, null]);
  // A diverged seed is not silently dropped: the mean is non-finite (JSON null, table `inf`).
  const [div] = summarize([result('e', 'a', 1, 1, null, null), result('e', 'a', 2, Infinity, null, null)]);
  t.is(div.final_loss_mean, Infinity);
  t.is(JSON.parse(JSON.stringify(div)).final_loss_mean, null);
});

test('summaryTable: one block per experiment, aligned columns, 4 significant digits, reached k/n', (t) => {
  const rs = [
    result('exp/one', 'fedau', 1, 0.0034123, null, null),
    result('exp/one', 'avg-participating', 1, 0.81234, null, null),
    result('exp/two', 'fedbuff', 1, 1.5, 0.91234, 123.456),
    result('exp/two', 'fedbuff', 2, 1.5, 0.91234, 123.456),
    result('exp/two', 'sync', 1, 2.5, 0.8, 400),
    result('exp/two', 'sync', 2, 2.5, 0.8, null),
  ];
  const table = summaryTable(summaryStats(rs));
  const lines = table.split('\n');
  t.is(lines[0], 'exp/one');
  t.regex(lines[1], /algorithm\s+seeds\s+final loss\s+final accuracy\s+time to target/);
  t.true(lines.some((l) => /fedau\s+1\s+0\.003412\s+—\s+—$/.test(l)));
  t.true(lines.some((l) => /avg-participating\s+1\s+0\.8123\s/.test(l)));
  t.true(lines.some((l) => /fedbuff\s+2\s+1\.500\s+0\.9123\s+123\.5 \(2\/2\)$/.test(l)));
  t.true(lines.some((l) => /sync\s+2\s+2\.500\s+0\.8000\s+— \(1\/2\)$/.test(l)));
  t.is(lines.filter((l) => l === '').length, 1);
  // Columns align: every header and data line has the same length up to the last column's start.
  const headerLines = lines.filter((l) => l.includes('algorithm'));
  t.is(headerLines[0], headerLines[1]);
  // Plain SummaryRow[] (no reached count) works too.
  t.true(summaryTable(summarize(rs)).includes('123.5'));
  t.false(summaryTable(summarize(rs)).includes('(2/2)'));
  t.is(summaryTable([]), '(no runs)');
});

test('formatSig4', (t) => {
  t.is(formatSig4(null), '—');
  t.is(formatSig4(0), '0');
  t.is(formatSig4(1), '1.000');
  t.is(formatSig4(0.00012346), '0.0001235');
  t.is(formatSig4(1234567), '1234567');
  t.is(formatSig4(12345678), '1.235e7');
  t.is(formatSig4(-3.14159e-6), '-3.142e-6');
  t.is(formatSig4(Infinity), 'inf');
  t.is(formatSig4(NaN), 'nan');
});

// ---------- HTML ----------

const presetInfo = {
  name: 'demo-preset',
  description: 'A <demo> preset & friends',
  experiments: ['demo/bernoulli', 'demo/markov'],
  lossLabel: '½‖x̄ − x*‖²',
};

function grid(): RunResult[] {
  const out: RunResult[] = [];
  for (const e of ['demo/bernoulli', 'demo/markov', 'demo/cyclic']) {
    for (const a of ['fedau', 'known-1/p', 'avg-participating']) {
      for (const s of [1, 2, 3]) out.push(run(e, a, s, { jitter: true, accuracy: e === 'demo/markov' }));
    }
  }
  return out;
}

const opts = { title: 'fedpool simulate --preset demo', generatedAt: '2025-01-01T00:00:00.000Z', presets: [presetInfo] };

test('reportHtml: one <svg> per plot, titles, legends, axis labels, tables, log scale for loss spanning decades', (t) => {
  const html = reportHtml(grid(), opts);
  t.true(html.startsWith('<!DOCTYPE html>'));
  t.true(html.trimEnd().endsWith('</html>'));
  // bernoulli and cyclic: loss × {step, time}; markov also accuracy × {step, time}.
  const svgs = html.match(/<svg\b/g) ?? [];
  t.is(svgs.length, 2 + 4 + 2);
  t.is((html.match(/<\/svg>/g) ?? []).length, svgs.length);
  t.is((html.match(/<table>/g) ?? []).length, 3);
  t.is((html.match(/<section /g) ?? []).length, 3);
  t.is((html.match(/<\/section>/g) ?? []).length, 3);
  t.true(html.includes('loss (log scale)'));
  t.true(html.includes('virtual time'));
  t.true(html.includes('>accuracy<'));
  t.true(html.includes('demo/markov: accuracy vs step'));
  t.true(html.includes('Other experiments'));
  t.true(html.includes('A &lt;demo&gt; preset &amp; friends'));
  t.true(html.includes('Final loss: ½‖x̄ − x*‖²'));
  // Preset order: bernoulli, markov before cyclic.
  t.true(html.indexOf('<h3>demo/markov') < html.indexOf('<h3>demo/cyclic'));
  // Log ticks labelled as decades.
  t.regex(html, />0\.001</);
  t.regex(html, />10</);
  // Same colour for one algorithm across experiments; three distinct colours in a legend.
  const swatches = [...html.matchAll(/<li><span class="sw" style="background:(#[0-9a-f]{6})"><\/span>([^ <]+)/g)].map((m) => [m[1], m[2]]);
  t.is(swatches.length, 9);
  t.is(new Set(swatches.map((s) => s[0])).size, 3);
  t.true(swatches.every(([c, a]) => swatches.every(([c2, a2]) => (a === a2) === (c === c2))));
});

test('reportHtml: self-contained — no scripts, no external URLs', (t) => {
  const html = reportHtml(grid(), opts);
  t.false(/<script/i.test(html));
  t.false(/<link\b/i.test(html));
  t.false(/(src|href)\s*=\s*["']?\s*(https?:)?\/\//i.test(html));
  t.false(/url\(\s*["']?(https?:)?\/\//i.test(html));
  t.false(/@import/i.test(html));
  t.false(/\bon[a-z]+\s*=/i.test(html));
  for (const m of html.matchAll(/href="([^"]*)"/g)) t.true(m[1].startsWith('#'), m[1]);
});

test('reportHtml: escapes every name (experiment, algorithm, title, preset text)', (t) => {
  const evil = '<script>alert("x")</script>';
  const results = [run(`exp ${evil}`, `alg ${evil}`, 1), run(`exp ${evil}`, `alg ${evil}`, 2)];
  const html = reportHtml(results, { title: `title ${evil}`, generatedAt: `at ${evil}`, presets: [{ name: evil, description: evil, experiments: [`exp ${evil}`], lossLabel: evil }] });
  t.false(html.includes('<script'));
  t.false(html.includes('</script>'));
  t.true(html.includes('&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;'));
  t.is(escapeHtml(`a&b<c>"d"'e'`), 'a&amp;b&lt;c&gt;&quot;d&quot;&#39;e&#39;');
});

test('reportHtml: deterministic for the same input', (t) => {
  const a = reportHtml(grid(), opts);
  const b = reportHtml(grid(), opts);
  t.is(a, b);
  t.not(a, reportHtml(grid(), { ...opts, generatedAt: 'later' }));
});

test('reportHtml: small for 36 runs × 60 points; long series downsampled to ≤ MAX_POINTS per line', (t) => {
  const runs: RunResult[] = [];
  for (const e of ['x/1', 'x/2', 'x/3']) for (const a of ['a', 'b', 'c', 'd']) for (const s of [1, 2, 3]) runs.push(run(e, a, s, { jitter: true }));
  t.is(runs.length, 36);
  const html = reportHtml(runs, opts);
  t.true(Buffer.byteLength(html) < 2_000_000, `${Buffer.byteLength(html)} bytes`);

  const long = [1, 2].map((s) => run('long', 'a', s, { points: 5000, jitter: true }));
  const big = reportHtml(long, { title: 't', generatedAt: 'g' });
  const paths = [...big.matchAll(/<path class="line" d="([^"]*)"/g)];
  t.true(paths.length >= 2, 'the plot lines are found'); // or the loop below would check nothing
  for (const m of paths) {
    const n = (m[1].match(/[ML]/g) ?? []).length;
    t.true(n <= MAX_POINTS, `line with ${n} points`);
  }
  t.true(Buffer.byteLength(big) < 200_000, `${Buffer.byteLength(big)} bytes`);
});

test('reportHtml: handles empty input, null accuracy, a diverged seed and a single seed', (t) => {
  const empty = reportHtml([], { title: 'none', generatedAt: 'g' });
  t.true(empty.includes('No runs.'));
  t.is((empty.match(/<svg\b/g) ?? []).length, 0);

  const ok = run('e', 'a', 1);
  const bad = run('e', 'a', 2);
  bad.rows = bad.rows.map((r, i) => (i >= 30 ? { ...r, loss: null } : r));
  bad.finalLoss = Infinity;
  const single = run('e', 'b', 1);
  const html = reportHtml([ok, bad, single], { title: 't', generatedAt: 'g' });
  t.true(html.includes('diverged in 1/2'));
  t.is((html.match(/<svg\b/g) ?? []).length, 2);
  t.false(html.includes('NaN'));
  t.false(html.includes('Infinity'));
  t.true(html.includes('inf'));

  const allNull = run('n', 'a', 1);
  allNull.rows = allNull.rows.map((r) => ({ ...r, loss: null }));
  const h2 = reportHtml([allNull], { title: 't', generatedAt: 'g' });
  t.is((h2.match(/<svg\b/g) ?? []).length, 0);
  t.true(h2.includes('No finite loss or accuracy values'));
});

test('aggregateSeeds: exact at shared x, interpolated on a common grid otherwise, band encloses mean', (t) => {
  const same = aggregateSeeds([
    [{ x: 0, y: 1 }, { x: 1, y: 3 }],
    [{ x: 0, y: 3 }, { x: 1, y: 5 }],
  ]);
  t.deepEqual(same, [[{ x: 0, mean: 2, lo: 1, hi: 3 }, { x: 1, mean: 4, lo: 3, hi: 5 }]]);

  // Seed A covers [0, 10], seed B [0, 20]: the grid is the union of logged x; beyond 10 only B counts (no extrapolation).
  const two = [
    [{ x: 0, y: 0 }, { x: 10, y: 10 }],
    [{ x: 0, y: 2 }, { x: 20, y: 22 }],
  ];
  t.deepEqual(aggregateSeeds(two), [[
    { x: 0, mean: 1, lo: 0, hi: 2 },
    { x: 10, mean: 11, lo: 10, hi: 12 },
    { x: 20, mean: 22, lo: 22, hi: 22 },
  ]]);
  // Too many distinct x: an evenly spaced grid of maxPoints.
  const three = [...two, [{ x: 0, y: 4 }, { x: 5, y: 4 }, { x: 15, y: 4 }, { x: 20, y: 4 }]];
  const [even] = aggregateSeeds(three, 3);
  t.deepEqual(even.map((p) => p.x), [0, 10, 20]);
  t.deepEqual(even.map((p) => p.mean), [2, 26 / 3, 13]);

  // Disjoint ranges break the line.
  const gap = aggregateSeeds([
    [{ x: 0, y: 1 }, { x: 1, y: 1 }],
    [{ x: 9, y: 2 }, { x: 10, y: 2 }],
  ], 11);
  t.is(gap.length, 2);

  // Downsampling keeps the first and last x and a band around the line.
  const n = 5000;
  const a = Array.from({ length: n }, (_, i) => ({ x: i, y: Math.sin(i / 7) }));
  const b = Array.from({ length: n }, (_, i) => ({ x: i, y: Math.cos(i / 5) }));
  const [ds] = aggregateSeeds([a, b]);
  t.true(ds.length <= MAX_POINTS);
  t.is(ds[0].x, 0);
  t.is(ds[ds.length - 1].x, n - 1);
  t.true(ds.every((p) => p.lo <= p.mean && p.mean <= p.hi));
  t.deepEqual(aggregateSeeds([[], []]), []);
});
