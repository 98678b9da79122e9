// Timed events for the discrete-event engines. Order: time, then priority (lower first), then insertion order — so
// simultaneous events pop deterministically, in the order they were scheduled.
//
// Two sorted sources merged on pop: events pushed in order (not before the last in-order one: a sync round's equal
// durations, a clock's ticks) go to a FIFO at O(1); the others to a binary min-heap. A round of 10,000 equal-time
// arrivals then costs no heap work at all.

interface Entry<T> {
  time: number;
  priority: number;
  seq: number;
  value: T;
}

export class EventQueue<T> {
  private heap: Entry<T>[] = [];
  private fifo: Entry<T>[] = [];
  private head = 0;
  private seq = 0;

  get size(): number {
    return this.heap.length + this.fifo.length - this.head;
  }

  /** Schedules `value` at `time` (finite, ≥ 0 is not required); `priority` breaks ties before insertion order. */
  push(time: number, value: T, priority = 0): void {
    if (Number.isNaN(time)) throw new RangeError('EventQueue.push: time is NaN');
    const e: Entry<T> = { time, priority, seq: this.seq++, value };
    // The FIFO stays sorted: it takes an event not before its last one (any event when it is empty).
    const last = this.fifo.length > this.head ? this.fifo[this.fifo.length - 1] : undefined;
    if (last === undefined || !before(e, last)) {
      this.fifo.push(e);
      return;
    }
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
    return this.first()?.time ?? Infinity;
  }

  /** Removes and returns the earliest event, or undefined when empty. */
  pop(): { time: number; value: T } | undefined {
    const e = this.take();
    return e === undefined ? undefined : { time: e.time, value: e.value };
  }

  /** pop()'s value without the wrapper (the engines' hot loop). */
  popValue(): T | undefined {
    return this.take()?.value;
  }

  private first(): Entry<T> | undefined {
    const f = this.fifo.length > this.head ? this.fifo[this.head] : undefined;
    const h = this.heap[0];
    if (f === undefined) return h;
    if (h === undefined) return f;
    return before(h, f) ? h : f;
  }

  private take(): Entry<T> | undefined {
    const f = this.fifo.length > this.head ? this.fifo[this.head] : undefined;
    const h = this.heap[0];
    if (f !== undefined && (h === undefined || !before(h, f))) {
      this.head++;
      // Compact once the consumed prefix is half the array (amortised O(1)).
      if (this.head * 2 >= this.fifo.length) {
        this.fifo = this.fifo.slice(this.head);
        this.head = 0;
      }
      return f;
    }
    return h === undefined ? undefined : this.popHeap();
  }

  private popHeap(): Entry<T> {
    const h = this.heap;
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
    return top;
  }
}

function before<T>(a: Entry<T>, b: Entry<T>): boolean {
  if (a.time !== b.time) return a.time < b.time;
  if (a.priority !== b.priority) return a.priority < b.priority;
  return a.seq < b.seq;
}
