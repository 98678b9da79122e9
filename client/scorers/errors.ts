/**
 * The one error type a server scorer throws (see docs/scorers.md, "Errors"). `retryable: true` means the shard may
 * succeed later or elsewhere (the server was unreachable, overloaded or failed inside); `false` means no retry can
 * fix it (the server refused the input, or answered something that is not a valid response).
 */
export class ScorerError extends Error {
  override readonly name = 'ScorerError';
  readonly retryable: boolean;
  /** The HTTP status that caused it, where there was one. */
  readonly status?: number;
  /** The server's own error message (parsed from its error body), where there was one. */
  readonly serverMessage?: string;

  constructor(message: string, options: { retryable: boolean; status?: number; serverMessage?: string; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.retryable = options.retryable;
    if (options.status !== undefined) this.status = options.status;
    if (options.serverMessage !== undefined) this.serverMessage = options.serverMessage;
  }
}

/** `text` on one line, at most `max` characters. */
export function oneLine(text: string, max = 500): string {
  const flat = text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
