// The coordinator's job registry (docs/architecture.md, "One lease table"): one lease table (scheduler.ts) for every
// kind of work, the services that own the jobs (score-jobs.ts, training/training-service.ts), and the routing of worker
// events to them by job id. Sockets and HTTP talk to this class and never branch on a job's kind.
import { randomBytes } from 'node:crypto';
import { mulberry32 } from '../shared/random.js';
import type { Logger } from 'pino';
import type { Capabilities, FailureMessage, LeaseMessage, ResultMessage } from '../shared/protocol/index.js';
import { BlobStore } from './blobs.js';
import { BlobCollector } from './blob-collector.js';
import { canSee, type Principal } from './auth.js';
import type { JobService, LeaseTable, OutgoingLease, ShardOutput } from './job-service.js';
import { WorkerRegistry, type WorkerInfo } from './worker-registry.js';
import { DEFAULT_QUARANTINE, WorkerRecords, type QuarantineRule } from './worker-records.js';
import { Scheduler, type Grant } from './scheduler.js';
import { ScoreJobs, workerOffers, type ScoreJobStatus } from './score-jobs.js';
import { TrainingService, type TrainJobStatus } from './training/training-service.js';
import { JOB_STATES, isTerminal, type JobState, type Store } from './store.js';

/** Where the registry sends what the lease table decides; implemented by the socket layer. */
export interface LeaseSink {
  /** Sends a lease (its model weights first, when it has some); throws if it cannot (e.g. the frame would be too large). */
  sendLease(workerId: string, lease: OutgoingLease): void;
  /** Tells a worker to drop its leases of a job that ended (job-control cancel). */
  dropJob(workerId: string, jobId: string): void;
}

export interface JobRegistryOptions {
  store: Store;
  leaseMs: number;
  logger: Logger;
  maxFrameBytes: number;
  now?: () => number;
  speculative?: boolean;
  /** When a worker's record puts it in quarantine (default worker-records.ts DEFAULT_QUARANTINE). */
  quarantine?: QuarantineRule;
  /** Blame per worker (scheduler.ts): losses before a worker is out for a shard, and workers out before it fails. */
  lossesPerWorker?: number;
  blameWorkers?: number;
  /**
   * Seed of the adaptive spot checks. Default: random per start, so that no worker can learn from the source which of
   * its results will be checked (tests fix it).
   */
  spotCheckSeed?: number;
  /**
   * Retention (`fedpool coordinator --retain-jobs DAYS`): ended jobs are deleted this long after they ended, checked at
   * restore() and then every min(1 h, retainJobsMs / 10). Undefined: jobs are kept forever.
   */
  retainJobsMs?: number;
  /**
   * A blob that only deleted jobs named is removed once nothing used it for this long (default 1 h; see BlobStore's
   * `used`): a submitter that confirmed it by HEAD moments ago for a job it is about to submit still finds it.
   */
  blobGraceMs?: number;
}

/** How long a blob only deleted jobs named stays after its last use, by default. */
export const DEFAULT_BLOB_GRACE_MS = 60 * 60 * 1000;
/** The longest pause between two retention checks. */
const MAX_RETENTION_CHECK_MS = 60 * 60 * 1000;

/** Spot-check probability floor of `--redundancy adaptive` (docs/security.md). */
export const SPOT_CHECK_FLOOR = 0.05;

/**
 * The most leases a worker may hold: about twice its threads (one running, one queued each), plus a few for an
 * inference server's pipeline. A worker that asks for more (say the protocol's 1,024) gets this many.
 */
export function creditCap(capabilities: Pick<Capabilities, 'threads'>): number {
  return 2 * capabilities.threads + 8;
}

export type JobStatus = ScoreJobStatus | TrainJobStatus;

/** Internal callers (metrics, tests) see every job. */
const ANYONE: Principal = { owner: null, admin: true };

export class JobRegistry {
  readonly scheduler: LeaseTable;
  readonly workers: WorkerRegistry;
  readonly blobs: BlobStore;
  readonly score: ScoreJobs;
  readonly training: TrainingService;
  /** Each worker's record by name; a bad one means quarantine (worker-records.ts). */
  readonly records: WorkerRecords;
  sink: LeaseSink | undefined;

