// One process of simulated workers for `fedpool simulate --live` (forked by live.ts with an IPC channel). Each
// simulated worker is a real worker — client/worker.ts: its own socket.io connection, hello, leases, heartbeats,
// momentum, drain — holding one client's rows of the simulated task as its dataset `sim-s<seed>` and training with
// the plain-JS LinearTrainer. Its job durations follow the experiment's speed model, scaled to wall time; Byzantine
// workers (index ≥ honest) hold a copy of an honest client's rows (for label flipping) and answer at once.
import { BlobCache } from '../../client/blob-cache.js';
import type { Dataset } from '../../client/training/datasets.js';
import { Worker, type DatasetSource, type Scorer } from '../../client/worker.js';
import { deriveSeed, mulberry32 } from '../../shared/random.js';
import { parseSimConfig, resolvedExperiments, type SimConfig } from '../../simulations/config.js';
import { createSpeeds } from '../../simulations/engine/speeds.js';
import type { Duration } from '../../simulations/engine/sync.js';
import { makeTask, speedSpec } from '../../simulations/presets/from-config.js';
import type { SoftmaxTask } from '../../simulations/tasks/softmax.js';
import { datasetName, fromHostSchema, toHostSchema, workerName, type FromHost, type ToHost } from './host-messages.js';
import { LinearTrainer } from './linear-trainer.js';

function send(message: FromHost): void {
  fromHostSchema.parse(message);
  process.send?.(message);
}

const noScoring: Scorer = {
  score: () => Promise.reject(new Error('simulated workers do not score')),
  close: () => Promise.resolve(),
};

interface Run {
  duration: Duration | null;
  rngs: Map<number, () => number>;
  seed: number;
}

class Host {
  private readonly cfg: SimConfig;
  private readonly workers: Worker[] = [];
  private readonly tasks = new Map<number, SoftmaxTask>();
  private run: Run = { duration: null, rngs: new Map(), seed: 1 };

  constructor(private readonly start: Extract<ToHost, { type: 'start' }>) {
    this.cfg = parseSimConfig(start.config);
  }

  private task(seed: number): SoftmaxTask {
    let t = this.tasks.get(seed);
    if (t === undefined) {
      const made = makeTask(this.cfg, seed);
      if (!('offsets' in made)) throw new Error(`task ${this.cfg.task.kind} has no rows to hold`);
      t = made as SoftmaxTask;
      if (this.tasks.size >= 2) this.tasks.clear();
      this.tasks.set(seed, t);
    }
    return t;
  }

  /** The rows worker k holds for seed s: client k's, or (Byzantine) a copy of an honest client's. */
  private dataset(k: number, name: string): Dataset {
    const seed = Number(/^sim-s(\d+)$/.exec(name)?.[1]);
    if (!(seed >= 1 && seed <= this.start.seeds)) throw new Error(`no dataset ${name} on this worker`);
    const t = this.task(seed);
    const client = k < this.start.honest ? k : (k - this.start.honest) % this.start.honest;
    const from = t.offsets[client]!;
    const to = t.offsets[client + 1]!;
    const F = t.features;
    return { kind: 'features', name, path: `(simulated client ${client})`, dim: F, x: t.trainX.subarray(from * F, to * F), labels: t.trainY.subarray(from, to) };
  }

  private delayMs(k: number): number {
    if (k >= this.start.honest) return 0; // the attacker's vector is built by the coordinator's adversary
    const { duration, rngs, seed } = this.run;
    if (duration === null) return this.start.timeScale * 1000; // no speed model: every job takes 1
    let rng = rngs.get(k);
    // Client k's own duration stream, as the simulator draws it (simulations/engine/clients.ts clientDurations).
    if (rng === undefined) rngs.set(k, (rng = mulberry32(deriveSeed(seed, 'duration', k))));
    return duration(k, rng) * this.start.timeScale * 1000;
  }

  async setRun(experiment: string, seed: number): Promise<void> {
    const e = resolvedExperiments(this.cfg).find((x) => x.name === experiment);
    if (e === undefined) throw new Error(`no experiment ${experiment}`);
    // A cancelled job's leases may still be sleeping: let them finish before the delay streams restart, so each run
    // draws its delays from the start of its own streams.
    for (const t0 = Date.now(); this.workers.some((w) => w.inFlight > 0) && Date.now() - t0 < 60_000; ) await new Promise((r) => setTimeout(r, 20));
    this.task(seed); // build the rows now, not inside the first lease
    const duration = e.speeds === null ? null : createSpeeds(speedSpec(e.speeds), this.start.honest, seed);
    this.run = { duration, rngs: new Map(), seed };
  }

  connect(): void {
    const { first, count, total, url, seeds } = this.start;
    const blobs = new BlobCache();
    const names = Array.from({ length: seeds }, (_, i) => datasetName(i + 1));
    const keepMomentum = (): boolean => this.cfg.local.keepMomentum === true;
    let welcomed = 0;
    for (let k = first; k < first + count; k++) {
      const datasets: DatasetSource = { names, get: (name) => Promise.resolve().then(() => this.dataset(k, name)) };
      let seen = false;
      const worker = new Worker({
        url,
        name: workerName(k, total),
        threads: 1,
        credit: 1,
        backend: 'cpu',
        scorer: noScoring,
        trainer: new LinearTrainer({ delayMs: () => this.delayMs(k), keepMomentum }),
        datasets,
        blobs,
        onConnected: () => {
          if (seen) return;
          seen = true;
          if (++welcomed === count) send({ type: 'connected', workers: count });
        },
      });
      this.workers.push(worker);
      worker.start().catch((e: unknown) => send({ type: 'error', message: `${workerName(k, total)}: ${e instanceof Error ? e.message : String(e)}` }));
    }
  }

  async stop(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.drain()));
  }
}

let host: Host | undefined;

process.on('message', (raw: unknown) => {
  const parsed = toHostSchema.safeParse(raw);
  if (!parsed.success) {
    send({ type: 'error', message: `bad message from the simulator: ${parsed.error.issues[0]?.message ?? 'invalid'}` });
    return;
  }
  const m = parsed.data;
  try {
    if (m.type === 'start') {
      host = new Host(m);
      host.connect();
    } else if (m.type === 'run') {
      if (host === undefined) throw new Error('run before start');
      host.setRun(m.experiment, m.seed).then(
        () => send({ type: 'ready' }),
        (e: unknown) => send({ type: 'error', message: e instanceof Error ? e.message : String(e) }),
      );
    } else {
      void (host?.stop() ?? Promise.resolve()).finally(() => process.exit(0));
    }
  } catch (e) {
    send({ type: 'error', message: e instanceof Error ? e.message : String(e) });
  }
});
// The simulator went away without a stop: do not linger.
process.on('disconnect', () => process.exit(0));
