// Validates a large score-job body against the route's own zod schema (server/jobs.ts) in slices that yield to the
// event loop, with exactly the outcome of `parseJobRequest(body)`: the same request, or the same first error.
//
// How: the long arrays (items, columns.ids, columns.prompts, columns.responses) are validated element by element
// with their own element schemas, a slice at a time, in the order zod visits them, stopping at the first bad element
// k. Then the whole schema runs once on a skeleton of the body in which each long array A is cut to [A[0]] (or
// [A[0], A[k]] for the array with the bad element). Element schemas do not look at their neighbours and zod reports
// issues in the order it visits values, so the skeleton's first issue is the body's first issue (an index 1 in the
// cut array meaning k), and when there is none the body is valid. `meta` is z.json(), which for a value that came
// out of a JSON parser only refuses non-finite numbers (1e400): it is walked for those in slices and replaced by
// null in the skeleton (a body that has one is validated whole, as before).
import type * as z from 'zod';
import { MAX_JOB_ITEMS, RowColumns, checkJobRequestSteps, describeIssue, jobRequestSchema, parseJobRequest, type JobRequest, type ParsedJob } from './jobs.js';
import type { ArrayCollector } from './json-stream.js';
import type { TimeSlice } from './time-slice.js';

/** Elements validated per call of an element schema. */
const SLICE_ELEMENTS = 256;
/** Nodes of `meta` visited between checks of the time slice. */
const WALK_NODES = 4096;

interface LongArray {
  /** The object holding it in the body (the body itself, or its `columns`) and its key there. */
  holder: Record<string, unknown>;
  key: string;
  values: unknown[];
  element: z.ZodType;
  /** The first bad element (≥ 1), or -1. */
  bad: number;
}

type Item = NonNullable<JobRequest['items']>[number];

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

const shape = jobRequestSchema.shape;
const columnsShape = shape.columns.unwrap().shape;
/** In the order zod visits them (the schema's key order). */
const ELEMENTS = {
  items: shape.items.unwrap().element,
  ids: columnsShape.ids.element,
  prompts: columnsShape.prompts.unwrap().element,
  responses: columnsShape.responses.unwrap().element,
};

/** The first bad element of `a` from index 1 on (-1 if none); good elements are replaced by the schema's output. */
async function validateElements(a: LongArray, slice: TimeSlice): Promise<number> {
  const values = a.values;
  for (let from = 1; from < values.length; from += SLICE_ELEMENTS) {
    const to = Math.min(values.length, from + SLICE_ELEMENTS);
    for (let i = from; i < to; i++) {
      const r = a.element.safeParse(values[i]);
      if (!r.success) return i;
      values[i] = r.data;
    }
    if (slice.due()) await slice.pause();
  }
  return -1;
}

/** Whether a JSON value holds a non-finite number anywhere (walked without recursion, in slices). */
async function hasNonFinite(value: unknown, slice: TimeSlice): Promise<boolean> {
  const stack: unknown[] = [value];
  let visited = 0;
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'number') {
      if (!Number.isFinite(v)) return true;
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) stack.push(v[i]);
    } else if (typeof v === 'object' && v !== null) {
      for (const k in v) if (Object.hasOwn(v, k)) stack.push((v as Record<string, unknown>)[k]);
    }
    if (++visited % WALK_NODES === 0 && slice.due()) await slice.pause();
  }
  return false;
}

/**
 * A score job's row-form `items`, collected as a large body arrives (json-body.ts passes it to the parser): each item
 * is checked by the item schema and added to columns at once (RowColumns), so 5 million items never exist as 5
 * million objects. The first item and the first one the schema refuses are kept raw, for the skeleton below.
 */
export class CollectedItems implements ArrayCollector {
  count = 0;
  private first: unknown;
  /** The first element the item schema refuses (-1: none), and the element. */
  bad = -1;
  private badValue: unknown;
  readonly rows = new RowColumns();

  add(value: unknown): void {
    const i = this.count++;
    if (i === 0) this.first = value;
    if (this.bad >= 0) return;
    const r = ELEMENTS.items.safeParse(value);
    if (!r.success) {
      this.bad = i;
      this.badValue = value;
      return;
    }
    this.rows.add(r.data as Item);
  }

  finish(): CollectedItems {
    return this;
  }

  /** The array the skeleton holds in place of the items: the first, and the first bad one if it is not the first. */
  skeleton(): unknown[] {
    if (this.count === 0) return [];
    return this.bad > 0 ? [this.first, this.badValue] : [this.first];
  }
}

