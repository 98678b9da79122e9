// The piscina task module of the simulation runner: one (preset, experiment, algorithm, seed) run per call. A run of
// a sim.json grid carries the parsed config, and the thread rebuilds its Preset (once per config per thread).
import type { SimConfig } from './config.js';
import { presetFromConfig } from './presets/from-config.js';
import { presetNamed, type Preset } from './presets/index.js';
import type { RunResult } from './types.js';

export interface RunRequest {
  preset: string;
  experiment: string;
  algorithm: string;
  seed: number;
  /** A `--config sim.json` grid: the parsed config (JSON), whose `name` is `preset`. Absent for fixed presets. */
  config?: SimConfig;
}

const fromConfig = new Map<string, Preset>();

function configPreset(config: SimConfig): Preset {
  const key = JSON.stringify(config);
  let p = fromConfig.get(key);
  if (p === undefined) fromConfig.set(key, (p = presetFromConfig(config)));
  return p;
}

export default function runTask(r: RunRequest): RunResult {
  const preset = r.config === undefined ? presetNamed(r.preset) : configPreset(r.config);
  return preset.run(r.experiment, r.algorithm, r.seed);
}