  private readonly log: Logger;
  private readonly now: () => number;
  private readonly store: Store;
  private readonly retainMs: number | undefined;
  private readonly blobGraceMs: number;
  private retentionTimer: NodeJS.Timeout | undefined;
  /** Removes the blobs no job names any more (blob-collector.ts). */
  private readonly collector: BlobCollector;
  /** Job id → the service that owns it. */
  private readonly owners = new Map<string, JobService>();
  /** Job id → worker name → accepted results (shareOf). */
  private readonly shares = new Map<string, Map<string, number>>();
  private timer: NodeJS.Timeout | undefined;
  private timerAt = Infinity;
  private closed = false;
  private pumping = false;
  private pumpAgain = false;
  private readonly bootId = randomBytes(3).toString('hex');
  private leaseSeq = 0;

  constructor(options: JobRegistryOptions) {
    this.log = options.logger;
    this.now = options.now ?? Date.now;
    this.store = options.store;
    if (options.retainJobsMs !== undefined && !(options.retainJobsMs > 0)) throw new RangeError('retainJobsMs must be positive');
    this.retainMs = options.retainJobsMs;
    this.blobGraceMs = Math.max(0, options.blobGraceMs ?? DEFAULT_BLOB_GRACE_MS);
    this.workers = new WorkerRegistry(this.now);
    this.blobs = new BlobStore(options.store, this.now);
    this.collector = new BlobCollector(this.store, this.blobs, this.blobGraceMs, this.now, this.log);
    const spotCheck = mulberry32(options.spotCheckSeed ?? randomBytes(4).readUInt32LE(0));
    this.records = new WorkerRecords(options.quarantine ?? DEFAULT_QUARANTINE, (name, r) => {
      this.log.warn({ worker: name, record: r }, 'worker quarantined: its record is mostly lost, refused or malformed work');
      this.scheduler.setQuarantined(name, true);
    });
    this.scheduler = new Scheduler<ShardOutput>({
      leaseMs: options.leaseMs,
      now: this.now,
      trusted: (name: string) => this.records.trusted(name),
      // Adaptive replication: a result is checked with probability 1/(the worker's confirmed results in a row), ≥ 5 %.
      spotCheck: (name: string) => spotCheck() < Math.max(SPOT_CHECK_FLOOR, 1 / Math.max(1, this.records.consecutiveValid(name))),
      // Lease ids carry a per-boot prefix so a result for a lease from before a restart is never mistaken for a new one.
      newLeaseId: () => `${this.bootId}.${++this.leaseSeq}`,
      listener: {
        workerBlamed: (name, kind) => this.records.bad(name, kind),
        workerVerdict: (name, verdict) => this.records.verdict(name, verdict),
        shardDone: (e) => this.owners.get(e.jobId)?.shardDone(e),
        shardLost: (e) => this.owners.get(e.jobId)?.shardLost(e),
        jobState: (e) => {
          // Tell each worker once per job to drop leases it still holds, whatever the kind of job.
          for (const w of new Set(e.dropped.map((d) => d.workerId))) {
            try {
              this.sink?.dropJob(w, e.jobId);
            } catch (err) {
              this.log.warn({ worker: w, err: String(err) }, 'cannot send job-control');
            }
          }
          this.owners.get(e.jobId)?.jobState(e);
        },
      },
      ...(options.speculative === undefined ? {} : { speculative: options.speculative }),
      ...(options.lossesPerWorker === undefined ? {} : { lossesPerWorker: options.lossesPerWorker }),
      ...(options.blameWorkers === undefined ? {} : { blameWorkers: options.blameWorkers }),
    });
    const host = {
      table: this.scheduler,
      register: (jobId: string, service: JobService): void => {
        this.owners.set(jobId, service);
      },
      pump: (): void => this.pump(),
      store: options.store,
      workers: this.workers,
      blobs: this.blobs,
      log: this.log,
      now: this.now,
      leaseMs: options.leaseMs,
    };
    this.score = new ScoreJobs({ ...host, maxFrameBytes: options.maxFrameBytes });
    this.training = new TrainingService(host);
  }

