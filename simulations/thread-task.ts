// The piscina task module of the simulation runner: one (preset, experiment, algorithm, seed) run per call.
import { presetNamed } from './presets/index.js';
import type { RunResult } from './types.js';

export interface RunRequest {
  preset: string;
  experiment: string;
  algorithm: string;
  seed: number;
}

export default function runTask(r: RunRequest): RunResult {
  return presetNamed(r.preset).run(r.experiment, r.algorithm, r.seed);
}