/**
 * `parseJobRequest(body)` for a body parsed from JSON (so `meta` is JSON), validated in slices between which the
 * event loop runs. The arrays of `body` are reused (and their elements replaced by validated ones); its `items` may
 * be CollectedItems (already validated and columns).
 */
export async function parseJobRequestInSlices(body: unknown, slice: TimeSlice): Promise<ParsedJob> {
  if (!isRecord(body)) return parseJobRequest(body);
  const collected = Object.hasOwn(body, 'items') && body['items'] instanceof CollectedItems ? body['items'] : undefined;
  if (collected !== undefined && collected.count > MAX_JOB_ITEMS) return { ok: false, error: `items: more than ${MAX_JOB_ITEMS} items` };
  const long: LongArray[] = [];
  const add = (holder: Record<string, unknown>, key: string, element: z.ZodType): void => {
    const values = Object.hasOwn(holder, key) ? holder[key] : undefined;
    if (Array.isArray(values) && values.length > 1) long.push({ holder, key, values, element, bad: -1 });
  };
  add(body, 'items', ELEMENTS.items);
  const columns = Object.hasOwn(body, 'columns') ? body['columns'] : undefined;
  if (isRecord(columns)) {
    add(columns, 'ids', ELEMENTS.ids);
    add(columns, 'prompts', ELEMENTS.prompts);
    add(columns, 'responses', ELEMENTS.responses);
  }
  const hasMeta = Object.hasOwn(body, 'meta');
  // Arrays over the schema's own length limit (only if the coordinator's maxItems allows them), and meta with a
  // number JSON turned into Infinity: the error is the schema's to word, so validate the body whole (bar collected
  // items, which stay cut).
  const whole = long.some((a) => a.values.length > MAX_JOB_ITEMS) || (hasMeta && (await hasNonFinite(body['meta'], slice)));
  if (!whole && !(collected !== undefined && collected.bad >= 0)) {
    for (const a of long) {
      a.bad = await validateElements(a, slice);
      if (a.bad >= 0) break; // whatever zod visits after it cannot be the first issue
    }
  }
  const skeleton: Record<string, unknown> = { ...body };
  if (hasMeta && !whole) skeleton['meta'] = null;
  let skeletonColumns: Record<string, unknown> | undefined;
  if (isRecord(columns)) {
    skeletonColumns = { ...columns };
    skeleton['columns'] = skeletonColumns;
  }
  if (!whole) {
    for (const a of long) {
      const target = a.holder === body ? skeleton : (skeletonColumns as Record<string, unknown>);
      target[a.key] = a.bad >= 0 ? [a.values[0], a.values[a.bad]] : [a.values[0]];
    }
  }
  if (collected !== undefined) skeleton['items'] = collected.skeleton();
  const result = jobRequestSchema.safeParse(skeleton);
  const failed = long.find((a) => a.bad >= 0);
  if (!result.success) {
    const issue = result.error.issues[0];
    const cut = failed !== undefined ? { prefix: failed.holder === body ? [failed.key] : ['columns', failed.key], bad: failed.bad } : collected !== undefined && collected.bad > 0 ? { prefix: ['items'], bad: collected.bad } : undefined;
    if (issue !== undefined && cut !== undefined) {
      const n = cut.prefix.length;
      if (cut.prefix.every((k, i) => issue.path[i] === k) && issue.path[n] === 1) issue.path[n] = cut.bad;
    }
    return { ok: false, error: describeIssue(result.error) };
  }
  // Cannot happen (the bad element is in the skeleton); should it, the whole body decides.
  if (failed !== undefined) return parseJobRequest(body);
  if (collected !== undefined && collected.bad >= 0) return { ok: false, error: `items[${collected.bad}]: invalid item` };
  const request: JobRequest = result.data;
  if (!whole) {
    for (const a of long) {
      const target = (a.holder === body ? request : request.columns) as Record<string, unknown> | undefined;
      const cut = target?.[a.key];
      if (!Array.isArray(cut) || target === undefined) return parseJobRequest(body);
      a.values[0] = cut[0];
      target[a.key] = a.values;
    }
    if (hasMeta) request.meta = body['meta'] as JobRequest['meta'];
  }
  const steps = checkJobRequestSteps(request, collected?.rows);
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
    if (slice.due()) await slice.pause();
  }
}