  private get services(): JobService[] {
    return [this.score, this.training];
  }

  /** Loads jobs from the store; unfinished ones go on where they were. */
  restore(): { resumed: number; total: number } {
    for (const n of this.store.notices ?? []) this.log[n.level](n.message);
    let resumed = 0;
    let total = 0;
    for (const service of this.services) {
      const r = service.restore();
      resumed += r.resumed;
      total += r.total;
    }
    this.pump();
    // Retention (if any): a first pass now, then the timer.
    this.startRetention();
    return { resumed, total };
  }

  // ---- every kind of job, for sockets and HTTP ------------------------------------------------

  /** Any job's public view, if `who` may see it (its owner, an admin, or anyone for an ownerless job). */
  jobStatus(id: string, who: Principal = ANYONE): JobStatus | undefined {
    if (!canSee(who, this.ownerOf(id))) return undefined;
    return this.score.status(id) ?? this.training.status(id);
  }

  /**
   * The shards of a job each worker (by name) delivered an accepted result for, most first: since this coordinator
   * started (not persisted; a restarted coordinator counts afresh).
   */
  shareOf(id: string): Array<{ worker: string; shards: number }> {
    return [...(this.shares.get(id) ?? [])].map(([worker, shards]) => ({ worker, shards })).sort((a, b) => b.shards - a.shards || (a.worker < b.worker ? -1 : 1));
  }

  /** Every job `who` may see, score jobs first, each in submission order. */
  allJobs(who: Principal = ANYONE): JobStatus[] {
    return [...this.score.list(), ...this.training.list()].filter((j) => canSee(who, this.ownerOf(j.id)));
  }

  /** A job's owner (null: ownerless), undefined for an unknown job. */
  ownerOf(id: string): string | null | undefined {
    for (const service of this.services) {
      const owner = service.ownerOf(id);
      if (owner !== undefined) return owner;
    }
    return undefined;
  }

  /** Cancels a queued or running job of any kind; false if it is unknown or already over. */
  cancelJob(id: string): boolean {
    return this.owners.get(id)?.cancel(id) ?? false;
  }

  // ---- deleting ended jobs (DELETE on an ended job, retention) --------------------------------

  /**
   * Deletes an ended job of any kind and everything stored for it: record, meta, items, results, checkpoint and
   * metrics, in the store (which shrinks) and in memory (the services, the lease table); the blobs only it named follow
   * once unused (blob-collector.ts). False when the job is unknown, has not ended, or its end is not in the store yet.
   */
  deleteJob(id: string): boolean {
    const s = this.jobStatus(id);
    if (s === undefined || !isTerminal(s.state)) return false;
    return this.deleteJobs([id]).includes(id);
  }

  /** Deletes what it can of `ids` (see deleteJob), then removes the orphaned blobs that may go (also when `ids` is empty). */
  private deleteJobs(ids: readonly string[]): string[] {
    // A score job's end may still wait in the journal, and the store deletes only jobs whose end it recorded.
    this.score.flush();
    const { deleted, blobs } = this.store.deleteJobs(ids);
    for (const id of deleted) {
      this.shares.delete(id);
      for (const service of this.services) service.forget(id);
      this.owners.delete(id);
      this.scheduler.forgetJob(id);
    }
    if (deleted.length > 0) this.log.info({ jobs: deleted.length, first: deleted[0] }, 'ended jobs deleted');
    // The jobs are gone either way; a blob that could not go is tried again later.
    this.collector.orphaned(blobs);
    return deleted;
  }

  /** Resolves when the store has given back what deleted jobs held (it does so in steps; store.ts reclaimed). */
  reclaimed(): Promise<void> {
    return this.store.reclaimed();
  }

