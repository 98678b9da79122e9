// A binary min-heap of timed events for the discrete-event engine. Order: time, then priority (lower first), then
// insertion order — so simultaneous events pop deterministically, in the order they were scheduled.

interface Entry<T> {
  time: number;
  priority: number;
  seq: number;
  value: T;
}

export class EventQueue<T> {
  private heap: Entry<T>[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  /** Schedules `value` at `time` (finite, ≥ 0 is not required); `priority` breaks ties before insertion order. */
  push(time: number, value: T, priority = 0): void {
    if (Number.isNaN(time)) throw new RangeError('EventQueue.push: time is NaN');
    const e: Entry<T> = { time, priority, seq: this.seq++, value };
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(e, h[p]!)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  /** Time of the earliest event (Infinity when empty). */
  peekTime(): number {
    return this.heap.length === 0 ? Infinity : this.heap[0]!.time;
  }

  /** Removes and returns the earliest event, or undefined when empty. */
  pop(): { time: number; value: T } | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      const n = h.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        const c = r < n && before(h[r]!, h[l]!) ? r : l;
        if (!before(h[c]!, last)) break;
        h[i] = h[c]!;
        i = c;
      }
      h[i] = last;
    }
    return { time: top.time, value: top.value };
  }
}

function before<T>(a: Entry<T>, b: Entry<T>): boolean {
  if (a.time !== b.time) return a.time < b.time;
  if (a.priority !== b.priority) return a.priority < b.priority;
  return a.seq < b.seq;
}
