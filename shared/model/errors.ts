/**
 * Errors that retrying elsewhere cannot fix: the model bundle or the items are wrong, not the machine. The
 * client's lease runner answers them with a non-retryable failure (it matches on `name` / `retryable`).
 * Messages are one line.
 */
export class ModelError extends RangeError {
  override name = 'ModelError';
  readonly retryable = false;
}

/** A model bundle that is incomplete or inconsistent (messages start with "model bundle"). */
export class BundleError extends ModelError {
  override name = 'BundleError';
}
