// Which model weights a worker holds (docs/architecture.md, "The path of a model update"). A training lease carries
// the weights of its model version only when the worker does not hold them already: the worker keeps the weights of
// the last HELD_WEIGHTS leases that carried some, in arrival order, and the coordinator keeps the same record of
// what it sent on that connection — one class, the same order on both ends of one ordered socket, so the two
// records agree without a message about it. Keyed by job as well as model and version: two jobs that started from
// the same model reach the same version number with different weights.

/** How many model versions' weights a worker keeps. */
export const HELD_WEIGHTS = 2;

/** The key of a job's model version. */
export function weightsKey(jobId: string, modelHash: string, version: number): string {
  return `${jobId}\0${modelHash}@${version}`;
}

/** The last HELD_WEIGHTS entries added, oldest dropped first; adding a held key makes it the newest. */
export class HeldWeights<V> {
  private readonly entries = new Map<string, V>();

  add(key: string, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    for (const oldest of this.entries.keys()) {
      if (this.entries.size <= HELD_WEIGHTS) break;
      this.entries.delete(oldest);
    }
  }

  get(key: string): V | undefined {
    return this.entries.get(key);
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }
}
