// A preset is a fixed grid of experiments × algorithms whose parameters never change between versions, so results
// compare across releases. Each (experiment, algorithm, seed) run is independent and deterministic.
import type { RunResult } from '../types.js';

export interface Preset {
  readonly name: string;
  /** One line for `--help` and the report. */
  readonly description: string;
  readonly experiments: readonly string[];
  readonly algorithms: readonly string[];
  /** What summary.json's final_loss means for this preset (shown in the report and the table). */
  readonly lossLabel: string;
  /**
   * Runs take long enough (a tenth of a second or more) that spreading even one seed's grid over threads pays;
   * otherwise one seed runs in the calling thread (thread start-up would cost more than the split saves).
   */
  readonly heavyRuns?: boolean;
  run(experiment: string, algorithm: string, seed: number): RunResult;
}
