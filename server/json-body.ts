// Reads a JSON request body (POST /api/jobs) within the limits of docs/security.md, "Memory and the event loop": its
// bytes count against the coordinator's body budget until the caller releases them; a body of up to 1 MiB is read
// whole and parsed by JSON.parse, as always; a larger one is parsed as it arrives (server/json-stream.ts), yielding
// to the event loop between slices, and refused at the first byte past the byte, depth or entry limits.
import type { IncomingMessage } from 'node:http';
import type { BodyBudget } from './body-budget.js';
import { JsonLimitError, JsonStreamParser, JsonSyntaxError, type JsonStreamLimits } from './json-stream.js';
import { RequestRefused } from './request-refused.js';
import { TimeSlice } from './time-slice.js';

/** Deepest JSON nesting a request body may have (job items are 3 deep, a train.json about 5). */
export const MAX_JSON_DEPTH = 64;
/** Most entries one array or object of a JSON body may have: a score job's items (the schema allows 10,000,000). */
export const DEFAULT_MAX_ITEMS = 10_000_000;
/** Bodies larger than this are parsed as they arrive. */
export const STREAM_ABOVE_BYTES = 1024 * 1024;

export interface JsonBodyLimits {
  /** Largest body (413 past it). */
  maxBytes: number;
  /** Most entries in one array or object (413 past it). */
  maxItems: number;
  /** For a body parsed as it arrives: the array whose elements go to a collector as they arrive (json-stream.ts). */
  collect?: JsonStreamLimits['collect'];
}

export interface JsonBody {
  value: unknown;
  /** Parsed as it arrived: validate it in slices too (server/job-request-slices.ts). */
  streamed: boolean;
  /** The time slice the parse ran in, to go on with. */
  slice: TimeSlice;
  /** Gives the body's bytes back to the budget: call once the value is dealt with. */
  release: () => void;
}

function tooManyEntries(maxItems: number): RequestRefused {
  return new RequestRefused(413, `body: an array or object has more than ${maxItems} entries (the coordinator's maxItems limit)`);
}

function tooDeep(): RequestRefused {
  return new RequestRefused(400, `body: nested deeper than ${MAX_JSON_DEPTH} levels`);
}

/**
 * Whether a parsed JSON value stays within the depth and entry limits, checked without recursion and only as far
 * as needed: validators recurse, so a body nested thousands deep would overflow their stack (a 500).
 */
function checkShape(value: unknown, maxItems: number): void {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v !== 'object' || v === null) continue;
    if (depth > MAX_JSON_DEPTH) throw tooDeep();
    const children = Array.isArray(v) ? (v as unknown[]) : Object.values(v as Record<string, unknown>);
    if (children.length > maxItems) throw tooManyEntries(maxItems);
    for (const child of children) if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
  }
}

/** Reads and parses the body of `req`; throws RequestRefused (413, 400, or 503 from the budget). */
export async function readJsonBody(req: IncomingMessage, budget: BodyBudget, limits: JsonBodyLimits): Promise<JsonBody> {
  const { maxBytes, maxItems } = limits;
  const declared = Number(req.headers['content-length']);
  const hasLength = req.headers['content-length'] !== undefined && Number.isFinite(declared);
  if (hasLength && declared > maxBytes) throw new RequestRefused(413, `request body of ${declared} bytes exceeds the ${maxBytes}-byte limit`);
  const ticket = budget.admit(hasLength ? declared : undefined);
  const release = (): void => ticket.release();
  const slice = new TimeSlice();
  try {
    let chunks: Buffer[] = [];
    let size = 0;
    let parser: JsonStreamParser | undefined;
    for await (const chunk of req) {
      const b = chunk instanceof Buffer ? chunk : Buffer.from(String(chunk));
      size += b.byteLength;
      if (size > maxBytes) throw new RequestRefused(413, `request body exceeds the ${maxBytes}-byte limit`);
      ticket.cover(size);
      if (parser !== undefined) parser.push(b);
      else {
        chunks.push(b);
        if (size > STREAM_ABOVE_BYTES) {
          parser = new JsonStreamParser({ maxDepth: MAX_JSON_DEPTH, maxEntries: maxItems, ...(limits.collect === undefined ? {} : { collect: limits.collect }) });
          // The first MiB in slices too: parsed and collected, it is ~20,000 items, 0.1 s of work.
          for (const c of chunks) {
            parser.push(c);
            if (slice.due()) await slice.pause();
          }
          chunks = [];
        }
      }
      if (slice.due()) await slice.pause();
    }
    if (parser !== undefined) return { value: parser.end(), streamed: true, slice, release };
    let value: unknown;
    try {
      value = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (e) {
      throw new RequestRefused(400, `body is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
    }
    checkShape(value, maxItems);
    return { value, streamed: false, slice, release };
  } catch (e) {
    release();
    if (e instanceof JsonSyntaxError) throw new RequestRefused(400, `body is not valid JSON: ${e.message}`);
    if (e instanceof JsonLimitError) throw e.limit === 'depth' ? tooDeep() : tooManyEntries(maxItems);
    throw e;
  }
}
