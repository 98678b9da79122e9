// How a lease that went wrong is answered: a `failure` on its connection, retryable unless no other worker could do
// better (a bad bundle, items the model cannot take), with the error's text cut to one bounded line.
import type { LeaseMessage } from '../shared/protocol/index.js';
import type { LeaseChannel, RunnerLog } from './lease-ports.js';

/**
 * Whether retrying elsewhere cannot help: an invalid model bundle, or items the model cannot take. Errors thrown in
 * pool threads arrive through structured clone, which keeps the message but not the class or own properties, so
 * the message prefixes used by shared/model ("model bundle: …") count as well as a `retryable: false` property.
 */
export function isPermanentError(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  if (Reflect.get(error, 'retryable') === false) return true;
  const name: unknown = Reflect.get(error, 'name');
  if (name === 'BundleError' || name === 'ModelError') return true;
  const message: unknown = Reflect.get(error, 'message');
  return typeof message === 'string' && /^(model bundle|invalid (model|bundle))\b/i.test(message);
}

/** An error as one line of at most 1,000 characters. */
export function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).replace(/\s+/g, ' ').slice(0, 1000);
}

/** Sends `failure` for the lease; a failure that cannot be sent (e.g. it does not validate) is only logged. */
export function sendFailure(channel: LeaseChannel, lease: LeaseMessage, reason: string, retryable: boolean, log: RunnerLog): void {
  try {
    channel.send({ type: 'failure', leaseId: lease.leaseId, shardId: lease.shardId, reason: reason.slice(0, 4096), retryable });
  } catch (e) {
    log.warn(`cannot report failure of lease ${lease.leaseId}: ${errorText(e)}`);
  }
}
