/**
 * Cooperative time slicing for long work on the event loop: call `due()` as often as convenient and, when it says
 * so, `await pause()`, which lets timers, sockets and other requests run before the work goes on.
 */
export class TimeSlice {
  private started = performance.now();

  /** `sliceMs`: the longest the work may run between pauses. */
  constructor(private readonly sliceMs = 10) {}

  due(): boolean {
    return performance.now() - this.started >= this.sliceMs;
  }

  /** Yields to the event loop (after pending I/O callbacks), then starts a new slice. */
  async pause(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.started = performance.now();
  }
}
