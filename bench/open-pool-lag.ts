// Preloaded into the coordinator by bench/open-pool.ts (`node --import=tsx --import=bench/open-pool-lag.ts …`): the
// coordinator's own event-loop delay (perf_hooks.monitorEventLoopDelay, 10 ms resolution), written as JSON to
// $FEDPOOL_BENCH_LAG_FILE every 250 ms, counted from the last SIGUSR2 (the bench sends one when a row starts, so that
// the start-up's module loading is left out). It separates a coordinator that blocks (a long delay here) from requests
// that wait their turn behind many others, or a process the machine did not schedule (a slow /healthz, no delay here;
// a process that is not running also shows here as delay). Without the variable it does nothing.
import { writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';

export interface LagReport {
  maxMs: number;
  p99Ms: number;
  /** Delays of more than 100 ms seen (each 250 ms window's maximum counts once). */
  over100: number;
  /** The largest delays (of 250 ms windows), with when they ended: ms since the last SIGUSR2. */
  worst: { atMs: number; ms: number }[];
}

const file = process.env['FEDPOOL_BENCH_LAG_FILE'];
if (file !== undefined && file !== '') {
  const whole = monitorEventLoopDelay({ resolution: 10 });
  const recent = monitorEventLoopDelay({ resolution: 10 });
  whole.enable();
  recent.enable();
  let over100 = 0;
  const worst: { atMs: number; ms: number }[] = [];
  let since = performance.now();
  process.on('SIGUSR2', () => {
    whole.reset();
    recent.reset();
    over100 = 0;
    worst.length = 0;
    since = performance.now();
  });
  const timer = setInterval(() => {
    const ms = recent.max / 1e6;
    recent.reset();
    if (ms > 100) {
      over100++;
      worst.push({ atMs: Math.round(performance.now() - since), ms: Math.round(ms) });
      worst.sort((a, b) => b.ms - a.ms);
      worst.length = Math.min(worst.length, 5);
    }
    const report: LagReport = { maxMs: whole.max / 1e6, p99Ms: whole.percentile(99) / 1e6, over100, worst };
    try {
      writeFileSync(file, JSON.stringify(report));
    } catch {
      // the bench removed its scratch folder: nothing to report to
    }
  }, 250);
  timer.unref();
}
