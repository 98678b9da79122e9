// One training job's state on the coordinator (docs/architecture.md, "Training"): its config, data and placement,
// the driver once it runs, the shards it has in the lease table, metrics, and what an ended job still serves. The
// training service (training-service.ts) moves it along; this file only holds and releases it.
import type { TrainConfig } from '../../shared/config/train.js';
import type { WeightsMessage } from '../../shared/protocol/index.js';
import type { Adversary } from '../../shared/training/adversary.js';
import { HeldWeights } from '../../shared/training/held-weights.js';
import type { AnyDriverSnapshot } from '../../shared/training/create-driver.js';
import type { ClientArrival, DispatchOrder, TrainingDriver } from '../../shared/training/types.js';
import type { AsyncDriver } from '../../shared/training/async-driver.js';
import type { SyncDriver } from '../../shared/training/sync-driver.js';
import type { JobState, JobStatusBase } from '../store.js';
import type { TrainModel } from './evaluator.js';
import type { CentralData } from './job-request.js';
import type { Placement } from './placement.js';

/** One metrics.jsonl line. `time` is seconds since the job started; accuracy/eval_loss null when not evaluated. */
export interface TrainMetricLine {
  step: number;
  time: number;
  loss: number | null;
  accuracy: number | null;
  eval_loss: number | null;
  participants: number;
  staleness_mean: number | null;
}

/** GET /api/jobs/:id for a training job. */
export interface TrainJobStatus extends JobStatusBase {
  kind: 'train';
  mode: 'sync' | 'async';
  clients: number;
  /** Set while no connected worker can train it (none trains, none holds its dataset): why it waits. */
  waiting?: string;
}

export class TrainingJob {
  state: JobState = 'queued';
  finishedAt: number | undefined;
  error: string | undefined;
  driver: (TrainingDriver & (SyncDriver | AsyncDriver)) | undefined;
  model: TrainModel | undefined;
  metrics: TrainMetricLine[] = [];
  /** Its shards in the lease table (index → the order they carry), until each is answered, lost or dropped. */
  shards = new Map<number, DispatchOrder>();
  roundTimer: NodeJS.Timeout | undefined;
  /** `now()` at which training time 0 lies (earlier than the start after a restart). */
  startedAt = 0;
  waiters = new Set<() => void>();
  /** Virtual clients; for worker data fixed when training starts (data.clients, or the workers holding it then). */
  numClients: number;
  placement: Placement | undefined;
  /** A head over embeddings (set when the model loads): the embedding model its workers' servers must serve. */
  embedding: string | undefined;
  adversary: Adversary | null = null;
  /** A checkpoint to resume from (set by restore, consumed when the driver is built). */
  resumeFrom: { snapshot: AnyDriverSnapshot; elapsed: number } | undefined;
  /** Worker-held data: the bindings of the checkpoint resumed from, until the placement exists. */
  bindings: Array<[string, number]> = [];
  /** Weights of an ended job (served by modelBundle): its driver's last weights, or the checkpoint's after a restart. */
  finalWeights: Float32Array | undefined;
  /** The driver's version when the job ended and dropped its driver. */
  finalVersion: number | undefined;
  checkpointedStep = -1;
  /** modelBundle calls using `model` now; an ended job disposes it when the last one returns. */
  modelUsers = 0;
  /** The step whose evaluation runs now (off the event loop): its metrics line, pushed when it ends. The job waits meanwhile. */
  evaluating: { line: TrainMetricLine } | undefined;
  /** The `weights` messages of its latest model versions (one object per version, so it is encoded once for all workers). */
  weightsMessages = new HeldWeights<WeightsMessage>();
  /** Async: results that arrived while a step was evaluated, applied in arrival order once it ends. */
  held: Array<{ arrival: ClientArrival; now: number }> = [];

  constructor(
    readonly id: string,
    readonly config: TrainConfig,
    readonly modelHash: string,
    /** Training data and eval data: dropped when the job ends (release). */
    public data: CentralData | undefined,
    public evalData: CentralData | undefined,
    readonly createdAt: number,
    /** The submitter that created it (auth.ts Principal.owner), null when the submitter role was open. */
    readonly owner: string | null = null,
  ) {
    const d = config.data;
    this.numClients = d.source === 'central' ? d.partition.clients : (d.clients ?? 0);
  }

  get total(): number {
    return this.config.mode === 'sync' ? this.config.rounds : this.config.steps;
  }

  get done(): number {
    return this.driver?.version ?? this.finalVersion ?? this.metrics.at(-1)?.step ?? 0;
  }

  /** The dataset name workers must hold, for worker-held data. */
  get datasetName(): string | undefined {
    return this.config.data.source === 'worker' ? this.config.data.name : undefined;
  }

  wake(): void {
    const w = this.waiters;
    this.waiters = new Set();
    for (const resolve of w) resolve();
  }

  /**
   * Drops what only training needs once the job has ended (after its final checkpoint): the driver (keeping its
   * weights and version), the data, eval data, placement, the adversary, the weights messages, and the model (disposed now, or by the last
   * modelBundle call still using it). What an ended job serves stays: state, metrics, weights.
   */
  release(): void {
    const dr = this.driver;
    if (dr !== undefined) {
      this.finalWeights = dr.weights;
      this.finalVersion = dr.version;
      this.driver = undefined;
    }
    this.data = undefined;
    this.evalData = undefined;
    this.placement = undefined;
    this.adversary = null;
    this.resumeFrom = undefined;
    this.bindings = [];
    this.shards.clear();
    this.weightsMessages = new HeldWeights<WeightsMessage>();
    this.held = [];
    if (this.modelUsers === 0) this.disposeModel();
  }

  disposeModel(): void {
    this.model?.dispose();
    this.model = undefined;
  }
}
