// The watcher of bench/open-pool.ts, in its own process so that the attack generator's event loop adds nothing to what
// it measures: the coordinator's resident memory (VmRSS of /proc/PID/status, every 100 ms, and VmHWM, the kernel's
// own peak, at the end), its CPU time, and GET /healthz, one request every 50 ms over one keep-alive connection (a
// request slower than that delays the next one; past 10 s it counts as an error). The same is asked, in the same way,
// of a control: a bare node:http server in a process of its own (this file with --control) that does nothing else, so
// that what the machine's scheduling costs a request can be told from what the coordinator costs it. It imports
// nothing of fedpool.
//   forked by bench/open-pool.ts: open-pool-probe.ts URL PID CONTROL_URL; 'stop' over IPC answers with ProbeReport
//   and exits. open-pool-probe.ts --control: serves 200 to everything, sends its port over IPC.
import { Agent, createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { cpuSeconds } from './processes.js';

export interface Latencies {
  requests: number;
  errors: number;
  firstError: string;
  maxMs: number;
  p99Ms: number;
  p50Ms: number;
}

export interface ProbeReport {
  healthz: Latencies;
  /** The same requests to the control process. */
  control: Latencies;
  /** The first VmRSS sample, the largest, the kernel's VmHWM (peak over the process's life), the last sample; MiB. */
  rss: { samples: number; startMb: number; maxMb: number; hwmMb: number; lastMb: number };
  /** The coordinator's CPU time (user + system) over the probe's life, seconds. */
  cpuSeconds: number;
  seconds: number;
}

const HEALTHZ_EVERY_MS = 50;
const RSS_EVERY_MS = 100;
const HEALTHZ_TIMEOUT_MS = 10_000;

function statusKb(pid: number, key: string): number {
  try {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? 0 : Number(m[1]);
  } catch {
    return 0; // the process is gone
  }
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)] as number;
}

async function main(): Promise<void> {
  const url = process.argv[2] ?? '';
  const pid = Number(process.argv[3]);
  const controlUrl = process.argv[4] ?? '';
  if (url === '' || !Number.isInteger(pid) || controlUrl === '') throw new Error('usage: open-pool-probe.ts URL PID CONTROL_URL');
  const started = performance.now();
  const cpuAtStart = cpuSeconds(pid);
  let maxRssKb = 0;
  let lastRssKb = 0;
  let samples = 0;
  const sample = (): void => {
    lastRssKb = statusKb(pid, 'VmRSS');
    maxRssKb = Math.max(maxRssKb, lastRssKb);
    samples++;
  };
  sample();
  const startRssKb = lastRssKb;
  const rssTimer = setInterval(sample, RSS_EVERY_MS);

  let stopping = false;
  const coordinator = asker(url, () => stopping);
  const control = asker(controlUrl, () => stopping);

  process.on('message', (m: unknown) => {
    if (m !== 'stop') return;
    stopping = true;
    void Promise.all([coordinator.done, control.done]).then(([healthz, controlLatencies]) => {
      clearInterval(rssTimer);
      sample();
      const report: ProbeReport = {
        healthz, control: controlLatencies,
        rss: { samples, startMb: startRssKb / 1024, maxMb: maxRssKb / 1024, hwmMb: statusKb(pid, 'VmHWM') / 1024, lastMb: lastRssKb / 1024 },
        cpuSeconds: cpuSeconds(pid) - cpuAtStart,
        seconds: (performance.now() - started) / 1000,
      };
      process.send?.(report, () => process.exit(0));
    });
  });
  // The bench went away without a word: so do we.
  process.on('disconnect', () => process.exit(0));
  process.send?.('ready');
}

/** GET /healthz of `url` every 50 ms (one at a time, one keep-alive connection) until `stop()`; `done` has the figures. */
function asker(url: string, stop: () => boolean): { done: Promise<Latencies> } {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const latencies: number[] = [];
  let errors = 0;
  let firstError = '';
  const once = (): Promise<number> =>
    new Promise((resolve) => {
      const t0 = performance.now();
      const fail = (why: string): void => {
        errors++;
        if (firstError === '') firstError = why;
        resolve(performance.now() - t0);
      };
      const req = request(`${url}/healthz`, { agent, timeout: HEALTHZ_TIMEOUT_MS }, (res) => {
        res.resume();
        res.on('end', () => (res.statusCode === 200 ? resolve(performance.now() - t0) : fail(`status ${res.statusCode ?? 0}`)));
        res.on('error', (e) => fail(e.message));
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${HEALTHZ_TIMEOUT_MS} ms`)));
      req.on('error', (e) => fail(e.message));
      req.end();
    });
  const done = (async (): Promise<Latencies> => {
    while (!stop()) {
      const t0 = performance.now();
      latencies.push(await once());
      const wait = HEALTHZ_EVERY_MS - (performance.now() - t0);
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    }
    agent.destroy();
    const sorted = [...latencies].sort((a, b) => a - b);
    return { requests: latencies.length, errors, firstError, maxMs: sorted.at(-1) ?? 0, p99Ms: quantile(sorted, 0.99), p50Ms: quantile(sorted, 0.5) };
  })();
  return { done };
}

/** The control: a bare HTTP server on 127.0.0.1, nothing else in its process. */
function control(): void {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{"ok":true}\n');
  });
  server.keepAliveTimeout = 5000;
  server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
  process.on('disconnect', () => process.exit(0));
}

if (process.argv[2] === '--control') control();
else await main();
