// What `fedpool simulate --live` and its worker-host processes say to each other over the IPC channel: plain JSON,
// validated on arrival like every other inbound message.
import { z } from 'zod';

const int = z.number().int();

export const toHostSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('start'),
    /** The coordinator's URL. */
    url: z.string().url(),
    /** The sim.json object (parsed again by the host: one source of defaults). */
    config: z.unknown(),
    /** This host runs workers first … first + count − 1 of total; the first `honest` of all are honest clients. */
    first: int.nonnegative(),
    count: int.positive(),
    total: int.positive(),
    honest: int.positive(),
    /** Seeds 1 … seeds: one worker dataset `sim-s<seed>` each. */
    seeds: int.positive(),
    /** Wall-clock seconds per unit of virtual time. */
    timeScale: z.number().positive(),
  }),
  /** The next job trains experiment `experiment` (its speeds) on seed `seed`: reset the delay streams. */
  z.strictObject({ type: z.literal('run'), experiment: z.string(), seed: int.positive() }),
  z.strictObject({ type: z.literal('stop') }),
]);

export const fromHostSchema = z.discriminatedUnion('type', [
  /** Every worker of this host has been welcomed once. */
  z.strictObject({ type: z.literal('connected'), workers: int.nonnegative() }),
  z.strictObject({ type: z.literal('ready') }),
  z.strictObject({ type: z.literal('error'), message: z.string() }),
]);

export type ToHost = z.infer<typeof toHostSchema>;
export type FromHost = z.infer<typeof fromHostSchema>;

/** Worker k's name: zero-padded, so the coordinator's by-name order (client i = i-th worker) is the index order. */
export function workerName(k: number, total: number): string {
  return `sim-${String(k).padStart(Math.max(4, String(total - 1).length), '0')}`;
}

/** The worker dataset of seed s. */
export function datasetName(seed: number): string {
  return `sim-s${seed}`;
}