  /**
   * Retention: deletes the jobs that ended more than retainJobsMs ago (a job without an end time counts from its
   * creation), then stored blobs that no job names and that were neither stored nor used within the window nor the
   * blob grace (uploads whose job never came, blobs left over from before a restart). Returns how many jobs it deleted.
   */
  prune(): number {
    const retain = this.retainMs;
    if (retain === undefined || this.closed) return 0;
    const cutoff = this.now() - retain;
    const due = this.allJobs()
      .filter((j) => isTerminal(j.state) && Date.parse(j.finishedAt ?? j.createdAt) <= cutoff)
      .map((j) => j.id);
    try {
      const deleted = this.deleteJobs(due);
      this.collector.sweep(Math.min(cutoff, this.now() - this.blobGraceMs));
      return deleted.length;
    } catch (e) {
      this.log.error({ err: e instanceof Error ? e.message : String(e) }, 'cannot delete expired jobs');
      return 0;
    }
  }

  private startRetention(): void {
    if (this.retainMs === undefined || this.retentionTimer !== undefined || this.closed) return;
    this.prune();
    this.retentionTimer = setInterval(() => this.prune(), Math.max(10, Math.min(MAX_RETENTION_CHECK_MS, this.retainMs / 10)));
    this.retentionTimer.unref();
  }

  jobCounts(): Record<JobState, number> {
    const counts = Object.fromEntries(JOB_STATES.map((s) => [s, 0])) as Record<JobState, number>;
    for (const j of this.allJobs()) counts[j.state]++;
    return counts;
  }

  /** A stored blob no longer hashed to its name and was removed: the jobs that need it fail, saying so. */
  blobDamaged(hash: string): void {
    const error = `blob ${hash} was damaged on the coordinator (its bytes no longer hash to its name) and was removed; upload it again (fedpool does on the next submission) and resubmit`;
    this.log.error({ blob: hash }, 'stored blob failed its hash check and was removed');
    for (const service of this.services) service.failJobsUsing(hash, error);
    this.pump();
  }

  // ---- worker events -------------------------------------------------------------------------

  /**
   * A worker said hello: it joins the registry and the lease table with the job keys it serves. `identity` (default
   * its name) is who it is for blame, records and votes.
   */
  addWorker(name: string, capabilities: Capabilities, identity: string = name): WorkerInfo {
    const info = this.workers.add(name, capabilities, 'w', identity);
    // Blame and records stick to the identity, so a worker that reconnects is still the worker that lost a shard.
    this.scheduler.addWorker(info.id, workerOffers(capabilities), info.identity);
    this.records.connected(info.identity);
    this.pump();
    return info;
  }

  /** A `pull`: the worker takes work again (a release had paused it) up to `credit` leases of every kind. */
  pull(workerId: string, credit: number): void {
    this.workers.setDraining(workerId, false);
    const w = this.workers.get(workerId);
    this.scheduler.setCredit(workerId, w === undefined ? credit : Math.min(credit, creditCap(w.capabilities)));
    this.pump();
  }

  /**
   * A `result` for a lease of any kind. A result of the wrong shape for its lease throws the ProtocolError to answer
   * the worker with, after counting it as that lease's failure. Returns why it was ignored, or null.
   */
  result(workerId: string, m: ResultMessage): string | null {
    const lease = this.scheduler.lease(m.leaseId);
    const owner = lease === undefined ? undefined : this.owners.get(lease.jobId);
    if (lease !== undefined && owner !== undefined && lease.workerId === workerId) {
      try {
        owner.check(lease, m);
      } catch (e) {
        // A wrong-shaped result is that lease's failure: the shard goes back to the queue.
        const who = this.workers.get(workerId)?.identity;
        if (who !== undefined) this.records.rejected(who);
        this.fail(workerId, m.leaseId, true, e instanceof Error ? e.message : 'invalid result');
        throw e;
      }
    }
    const outcome = this.scheduler.complete(workerId, m.leaseId, m.payload);
    if (outcome.kind === 'accepted' && lease !== undefined) {
      owner?.counted(workerId, lease, m.elapsedMs);
      const worker = this.workers.get(workerId);
      if (worker !== undefined) {
        this.records.accepted(worker.identity);
        let share = this.shares.get(lease.jobId);
        if (share === undefined) this.shares.set(lease.jobId, (share = new Map()));
        share.set(worker.name, (share.get(worker.name) ?? 0) + 1);
      }
    }
    this.pump();
    return outcome.kind === 'ignored' ? outcome.reason : null;
  }

