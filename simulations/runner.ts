// Runs a preset's grid for seeds 1..S: every (experiment, algorithm, seed) run is independent, so they spread over
// worker threads (piscina) when there are several seeds or the preset's runs are heavy; otherwise they run in this
// thread (no start-up cost).
// Results come back in grid order whatever order the threads finish in, so output files are deterministic.
import { availableParallelism } from 'node:os';
import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import type { SimConfig } from './config.js';
import { presetFromConfig } from './presets/from-config.js';
import { presetNamed } from './presets/index.js';
import type { Preset } from './presets/preset.js';
import runTask, { type RunRequest } from './thread-task.js';
import type { RunResult } from './types.js';

export interface SimulateOptions {
  /** A fixed preset's name; ignored when `config` is given. */
  preset: string;
  /** A parsed sim.json (`parseSimConfig`): run its grid instead of a fixed preset. */
  config?: SimConfig;
  /** Seeds 1..seeds. */
  seeds: number;
  /** Worker threads (default: min(cores, runs) for several seeds or heavy runs, else 1); 1 runs everything in this thread. */
  threads?: number;
  /** Called after each finished run. */
  onProgress?: (done: number, total: number, last: RunResult) => void;
}

function presetOf(presetName: string, config?: SimConfig): Preset {
  return config === undefined ? presetNamed(presetName) : presetFromConfig(config);
}

export function gridOf(presetName: string, seeds: number, config?: SimConfig): RunRequest[] {
  const preset = presetOf(presetName, config);
  if (!Number.isInteger(seeds) || seeds < 1) throw new RangeError(`seeds must be an integer ≥ 1, got ${String(seeds)}`);
  const grid: RunRequest[] = [];
  for (const experiment of preset.experiments) {
    for (const algorithm of preset.algorithms) {
      for (let seed = 1; seed <= seeds; seed++) grid.push({ preset: preset.name, experiment, algorithm, seed, ...(config !== undefined && { config }) });
    }
  }
  return grid;
}

export async function simulate(options: SimulateOptions): Promise<RunResult[]> {
  const grid = gridOf(options.preset, options.seeds, options.config);
  const parallel = options.seeds > 1 || presetOf(options.preset, options.config).heavyRuns === true;
  const threads = Math.max(1, Math.min(options.threads ?? (parallel ? availableParallelism() : 1), grid.length));
  const results: RunResult[] = new Array<RunResult>(grid.length);
  let done = 0;
  const finish = (i: number, r: RunResult): void => {
    results[i] = r;
    options.onProgress?.(++done, grid.length, r);
  };
  if (threads === 1) {
    for (let i = 0; i < grid.length; i++) {
      finish(i, runTask(grid[i]!));
      // Let progress output and signals through between runs.
      await new Promise((resolve) => setImmediate(resolve));
    }
    return results;
  }
  const here = import.meta.url;
  // The task module beside this one, with our own extension: .ts from source (tsx), .js from dist/.
  const pool = new Piscina({ filename: new URL(`./thread-task${extname(fileURLToPath(here))}`, here).href, minThreads: threads, maxThreads: threads });
  try {
    await Promise.all(grid.map(async (req, i) => finish(i, (await pool.run(req)) as RunResult)));
  } finally {
    await pool.destroy();
  }
  return results;
}
