// fedpool simulate (issue 5): run a preset's grid (or a sim.json's, docs/sim-config.md) over seeds 1..S (in parallel
// threads), then write DIR/metrics.csv, DIR/summary.json and DIR/report.html and print the summary table.
import { SingleBar } from 'cli-progress';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { metricsCsv } from '../../simulations/report/csv.js';
import { reportHtml } from '../../simulations/report/html.js';
import { summarize, summaryStats, summaryTable } from '../../simulations/report/summary.js';
import { parseSimConfig, SimConfigError, type SimConfig } from '../../simulations/config.js';
import { presetFromConfig } from '../../simulations/presets/from-config.js';
import { presets, type Preset } from '../../simulations/presets/index.js';
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
  if (o.config !== undefined && o.preset !== undefined) throw new UserError('fedpool simulate: give --preset NAME or --config sim.json, not both');
  let preset: Preset | undefined;
  let config: SimConfig | undefined;
  if (o.config !== undefined) {
    config = await readConfig(o.config);
    preset = presetFromConfig(config);
  } else {
    if (o.preset === undefined) throw new UserError('fedpool simulate: give --preset NAME (or --config sim.json)');
    preset = presets.get(o.preset);
    if (preset === undefined) {
      throw new UserError(`fedpool simulate: preset ${o.preset} is not built yet (built: ${[...presets.keys()].join(', ')}; issue #5, later increment)`, 2);
    }
  }
  const out = path.resolve(o.out ?? `fedpool-sim-${preset.name}`);
  try {
    await mkdir(out, { recursive: true });
  } catch (e) {
    throw new UserError(`fedpool simulate: --out ${out}: cannot create (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }

  const started = performance.now();
  const total = preset.experiments.length * preset.algorithms.length * o.seeds;
  const bar = process.stderr.isTTY ? new SingleBar({ format: `${preset.name} [{bar}] {value}/{total} runs | {last}`, stream: process.stderr }) : null;
  bar?.start(total, 0, { last: '' });
  let results;
  try {
    results = await simulate({
      preset: preset.name,
      ...(config !== undefined && { config }),
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
  await writeFile(path.join(out, 'report.html'), reportHtml(results, { title: `fedpool simulate ${config === undefined ? `--preset ${preset.name}` : `--config ${path.basename(o.config ?? '')}`} --seeds ${o.seeds}`, generatedAt: new Date().toISOString(), presets: [preset] }));
  process.stdout.write(`${summaryTable(summaryStats(results))}\n`);
  process.stdout.write(`final loss: ${preset.lossLabel}\n`);
  process.stdout.write(`${results.length} runs, ${results.reduce((a, r) => a + r.updates, 0).toLocaleString('en-US')} client updates in ${seconds.toFixed(2)} s; wrote ${out}/{metrics.csv,summary.json,report.html}\n`);
}

/** Reads and validates sim.json: every problem is one line naming the file and the field (exit 1, nothing run). */
async function readConfig(file: string): Promise<SimConfig> {
  const name = path.basename(file);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new UserError(`fedpool simulate: ${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`fedpool simulate: ${name}: not valid JSON (${e instanceof Error ? e.message.replace(/\s+/g, ' ') : String(e)})`);
  }
  try {
    return parseSimConfig(json, name);
  } catch (e) {
    if (e instanceof SimConfigError) throw new UserError(`fedpool simulate: ${e.message}`);
    throw e;
  }
}
