// One budget for the request bodies the coordinator is receiving at once (docs/security.md, "Memory and the event
// loop"): JSON job bodies and blob uploads are held in memory until they are parsed or stored, so their sum is what
// bounds that memory. A request declares its size (Content-Length) and reserves it before a byte is read; a body
// without one reserves as it arrives. Past the budget the request is answered 503 with Retry-After.
import { RequestRefused } from './request-refused.js';

/**
 * Default sum of request bodies in flight: one largest blob upload (512 MiB, held as received), or two largest JSON
 * bodies (256 MiB each; a parsed items body holds about 7× its bytes until it is stored).
 */
export const DEFAULT_BODY_BUDGET_BYTES = 512 * 1024 * 1024;
/** Seconds a refused client is told to wait. */
const RETRY_AFTER_S = 5;

export class BodyBudget {
  private held = 0;

  constructor(
    readonly limit: number,
    /** Called with the bytes in flight after each change, and with each refusal. */
    private readonly observe: { inFlight?: (bytes: number) => void; refused?: () => void } = {},
  ) {}

  get inFlight(): number {
    return this.held;
  }

  /** A ticket for one request body; reserves its declared size (503 if it does not fit now, 413 if it never would). */
  admit(declared: number | undefined): BodyTicket {
    const ticket = new BodyTicket(this);
    if (declared !== undefined && declared > 0) ticket.reserve(declared);
    return ticket;
  }

  /** @internal */
  take(bytes: number, total: number): void {
    if (total > this.limit) {
      this.observe.refused?.();
      throw new RequestRefused(413, `request body of ${total} bytes is larger than the coordinator's whole budget for request bodies (${this.limit} bytes, bodyBudgetBytes)`);
    }
    if (this.held + bytes > this.limit) {
      this.observe.refused?.();
      throw new RequestRefused(
        503,
        `the coordinator is receiving ${this.held} bytes of request bodies, and ${bytes} more would pass its ${this.limit}-byte budget: busy, retry later`,
        { 'retry-after': String(RETRY_AFTER_S) },
      );
    }
    this.held += bytes;
    this.observe.inFlight?.(this.held);
  }

  /** @internal */
  give(bytes: number): void {
    this.held -= bytes;
    this.observe.inFlight?.(this.held);
  }
}

/** The bytes one request body holds of the budget; `release()` (once, when the body is parsed or stored) frees them. */
export class BodyTicket {
  private reserved = 0;
  private released = false;

  constructor(private readonly budget: BodyBudget) {}

  /** @internal */
  reserve(bytes: number): void {
    this.budget.take(bytes, this.reserved + bytes);
    this.reserved += bytes;
  }

  /** Makes sure `total` bytes (the body so far) are reserved: a body longer than it declared, or undeclared, takes more as it arrives. */
  cover(total: number): void {
    if (this.released) throw new Error('body ticket used after release');
    if (total > this.reserved) this.reserve(total - this.reserved);
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    this.budget.give(this.reserved);
    this.reserved = 0;
  }
}

/** `body`'s chunks, each covered by `ticket` before it is passed on (a blob upload held in memory until stored). */
export async function* counted(body: AsyncIterable<unknown>, ticket: BodyTicket): AsyncGenerator<unknown> {
  let size = 0;
  for await (const chunk of body) {
    if (chunk instanceof Uint8Array) {
      size += chunk.byteLength;
      ticket.cover(size);
    }
    yield chunk;
  }
}
