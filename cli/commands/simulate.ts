// fedpool simulate (issue 5): run a preset's grid (or a sim.json's, docs/sim-config.md) over seeds 1..S (in parallel
// threads), then write DIR/metrics.csv, DIR/summary.json and DIR/report.html and print the summary table.
import { SingleBar } from 'cli-progress';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { metricsCsv } from '../../simulations/report/csv.js';
import { reportHtml, type ReportTable } from '../../simulations/report/html.js';
import { summarize, summaryStats, summaryTable } from '../../simulations/report/summary.js';
import { parseSimConfig, SimConfigError, type SimConfig } from '../../simulations/config.js';
import { presetFromConfig } from '../../simulations/presets/from-config.js';
import { presets, type Preset } from '../../simulations/presets/index.js';
import { simulate } from '../../simulations/runner.js';
import type { RunResult } from '../../simulations/types.js';
import { UserError } from '../errors.js';
import { checkEmptyDir } from '../out-dir.js';

const optionsSchema = z.object({
  preset: z.string().optional(),
  config: z.string().optional(),
  seeds: z.number().int().min(1).default(1),
  out: z.string().optional(),
  live: z.boolean().optional(),
  workers: z.number().int().min(1).optional(),
  processes: z.number().int().min(1).optional(),
  timeScale: z.number().positive().finite().default(0.02),
  force: z.boolean().optional(),
});

export async function run(raw: Record<string, unknown>): Promise<void> {
  const parsed = optionsSchema.safeParse(raw);
  if (!parsed.success) throw new UserError(`fedpool simulate: bad options: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  const o = parsed.data;
  if (o.config !== undefined && o.preset !== undefined) throw new UserError('fedpool simulate: give --preset NAME or --config sim.json, not both');
  if (o.live === true) return runLiveCommand(o);
  for (const flag of ['workers', 'processes'] as const) if (o[flag] !== undefined) throw new UserError(`fedpool simulate: --${flag} is for --live runs`);
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
  const out = await outputDir(o.out, preset.name, o.force === true);

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
  await writeOutputs(out, results, `fedpool simulate ${config === undefined ? `--preset ${preset.name}` : `--config ${path.basename(o.config ?? '')}`} --seeds ${o.seeds}`, preset);
  process.stdout.write(`${summaryTable(summaryStats(results))}\n`);
  process.stdout.write(`final loss: ${preset.lossLabel}\n`);
  process.stdout.write(`${results.length} runs, ${results.reduce((a, r) => a + r.updates, 0).toLocaleString('en-US')} client updates in ${seconds.toFixed(2)} s; wrote ${out}/{metrics.csv,summary.json,report.html}\n`);
}

/** `--live --config sim.json [--workers N]`: the same grid on a real coordinator with simulated workers. */
async function runLiveCommand(o: z.infer<typeof optionsSchema>): Promise<void> {
  if (o.config === undefined) throw new UserError('fedpool simulate --live: give --config sim.json (the presets run in the simulator only)');
  let config = await readConfig(o.config);
  const file = path.basename(o.config);
  // --workers N sets the population (the config's clients), checked again against the rest of the config.
  if (o.workers !== undefined && o.workers !== config.clients) {
    try {
      config = parseSimConfig({ ...config, clients: o.workers }, `${file} with --workers ${o.workers}`);
    } catch (e) {
      if (e instanceof SimConfigError) throw new UserError(`fedpool simulate --live: ${e.message}`);
      throw e;
    }
  }
  const preset = presetFromConfig(config);
  const out = await outputDir(o.out, preset.name, o.force === true);
  const { runLive, liveTable, liveReportTable } = await import('../simulate-live/live.js');
  const started = performance.now();
  const live = await runLive({
    config, file, seeds: o.seeds, timeScale: o.timeScale,
    ...(o.processes !== undefined && { processes: o.processes }),
    log: (line) => process.stderr.write(`${line}\n`),
    onRun: (done, total, r, s) => {
      process.stderr.write(`fedpool simulate --live: ${done}/${total} ${r.experiment} ${r.algorithm} seed ${r.seed}: ${s.server_steps} steps, ${s.client_updates} updates in ${s.wall_s.toFixed(1)} s, coordinator CPU ${s.coordinator_cpu_percent.toFixed(1)} %, RSS ${s.coordinator_rss_peak_mb.toFixed(1)} MB\n`);
    },
  });
  const seconds = (performance.now() - started) / 1000;
  const title = `fedpool simulate --live --config ${file} --workers ${config.clients} --seeds ${o.seeds}`;
  await writeOutputs(out, live.results, title, preset, [liveReportTable(live.stats)]);
  await writeFile(path.join(out, 'live.json'), `${JSON.stringify({ config: file, workers: live.workers, timeScale: o.timeScale, runs: live.stats }, null, 2)}\n`);
  process.stdout.write(`${summaryTable(summaryStats(live.results))}\n`);
  process.stdout.write(`final loss: the coordinator's eval loss of the last model; time: wall seconds / ${o.timeScale} (virtual units)\n\n`);
  process.stdout.write(`${liveTable(live.stats)}\n`);
  process.stdout.write(`${live.results.length} live runs with ${live.workers.honest + live.workers.byzantine} workers in ${seconds.toFixed(1)} s; wrote ${out}/{metrics.csv,summary.json,report.html,live.json}\n`);
}

/** The output folder, created; one that holds anything is refused (as `fedpool train` does) unless `force`. */
async function outputDir(given: string | undefined, name: string, force: boolean): Promise<string> {
  const out = path.resolve(given ?? `fedpool-sim-${name}`);
  if (!force) await checkEmptyDir(out, 'the simulation output folder', "an earlier simulation's results?", 'choose another --out, or add --force to overwrite');
  try {
    await mkdir(out, { recursive: true });
  } catch (e) {
    throw new UserError(`fedpool simulate: --out ${out}: cannot create (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  return out;
}

async function writeOutputs(out: string, results: RunResult[], title: string, preset: Preset, tables?: ReportTable[]): Promise<void> {
  await writeFile(path.join(out, 'metrics.csv'), metricsCsv(results.flatMap((r) => r.rows)));
  await writeFile(path.join(out, 'summary.json'), `${JSON.stringify(summarize(results), null, 2)}\n`);
  await writeFile(path.join(out, 'report.html'), reportHtml(results, { title, generatedAt: new Date().toISOString(), presets: [preset], ...(tables !== undefined && { tables }) }));
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
