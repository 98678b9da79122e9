// fedpool simulate (issue 5): run a preset's grid over seeds 1..S (in parallel threads), then write DIR/metrics.csv,
// DIR/summary.json and DIR/report.html and print the summary table.
import { SingleBar } from 'cli-progress';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { metricsCsv } from '../../simulations/report/csv.js';
import { reportHtml } from '../../simulations/report/html.js';
import { summarize, summaryStats, summaryTable } from '../../simulations/report/summary.js';
import { presets } from '../../simulations/presets/index.js';
import { simulate } from '../../simulations/runner.js';
import { UserError } from '../errors.js';

const optionsSchema = z.object({
  preset: z.string().optional(),
  config: z.string().optional(),
  seeds: z.number().int().min(1).default(1),
  out: z.string().optional(),
  live: z.boolean().optional(),
  workers: z.number().int().min(1).optional(),
});

export async function run(raw: Record<string, unknown>): Promise<void> {
  const parsed = optionsSchema.safeParse(raw);
  if (!parsed.success) throw new UserError(`fedpool simulate: bad options: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  const o = parsed.data;
  if (o.live === true) throw new UserError('fedpool simulate: --live is not built yet (issue #5, later increment)', 2);
  if (o.config !== undefined) throw new UserError('fedpool simulate: --config sim.json is not built yet (issue #5, later increment); use --preset', 2);
  if (o.preset === undefined) throw new UserError('fedpool simulate: give --preset NAME (or --config sim.json)');
  const preset = presets.get(o.preset);
  if (preset === undefined) {
    throw new UserError(`fedpool simulate: preset ${o.preset} is not built yet (built: ${[...presets.keys()].join(', ')}; issue #5, later increment)`, 2);
  }
  const out = path.resolve(o.out ?? `fedpool-sim-${preset.name}`);
  await mkdir(out, { recursive: true });

  const started = performance.now();
  const total = preset.experiments.length * preset.algorithms.length * o.seeds;
  const bar = process.stderr.isTTY ? new SingleBar({ format: `${preset.name} [{bar}] {value}/{total} runs | {last}`, stream: process.stderr }) : null;
  bar?.start(total, 0, { last: '' });
  let results;
  try {
    results = await simulate({
      preset: preset.name,
      seeds: o.seeds,
      onProgress: (done, _total, r) => {
        const last = `${r.experiment} ${r.algorithm} seed ${r.seed}`;
        if (bar !== null) bar.update(done, { last });
        else if (done === total || done % Math.max(1, Math.round(total / 10)) === 0) process.stderr.write(`fedpool simulate: ${done}/${total} runs (${last})\n`);
      },
    });
  } finally {
    bar?.stop();
  }
  const seconds = (performance.now() - started) / 1000;
  const summary = summarize(results);
  await writeFile(path.join(out, 'metrics.csv'), metricsCsv(results.flatMap((r) => r.rows)));
  await writeFile(path.join(out, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  await writeFile(path.join(out, 'report.html'), reportHtml(results, { title: `fedpool simulate --preset ${preset.name} --seeds ${o.seeds}`, generatedAt: new Date().toISOString(), presets: [preset] }));
  process.stdout.write(`${summaryTable(summaryStats(results))}\n`);
  process.stdout.write(`final loss: ${preset.lossLabel}\n`);
  process.stdout.write(`${results.length} runs, ${results.reduce((a, r) => a + r.updates, 0).toLocaleString('en-US')} client updates in ${seconds.toFixed(2)} s; wrote ${out}/{metrics.csv,summary.json,report.html}\n`);
}