  /** A `failure` for a lease of any kind; true when it counted (the lease was current). */
  failure(workerId: string, m: FailureMessage): boolean {
    return this.fail(workerId, m.leaseId, m.retryable, m.reason);
  }

  private fail(workerId: string, leaseId: string, retryable: boolean, reason: string): boolean {
    const name = this.workers.get(workerId)?.name;
    const outcome = this.scheduler.fail(workerId, leaseId, retryable, reason, name === undefined ? workerId : `${name} (${workerId})`);
    this.pump();
    return outcome.kind === 'accepted';
  }

  /** A protocol error from a worker (a malformed or refused frame): it counts against its record. */
  protocolError(workerId: string): void {
    const who = this.workers.get(workerId)?.identity;
    if (who !== undefined) this.records.bad(who, 'protocolErrors');
  }

  /** Lets a worker out of quarantine with a fresh record (`fedpool workers unquarantine`); false when it was not in. */
  unquarantine(name: string): boolean {
    if (!this.records.release(name)) return false;
    this.scheduler.setQuarantined(name, false);
    this.log.info({ worker: name }, 'worker let out of quarantine');
    this.pump();
    return true;
  }

  /** A `release` (the worker is draining): its leases of every kind go back; no new ones until its next pull. */
  releaseLeases(workerId: string, leaseIds: readonly string[]): number {
    const n = this.scheduler.release(workerId, leaseIds);
    this.workers.setDraining(workerId, true);
    this.pump();
    return n;
  }

  /** The worker is gone: every lease it held, of every kind, goes back at once. */
  removeWorker(workerId: string): void {
    for (const service of this.services) service.workerGone?.(workerId);
    this.workers.remove(workerId);
    this.scheduler.removeWorker(workerId);
    this.pump();
  }

  // ---- dispatch ------------------------------------------------------------------------------

  /**
   * Lets each service start what can start and add due shards, sends leases to every worker with free credit, and
   * arms the one timer. Re-entrant calls (a service's event during a pump) fold into one more pass.
   */
  pump(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        for (const service of this.services) service.pump();
        for (const grant of this.scheduler.dispatch()) this.send(grant);
      } while (this.pumpAgain && !this.closed);
    } finally {
      this.pumping = false;
    }
    this.armTimer();
  }

  /**
   * Runs `fn` (say, dropping many workers at once) with dispatch held back, then pumps once: a lease freed by one
   * removal is not sent to a worker the same batch removes next.
   */
  batch(fn: () => void): void {
    if (this.pumping) {
      fn();
      return;
    }
    this.pumping = true;
    try {
      fn();
    } finally {
      this.pumping = false;
    }
    this.pump();
  }

  private send(grant: Grant): void {
    const owner = this.owners.get(grant.jobId);
    const sink = this.sink;
    if (owner === undefined || sink === undefined) return;
    try {
      sink.sendLease(grant.workerId, owner.lease(grant));
    } catch (e) {
      // A shard that cannot be turned into a lease will not get better on retry.
      const message = e instanceof Error ? e.message : String(e);
      this.log.error({ job: grant.jobId, shard: grant.shardIndex, err: message }, 'cannot send lease');
      this.scheduler.failJob(grant.jobId, `shard ${grant.shardIndex} cannot be sent to workers: ${message}`);
    }
  }

  /** One timer for the next lease deadline or the moment a slow shard becomes worth duplicating. */
  private armTimer(): void {
    const deadline = this.scheduler.nextDeadline();
    const speculation = this.scheduler.nextSpeculation();
    const next = Math.min(deadline ?? Infinity, speculation ?? Infinity);
    if (next === Infinity || next >= this.timerAt) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timerAt = next;
    // +1: fire strictly after the deadline (expire() compares deadline <= now).
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Infinity;
      const n = this.scheduler.expire();
      if (n > 0) this.log.info({ leases: n }, 'leases expired; shards re-queued');
      this.pump();
    }, Math.max(0, next - this.now() + 1));
  }

  /** Stops dispatching, wakes all readers, writes everything pending. The store is closed by the owner. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const service of this.services) service.close();
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.retentionTimer !== undefined) clearInterval(this.retentionTimer);
    this.collector.close();
  }
}
