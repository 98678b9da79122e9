// JSON.stringify in steps (docs/security.md, "Memory and the event loop"): a job's meta can be a line per item, a
// million small objects whose JSON.stringify holds the event loop for 0.3 s. This walks the value without recursion,
// hands small all-scalar containers (one meta line) to the native JSON.stringify whole, and awaits `pause()` between
// steps. The text is exactly JSON.stringify's for a value that came out of a JSON parser.

/** Containers with at most this many entries, all of them scalars, are stringified natively in one piece. */
const SMALL_ENTRIES = 16;

function isScalar(v: unknown): boolean {
  return typeof v !== 'object' || v === null;
}

function small(v: object): boolean {
  if (Array.isArray(v)) return v.length <= SMALL_ENTRIES && v.every(isScalar);
  let n = 0;
  for (const k in v) {
    if (!Object.hasOwn(v, k)) continue;
    if (++n > SMALL_ENTRIES || !isScalar((v as Record<string, unknown>)[k])) return false;
  }
  return true;
}

/** A container being written: its entries (an array's values, or an object's defined keys) and the next one. */
interface Frame {
  value: unknown[] | Record<string, unknown>;
  keys: string[] | undefined;
  next: number;
}

/** JSON.stringify(value), awaiting `pause()` after every `nodesPerStep` values. */
export async function stringifyInSteps(value: unknown, pause: () => Promise<void>, nodesPerStep = 16_384): Promise<string> {
  const out: string[] = [];
  const stack: Frame[] = [];
  let visited = 0;
  /** Writes `v` after `prefix` (a comma, a key): whole, or by opening a frame. */
  const write = (v: unknown, prefix: string): void => {
    if (isScalar(v) || small(v as object)) out.push(prefix + JSON.stringify(v === undefined ? null : v));
    else if (Array.isArray(v)) {
      out.push(`${prefix}[`);
      stack.push({ value: v, keys: undefined, next: 0 });
    } else {
      const record = v as Record<string, unknown>;
      out.push(`${prefix}{`);
      stack.push({ value: record, keys: Object.keys(record).filter((k) => record[k] !== undefined), next: 0 });
    }
  };
  write(value, '');
  while (stack.length > 0) {
    const frame = stack[stack.length - 1] as Frame;
    const { keys } = frame;
    const count = keys === undefined ? (frame.value as unknown[]).length : keys.length;
    if (frame.next >= count) {
      out.push(keys === undefined ? ']' : '}');
      stack.pop();
      continue;
    }
    const i = frame.next++;
    const comma = i === 0 ? '' : ',';
    if (keys === undefined) write((frame.value as unknown[])[i], comma);
    else {
      const k = keys[i] as string;
      write((frame.value as Record<string, unknown>)[k], `${comma}${JSON.stringify(k)}:`);
    }
    if (++visited % nodesPerStep === 0) await pause();
  }
  return out.join('');
}
