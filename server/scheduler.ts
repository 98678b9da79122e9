import { Deque, MinHeap } from './queues.js';
import { maxRepliesOf, quorumOf, tally } from './quorum.js';
import type { JobState } from './store.js';

/**
 * The scheduler: the coordinator's one lease table for every kind of work (score shards and training shards alike,
 * docs/architecture.md), a pure state machine over jobs, shards, leases and worker credit. No sockets,
 * no timers: the caller feeds it events (a worker's pull, a result, a disconnect, "the clock
 * moved") and sends the leases it grants. Every operation costs O(1) or O(log n) in the number
 * of shards (plus the leases it touches); nothing scans all shards:
 *
 *   - queued shards sit in one deque (fresh shards at the back in submission order, re-queued ones
 *     at the front); entries are invalidated lazily with a token instead of being removed;
 *   - lease deadlines sit in a min-heap (lazily deleted);
 *   - shards that are fully leased and could take a speculative duplicate sit in an
 *     insertion-ordered map, oldest first (a duplicate is only issued once the shard has been
 *     out for `speculateFactor` × the job's typical shard time: the "slow" shards);
 *   - workers with free credit sit in a set.
 *
 * Jobs may need a kind of worker (`needs`, e.g. one whose inference server serves a given model); a worker offers
 * a set of such keys. Each key has its own deque, and a worker takes the front-most entry among the deques of the
 * keys it offers, so one job that nobody can serve never hides another job's shards from a worker.
 *
 * Redundancy R (docs/security.md, "Redundancy that verifies"): a shard goes to R workers of distinct identities and is
 * accepted when a quorum ⌈(R + 1)/2⌉ of their results agree on every item (quorum.ts, or the job's `tally` hook). On
 * disagreement more replicas are issued, up to 2R + 1 (at least 5) results, then the unsettled items are disputed.
 * An adaptive job leases each shard once and replicates it when `spotCheck` says so for the worker that answered.
 * A result is accounted at most once per lease, and a shard completes exactly once; results for
 * leases that are gone (expired, released, of a finished shard or job) are ignored and counted.
 *
 * R is the type of a result (a score shard's Float32Array by default). Each job may bring hooks: whether a result
 * fits its shard, whether two agree, whether a lost shard is leased again or given up (its owner hears shardLost),
 * and how a failure is worded. An `open` job grows shard by shard (addShards: training rounds and FedBuff top-ups)
 * and ends only when its owner says so (finishJob). A shard may be pinned to one worker (needs = pinned(workerId):
 * a worker-held dataset); a pinned shard whose worker is gone is given up.
 *
 * It is one file, longer than most here, because it is one state machine: every operation keeps the same invariants
 * over the same structures (queues, deadlines, speculation candidates, hungry workers, leases).
 */

export interface SchedulerOptions<R = Float32Array> {
  leaseMs: number;
  /** Injectable clock (ms). */
  now?: () => number;
  /**
   * Blame is per worker, never per job (docs/security.md): a worker that lost a shard this many times (expiry,
   * disconnect, retryable failure, a result that does not fit) never gets that shard again, and one that reported a
   * failure no retry can fix is out for it at once. Default 2.
   */
  lossesPerWorker?: number;
  /**
   * A shard fails its job only when this many distinct workers are out for it, or when every connected worker that
   * could serve it refused it as impossible. Default 3.
   */
  blameWorkers?: number;
  /**
   * Small pools: when every connected worker that serves a shard is out for it by losses (none voted it impossible),
   * they may take it again, and it fails after this many losses in all. Default 10.
   */
  maxLosses?: number;
  /** Idle workers take duplicate leases of outstanding shards when nothing is queued. Default true. */
  speculative?: boolean;
  /** Whether a worker identity's record is good enough for speculative copies (default: every worker's is). */
  trusted?: (identity: string) => boolean;
  /** Adaptive jobs: whether a result of this identity is checked by a second replica (default: always). */
  spotCheck?: (identity: string) => boolean;
  /**
   * A shard is duplicated only after it has been leased for this many times the job's typical
   * shard time (a moving average of lease → result). Default 2. Before any shard finished, the
   * typical time is taken from all jobs, else it is leaseMs / 8.
   */
  speculateFactor?: number;
  /** Entries a worker looks at past ones it cannot take (R > 1: shards it already serves). Default 64. */
  scanLimit?: number;
  /** Redundant results agree when |a − b| ≤ tolerance · max(1, |a|, |b|) for every value (a job may set its own). Default 1e-4. */
  tolerance?: number;
  newLeaseId?: () => string;
  listener?: SchedulerListener<R>;
}

export interface ShardDoneEvent<R = Float32Array> {
  jobId: string;
  index: number;
  /** The accepted result: per item, the value its quorum agreed on (a disputed item: its largest group's). */
  result: R;
  /** Whether every result agreed on every item. */
  agreed: boolean;
  /** Offsets within the shard of items no quorum settled within the replica limit. */
  disputed: number[];
  /** Results that counted for the shard. */
  replies: number;
  /** The identities whose results counted, in arrival order. */
  workers: string[];
}

/** What a job's tally hook says of a shard's results so far (quorum.ts). */
export interface TallyOf<R> {
  value: R;
  unresolved: number[];
  short: number;
  /** Indices of results outvoted on a settled item. */
  outvoted: number[];
  disagreed: boolean;
}

/** A shard its job's `retry` hook gave up on (or a pinned shard whose worker is gone): it will have no result. */
export interface ShardLostEvent {
  jobId: string;
  index: number;
  reason: LossReason;
}

/** Per-job behaviour of the lease table (defaults: score shards'). */
export interface JobHooks<R> {
  /** Whether a result fits a shard of `count` items (a misfit counts as that lease's failure). Default: a Float32Array of count × width values. */
  fits?(result: R, count: number): boolean;
  /** Tallies a shard's redundant results against a quorum. Default: Float32Arrays of `width` values per item (quorum.ts). */
  tally?(replies: readonly R[], quorum: number): TallyOf<R>;
  /** Whether a shard whose lease was lost goes back to the queue (default: yes, until blame fails the job); no: shardLost. */
  retry?(index: number, reason: LossReason, attempt: number): boolean;
  /** The job's error when a worker reports a failure no retry can fix. Default: "shard I failed on worker W: reason". */
  failure?(index: number, workerName: string, reason: string): string;
  /**
   * false: a failure no retry can fix ends the job at once (training: a bad model or dataset), instead of being one
   * worker's vote. Default true.
   */
  voteOnFailure?: boolean;
  /** How the job's errors name a shard. Default "shard I". */
  label?(index: number): string;
}

/** Redundant results agree: |a − b| ≤ tolerance · max(1, |a|, |b|) for every value (and equal lengths). */
export function agreeWithin(a: Float32Array, b: Float32Array, tolerance: number): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as number;
    const y = b[i] as number;
    if (Math.abs(x - y) > tolerance * Math.max(1, Math.abs(x), Math.abs(y))) return false;
  }
  return true;
}

/** The key of shards only `workerId` may take (every worker offers its own). */
export function pinned(workerId: string): string {
  return `${PIN}${workerId}`;
}

const PIN = '@';

export interface JobStateEvent {
  jobId: string;
  state: JobState;
  at: number;
  error?: string;
  /** Leases freed because the job ended: the caller tells these workers to drop them. */
  dropped: { workerId: string; leaseId: string }[];
}

export interface SchedulerListener<R = Float32Array> {
  shardDone?(event: ShardDoneEvent<R>): void;
  /** A redundant result was confirmed by its quorum ('verified') or outvoted on some item ('outvoted'). */
  workerVerdict?(identity: string, verdict: 'verified' | 'outvoted'): void;
  /** A worker identity lost a lease of a live shard ('lost') or refused one as impossible ('refused'). */
  workerBlamed?(identity: string, kind: 'lost' | 'refused'): void;
  shardLost?(event: ShardLostEvent): void;
  jobState?(event: JobStateEvent): void;
}

export interface Grant {
  leaseId: string;
  workerId: string;
  jobId: string;
  shardId: string;
  shardIndex: number;
  /** Items [start, start + count) of the job. */
  start: number;
  count: number;
  attempt: number;
  deadline: number;
  speculative: boolean;
}

export type LossReason = 'expired' | 'disconnected' | 'failed' | 'released';

export type ResultOutcome =
  | { kind: 'accepted'; jobId: string; index: number; items: number; shardDone: boolean }
  /** unknown-lease: not a current lease of this worker (late, or never issued); duplicate: the shard
   * was already complete; job-inactive: the job ended; invalid: wrong number of scores (counts as a failure). */
  | { kind: 'ignored'; reason: 'unknown-lease' | 'duplicate' | 'job-inactive' | 'invalid' };

export interface JobProgress {
  state: JobState;
  doneItems: number;
  totalItems: number;
  doneShards: number;
  totalShards: number;
  /** Shards [0, prefixShards) are complete: the in-order prefix of results. */
  prefixShards: number;
  /** Items in that prefix. */
  prefixItems: number;
  leases: number;
  disagreements: number;
  /** Results that counted, over every shard (R per shard without disagreement). */
  replies: number;
  /** Items no quorum settled. */
  disputed: number;
}

export interface SchedulerStats {
  leased: number;
  speculative: number;
  completed: number;
  itemsDone: number;
  requeued: Record<LossReason, number>;
  /** Results ignored because their lease or shard was no longer current. */
  ignored: number;
  disagreements: number;
  /** Items no quorum settled. */
  disputed: number;
}

export interface LeaseView {
  leaseId: string;
  workerId: string;
  jobId: string;
  shardId: string;
  shardIndex: number;
  count: number;
  /** Values per item its result must carry. */
  width: number;
  deadline: number;
  attempt: number;
  obsolete: boolean;
}

export function shardIdOf(jobId: string, index: number): string {
  return `${jobId}/${index}`;
}

interface JobS<R> {
  id: string;
  hooks: JobHooks<R>;
  /** Grows through addShards and ends through finishJob (training), instead of ending with its last shard. */
  open: boolean;
  speculative: boolean;
  R: number;
  /** Replicas each shard gets at first: R, or 1 for an adaptive job. */
  base: number;
  adaptive: boolean;
  tolerance: number;
  maxReplies: number;
  /** The key a worker must offer to take this job's shards ('' = any worker). */
  needs: string;
  /** Values per item in a result (scores.length = items × width). */
  width: number;
  state: JobState;
  /** By index. An open job forgets a shard once it is done (prefix then counts missing indices as done). */
  shards: Map<number, ShardS<R>>;
  nextIndex: number;
  totalShards: number;
  totalItems: number;
  remaining: number;
  doneItems: number;
  /** Moving average of lease → accepted result, ms. */
  typicalMs: number | undefined;
  prefix: number;
  prefixItems: number;
  leases: Set<LeaseS<R>>;
  disagreements: number;
  replies: number;
  disputed: number;
}

interface ShardS<R> {
  job: JobS<R>;
  index: number;
  /** The key a worker must offer to take it: the job's `needs`, or pinned(workerId). */
  needs: string;
  start: number;
  count: number;
  done: boolean;
  /** Results that counted, in arrival order, and the identities that sent them. */
  replies: R[];
  repliedBy: string[];
  /** Results wanted now (R at first; more after a disagreement). */
  target: number;
  quorum: number;
  /** Current (non-obsolete) leases. */
  active: Map<string, LeaseS<R>>;
  issues: number;
  /** Per worker identity: how often it lost this shard, and the last reason (for the job's error). */
  blame: Map<string, { losses: number; last: string }>;
  /** Identities out for this shard (after lossesPerWorker losses, or a vote). */
  excluded: Set<string>;
  /** Identities that reported a failure no retry can fix: out even in a small pool. */
  voted: Set<string>;
  /** Losses of this shard in all. */
  losses: number;
  /** Whether every connected worker serving it is out by losses (then they may retry), as of `openStamp`. */
  openToAll: boolean;
  openStamp: number;
  /** 0 when not queued; otherwise equals the token of its live deque entry. */
  queueToken: number;
  inSpec: boolean;
  /** When it last became fully leased (its age as a speculation candidate). */
  coveredAt: number;
}

interface LeaseS<R> {
  id: string;
  issuedAt: number;
  shard: ShardS<R>;
  worker: WorkerS<R>;
  deadline: number;
  attempt: number;
  speculative: boolean;
  /** The shard completed through another lease; this one only still holds the worker's credit. */
  obsolete: boolean;
  gone: boolean;
}

interface WorkerS<R> {
  id: string;
  /** Who the worker is across reconnects (its name): blame sticks to it. */
  identity: string;
  credit: number;
  /** The job keys this worker can serve (always including pinned(id)). */
  offers: ReadonlySet<string>;
  leases: Map<string, LeaseS<R>>;
}

interface QueueEntry<R> {
  shard: ShardS<R>;
  token: number;
  /** Position across all deques: fresh work counts up from 1, re-queued work down from 0 (it goes first). */
  order: number;
}

function isActive<R>(job: JobS<R>): boolean {
  return job.state === 'queued' || job.state === 'running';
}

function live<R>(shard: ShardS<R>): boolean {
  return !shard.done && isActive(shard.job);
}

export class Scheduler<R = Float32Array> {
  readonly stats: SchedulerStats = {
    leased: 0,
    speculative: 0,
    completed: 0,
    itemsDone: 0,
    requeued: { expired: 0, disconnected: 0, failed: 0, released: 0 },
    ignored: 0,
    disagreements: 0,
    disputed: 0,
  };

  private readonly leaseMs: number;
  private readonly now: () => number;
  private readonly trusted: ((identity: string) => boolean) | undefined;
  private readonly spotCheck: ((identity: string) => boolean) | undefined;
  private readonly lossesPerWorker: number;
  private readonly blameWorkers: number;
  private readonly maxLosses: number;
  /** Bumped whenever a worker joins or leaves: a shard's openToAll is recomputed once per generation, lazily. */
  private generation = 0;
  private readonly speculative: boolean;
  private readonly speculateFactor: number;
  /** Moving average over all jobs, the fallback for a job without finished shards. */
  private typicalMs: number | undefined;
  private readonly scanLimit: number;
  private readonly tolerance: number;
  private readonly newLeaseId: () => string;
  private readonly listener: SchedulerListener<R>;

  private readonly jobs = new Map<string, JobS<R>>();
  private readonly workers = new Map<string, WorkerS<R>>();
  private readonly leases = new Map<string, LeaseS<R>>();
  /** One deque per job key ('' = jobs any worker can take). */
  private readonly queues = new Map<string, Deque<QueueEntry<R>>>();
  private backOrder = 0;
  private frontOrder = 0;
  private readonly spec = new Map<ShardS<R>, true>();
  private readonly hungry = new Set<WorkerS<R>>();
  private readonly quarantined = new Set<string>();
  /** Connected workers per job key they offer (servable() is asked for every job status). */
  private readonly offerCounts = new Map<string, number>();
  private readonly deadlines = new MinHeap<LeaseS<R>>((l) => l.deadline);
  private tokens = 0;
  private leaseCounter = 0;

  constructor(options: SchedulerOptions<R>) {
    if (!(options.leaseMs > 0)) throw new RangeError('leaseMs must be positive');
    this.leaseMs = options.leaseMs;
    this.now = options.now ?? Date.now;
    this.trusted = options.trusted;
    this.spotCheck = options.spotCheck;
    this.lossesPerWorker = Math.max(1, options.lossesPerWorker ?? 2);
    this.blameWorkers = Math.max(1, options.blameWorkers ?? 3);
    this.maxLosses = Math.max(1, options.maxLosses ?? 10);
    this.speculative = options.speculative ?? true;
    this.speculateFactor = options.speculateFactor ?? 2;
    this.scanLimit = Math.max(1, options.scanLimit ?? 64);
    this.tolerance = options.tolerance ?? 1e-4;
    this.newLeaseId = options.newLeaseId ?? (() => `L${++this.leaseCounter}`);
    this.listener = options.listener ?? {};
  }

  // ---- jobs ----------------------------------------------------------------------------------

  /**
   * Adds a job of `items` items split into shards of `shardSize`. `done` lists shards that already
   * have results (a job resumed after a restart); if that is all of them the job is done at once.
   * An `open` job may start with no items; addShards adds one-item shards and finishJob ends it.
   */
  addJob(spec: {
    id: string;
    items: number;
    shardSize: number;
    redundancy: number;
    needs?: string;
    width?: number;
    done?: Iterable<number>;
    open?: boolean;
    /** Whether idle workers may take speculative copies of its slow shards (default: the scheduler's setting). */
    speculative?: boolean;
    /** Lease each shard once and replicate it when `spotCheck` says so (then redundancy is 2). */
    adaptive?: boolean;
    /** Its redundant results agree within this relative tolerance (default: the scheduler's). */
    tolerance?: number;
    hooks?: JobHooks<R>;
  }): void {
    const { id, items, shardSize, redundancy } = spec;
    const open = spec.open ?? false;
    const width = spec.width ?? 1;
    if (!Number.isSafeInteger(width) || width < 1) throw new RangeError('width must be a positive integer');
    if (this.jobs.has(id)) throw new Error(`job ${id} already exists`);
    if (!Number.isSafeInteger(items) || items < (open ? 0 : 1)) throw new RangeError('a job needs at least one item');
    if (!Number.isSafeInteger(shardSize) || shardSize < 1) throw new RangeError('shardSize must be a positive integer');
    if (!Number.isSafeInteger(redundancy) || redundancy < 1) throw new RangeError('redundancy must be a positive integer');
    const tolerance = spec.tolerance ?? this.tolerance;
    if (!(tolerance >= 0)) throw new RangeError('tolerance must be a number ≥ 0');
    const adaptive = spec.adaptive ?? false;
    const R = adaptive ? 2 : redundancy;
    const totalShards = Math.ceil(items / shardSize);
    const job: JobS<R> = {
      id, hooks: spec.hooks ?? {}, open, speculative: spec.speculative ?? this.speculative, R, base: adaptive ? 1 : R, adaptive, tolerance,
      maxReplies: maxRepliesOf(R), needs: spec.needs ?? '', width, state: 'queued',
      shards: new Map(), nextIndex: 0, totalShards, totalItems: items, remaining: totalShards,
      doneItems: 0, prefix: 0, prefixItems: 0, leases: new Set(), disagreements: 0, replies: 0, disputed: 0, typicalMs: undefined,
    };
    for (let i = 0; i < totalShards; i++) {
      const start = i * shardSize;
      this.newShard(job, start, Math.min(shardSize, items - start), job.needs);
    }
    for (const i of spec.done ?? []) {
      const shard = job.shards.get(i);
      if (shard === undefined || shard.done) continue;
      shard.done = true;
      job.remaining--;
      job.doneItems += shard.count;
    }
    this.jobs.set(id, job);
    this.advancePrefix(job);
    if (job.remaining === 0 && !open) {
      this.endJob(job, 'done');
      return;
    }
    if (job.doneItems > 0) job.state = 'running';
    for (const shard of job.shards.values()) if (!shard.done) this.refresh(shard, false);
  }

  private newShard(job: JobS<R>, start: number, count: number, needs: string): ShardS<R> {
    const shard: ShardS<R> = {
      job, index: job.nextIndex++, needs, start, count, done: false, replies: [], repliedBy: [], target: job.base,
      quorum: quorumOf(job.base), active: new Map(), issues: 0, blame: new Map(), excluded: new Set(), voted: new Set(), losses: 0, openToAll: false, openStamp: -1,
      queueToken: 0, inSpec: false, coveredAt: 0,
    };
    job.shards.set(shard.index, shard);
    return shard;
  }

  /**
   * Appends one-item shards to an open, active job, each needing `needs[i]` ('' or undefined: the job's key;
   * pinned(workerId): that worker only). Returns their indices.
   */
  addShards(jobId: string, needs: ReadonlyArray<string | undefined>): number[] {
    const job = this.jobs.get(jobId);
    if (job === undefined || !job.open) throw new Error(`job ${jobId} is not an open job`);
    if (!isActive(job)) return [];
    const out: number[] = [];
    for (const key of needs) {
      const shard = this.newShard(job, job.totalItems, 1, key === undefined || key === '' ? job.needs : key);
      job.totalShards++;
      job.totalItems++;
      job.remaining++;
      out.push(shard.index);
      if (shard.needs.startsWith(PIN) && !this.workers.has(shard.needs.slice(PIN.length))) {
        this.giveUp(shard, 'disconnected');
        continue;
      }
      this.refresh(shard, false);
    }
    return out;
  }

  /**
   * Gives up a shard of an open job without a result (its round closed): it leaves the queue, and leases still out
   * for it keep their worker's credit until answered, like a speculative twin's. No event.
   */
  dropShard(jobId: string, index: number): void {
    const job = this.jobs.get(jobId);
    if (job !== undefined && !job.open) throw new Error(`job ${jobId} is not an open job`);
    const shard = job?.shards.get(index);
    if (shard === undefined || shard.done) return;
    this.retire(shard);
  }

  /** Ends an open job as done (its owner decided); its leases are dropped as for any ended job. */
  finishJob(jobId: string): boolean {
    const job = this.jobs.get(jobId);
    if (job === undefined || !isActive(job)) return false;
    this.endJob(job, 'done');
    return true;
  }

  /** Cancels a queued or running job; false if it is unknown or already over. */
  cancel(jobId: string): boolean {
    const job = this.jobs.get(jobId);
    if (job === undefined || !isActive(job)) return false;
    this.endJob(job, 'cancelled');
    return true;
  }

  /** Fails a queued or running job (e.g. its leases cannot be built). */
  failJob(jobId: string, error: string): boolean {
    const job = this.jobs.get(jobId);
    if (job === undefined || !isActive(job)) return false;
    this.endJob(job, 'failed', error);
    return true;
  }

  /**
   * Forgets an ended job (its owner deleted it, so the table's memory does not grow with every job ever run):
   * progress() no longer knows it. An ended job holds no lease and no shard (endJob); stale queue entries of it go
   * on being dropped lazily. False, and nothing forgotten, for an unknown job or one still queued or running.
   */
  forgetJob(jobId: string): boolean {
    const job = this.jobs.get(jobId);
    if (job === undefined || isActive(job)) return false;
    this.jobs.delete(jobId);
    return true;
  }

  progress(jobId: string): JobProgress | undefined {
    const job = this.jobs.get(jobId);
    if (job === undefined) return undefined;
    return {
      state: job.state,
      doneItems: job.doneItems,
      totalItems: job.totalItems,
      doneShards: job.totalShards - job.remaining,
      totalShards: job.totalShards,
      prefixShards: job.prefix,
      prefixItems: job.prefixItems,
      leases: job.leases.size,
      disagreements: job.disagreements,
      replies: job.replies,
      disputed: job.disputed,
    };
  }

  // ---- workers -------------------------------------------------------------------------------

  /**
   * A new worker; `offers` are the job keys it can serve (default: only jobs any worker can take), besides
   * pinned(workerId); `identity` is who it is across reconnects (its name; default the id), which blame sticks to.
   */
  addWorker(workerId: string, offers: Iterable<string> = [''], identity: string = workerId): void {
    if (this.workers.has(workerId)) throw new Error(`worker ${workerId} already exists`);
    const w: WorkerS<R> = { id: workerId, identity, credit: 0, offers: new Set([...offers, pinned(workerId)]), leases: new Map() };
    this.generation++;
    this.workers.set(workerId, w);
    for (const key of w.offers) this.offerCounts.set(key, (this.offerCounts.get(key) ?? 0) + 1);
  }

  /** Whether some connected worker could take a job that needs `key` (credit aside). */
  servable(key: string): boolean {
    return (this.offerCounts.get(key) ?? 0) > 0;
  }

  /** How many connected workers offer `key`. */
  offerCount(key: string): number {
    return this.offerCounts.get(key) ?? 0;
  }

  /** Workers of a quarantined identity get no leases (they keep what they hold) until it is let out. */
  setQuarantined(identity: string, quarantined: boolean): void {
    if (quarantined) this.quarantined.add(identity);
    else this.quarantined.delete(identity);
    for (const w of this.workers.values()) if (w.identity === identity) this.updateHungry(w);
  }

  /** A `pull`: the worker may hold up to `credit` leases from now on. */
  setCredit(workerId: string, credit: number): void {
    const w = this.worker(workerId);
    w.credit = Math.max(0, Math.floor(credit));
    this.updateHungry(w);
  }

  /** A disconnect: the worker's leases go back to the queue at once. */
  removeWorker(workerId: string): void {
    const w = this.workers.get(workerId);
    if (w === undefined) return;
    w.credit = 0;
    this.hungry.delete(w);
    this.workers.delete(workerId);
    this.generation++;
    for (const key of w.offers) {
      const n = (this.offerCounts.get(key) ?? 0) - 1;
      if (n > 0) this.offerCounts.set(key, n);
      else this.offerCounts.delete(key);
    }
    for (const lease of [...w.leases.values()]) this.lose(lease, 'disconnected');
    // Shards pinned to this worker can never be leased now.
    const own = this.queues.get(pinned(workerId));
    this.queues.delete(pinned(workerId));
    for (let e = own?.popFront(); e !== undefined; e = own?.popFront()) if (this.entryValid(e)) this.giveUp(e.shard, 'disconnected');
  }

  /**
   * A `release`: the worker hands these leases back (draining). They are re-queued without
   * counting as losses, and the worker gets no new leases until its next pull.
   */
  release(workerId: string, leaseIds: readonly string[]): number {
    const w = this.worker(workerId);
    w.credit = 0;
    let n = 0;
    for (const id of leaseIds) {
      const lease = w.leases.get(id);
      if (lease === undefined) continue;
      n++;
      this.dropLease(lease);
      if (lease.obsolete || !live(lease.shard)) continue;
      if (lease.shard.job.hooks.retry?.(lease.shard.index, 'released', lease.attempt) === false) this.giveUp(lease.shard, 'released');
      else if (this.refresh(lease.shard, true)) this.stats.requeued.released++;
    }
    this.updateHungry(w);
    return n;
  }

  /** A worker's credit and the leases (of every kind) it holds. */
  workerLoad(workerId: string): { credit: number; inFlight: number } | undefined {
    const w = this.workers.get(workerId);
    return w === undefined ? undefined : { credit: w.credit, inFlight: w.leases.size };
  }

  // ---- leases --------------------------------------------------------------------------------

  /**
   * Tops up every worker with free credit, one lease per worker per round so work spreads
   * evenly. Queued shards first; a worker that finds nothing it can take gets a speculative
   * duplicate of the oldest fully leased shard (if enabled). Returns the grants to send.
   */
  dispatch(): Grant[] {
    const grants: Grant[] = [];
    if (this.hungry.size === 0) return grants;
    const starved = new Set<WorkerS<R>>();
    let progress = true;
    while (progress && this.hungry.size > starved.size) {
      progress = false;
      if (!this.trimQueues() && this.spec.size === 0) break;
      for (const w of [...this.hungry]) {
        if (starved.has(w)) continue;
        const grant = this.leaseOne(w);
        // Leases only shrink what is available within one dispatch, so a worker that found
        // nothing now will find nothing later in this call.
        if (grant === undefined) starved.add(w);
        else {
          grants.push(grant);
          progress = true;
        }
      }
    }
    return grants;
  }

  /** Re-queues shards whose lease deadline passed. Returns how many leases expired. */
  expire(): number {
    const now = this.now();
    let n = 0;
    for (;;) {
      const top = this.deadlines.peek();
      if (top === undefined || top.deadline > now) break;
      this.deadlines.pop();
      if (top.gone) continue;
      n++;
      this.lose(top, 'expired');
    }
    return n;
  }

  /** The earliest deadline of a current lease, to arm a timer. */
  nextDeadline(): number | undefined {
    for (;;) {
      const top = this.deadlines.peek();
      if (top === undefined) return undefined;
      if (!top.gone) return top.deadline;
      this.deadlines.pop();
    }
  }

  /**
   * When a worker with free credit could next get a speculative duplicate that it cannot get now
   * (so the caller can arm a timer); undefined when no worker waits or nothing is outstanding.
   */
  nextSpeculation(): number | undefined {
    if (this.hungry.size === 0 || this.spec.size === 0) return undefined;
    const now = this.now();
    let next: number | undefined;
    let seen = 0;
    for (const s of this.spec.keys()) {
      if (seen++ >= this.scanLimit) break;
      const at = this.speculableAt(s);
      if (at > now && (next === undefined || at < next)) next = at;
    }
    return next;
  }

  lease(leaseId: string): LeaseView | undefined {
    const l = this.leases.get(leaseId);
    if (l === undefined) return undefined;
    return {
      leaseId: l.id, workerId: l.worker.id, jobId: l.shard.job.id, shardId: shardIdOf(l.shard.job.id, l.shard.index),
      shardIndex: l.shard.index, count: l.shard.count, width: l.shard.job.width, deadline: l.deadline, attempt: l.attempt, obsolete: l.obsolete,
    };
  }

  /** A worker's result for one of its leases. */
  complete(workerId: string, leaseId: string, result: R): ResultOutcome {
    const lease = this.leases.get(leaseId);
    if (lease === undefined || lease.worker.id !== workerId) {
      this.stats.ignored++;
      return { kind: 'ignored', reason: 'unknown-lease' };
    }
    const shard = lease.shard;
    const fits = shard.job.hooks.fits?.(result, shard.count) ?? (!(result instanceof Float32Array) || result.length === shard.count * shard.job.width);
    if (!fits) {
      this.lose(lease, 'failed');
      return { kind: 'ignored', reason: 'invalid' };
    }
    this.dropLease(lease);
    if (lease.obsolete || shard.done) {
      this.stats.ignored++;
      return { kind: 'ignored', reason: 'duplicate' };
    }
    if (!isActive(shard.job)) {
      this.stats.ignored++;
      return { kind: 'ignored', reason: 'job-inactive' };
    }
    const took = this.now() - lease.issuedAt;
    shard.job.typicalMs = shard.job.typicalMs === undefined ? took : 0.8 * shard.job.typicalMs + 0.2 * took;
    this.typicalMs = this.typicalMs === undefined ? took : 0.8 * this.typicalMs + 0.2 * took;
    shard.replies.push(result);
    shard.repliedBy.push(lease.worker.identity);
    shard.job.replies++;
    const job = shard.job;
    this.settle(shard);
    return { kind: 'accepted', jobId: job.id, index: shard.index, items: shard.count, shardDone: shard.done };
  }

  /** A worker's `failure` for one of its leases. Non-retryable failures fail the job (its error names `workerName`). */
  fail(workerId: string, leaseId: string, retryable: boolean, reason: string, workerName = workerId): ResultOutcome {
    const lease = this.leases.get(leaseId);
    if (lease === undefined || lease.worker.id !== workerId) {
      this.stats.ignored++;
      return { kind: 'ignored', reason: 'unknown-lease' };
    }
    const shard = lease.shard;
    if (lease.obsolete || !live(shard)) {
      this.dropLease(lease);
      this.stats.ignored++;
      return { kind: 'ignored', reason: shard.done ? 'duplicate' : 'job-inactive' };
    }
    if (retryable) this.lose(lease, 'failed', `failed: ${reason}`);
    else if (shard.job.hooks.voteOnFailure === false) {
      this.dropLease(lease);
      this.endJob(shard.job, 'failed', shard.job.hooks.failure?.(shard.index, workerName, reason) ?? `shard ${shard.index} failed on worker ${workerName}: ${reason}`);
    } else {
      // One worker's vote: it is out for this shard at once; the shard fails only if blame says so.
      this.dropLease(lease);
      this.blameFor(shard, lease.worker.identity, `failed: ${reason}`, true);
      if (live(shard) && this.refresh(shard, true)) this.stats.requeued.failed++;
    }
    return { kind: 'accepted', jobId: shard.job.id, index: shard.index, items: shard.count, shardDone: false };
  }

  // ---- internals -----------------------------------------------------------------------------

  private worker(workerId: string): WorkerS<R> {
    const w = this.workers.get(workerId);
    if (w === undefined) throw new Error(`unknown worker ${workerId}`);
    return w;
  }

  private updateHungry(w: WorkerS<R>): void {
    if (this.workers.get(w.id) === w && w.leases.size < w.credit && !this.quarantined.has(w.identity)) this.hungry.add(w);
    else this.hungry.delete(w);
  }

  /**
   * After a result: accepts the shard when a quorum agrees on every item, asks for more replicas when it cannot yet,
   * and disputes the unsettled items when the replica limit is reached or, after a disagreement, no connected worker
   * is left to ask. An adaptive job's single result is accepted unless `spotCheck` wants it checked.
   */
  private settle(shard: ShardS<R>): void {
    const job = shard.job;
    const n = shard.replies.length;
    if (shard.quorum === 1) {
      if (job.adaptive && n === 1 && (this.spotCheck?.(shard.repliedBy[0] as string) ?? true)) {
        shard.target = 2;
        shard.quorum = 2;
        this.refresh(shard, true);
        return;
      }
      this.finishShard(shard, shard.replies[0] as R, [], true);
      return;
    }
    const t = this.tallyOf(job, shard.replies, shard.quorum);
    if (t.unresolved.length === 0 || n >= job.maxReplies) {
      this.verdicts(shard, t, t.unresolved.length === 0);
      this.finishShard(shard, t.value, t.unresolved, !t.disagreed);
      return;
    }
    const wanted = Math.min(job.maxReplies, Math.max(shard.target, n + t.short));
    if (t.disagreed && shard.active.size === 0 && !this.replicaPossible(shard)) {
      this.verdicts(shard, t, false);
      this.finishShard(shard, t.value, t.unresolved, false);
      return;
    }
    const more = wanted > shard.target;
    shard.target = wanted;
    this.refresh(shard, more);
  }

  private tallyOf(job: JobS<R>, replies: readonly R[], quorum: number): TallyOf<R> {
    if (job.hooks.tally !== undefined) return job.hooks.tally(replies, quorum);
    const floats = replies.filter((r): r is R & Float32Array => r instanceof Float32Array);
    if (floats.length !== replies.length) {
      // Results the scheduler cannot compare (no tally hook): the first one stands.
      return { value: replies[0] as R, unresolved: [], short: 0, outvoted: [], disagreed: false };
    }
    const t = tally(floats, job.width, quorum, job.tolerance);
    return { ...t, value: t.value as R & Float32Array };
  }

  /** Tells the listener whose results were outvoted and, when the shard settled, whose were confirmed. */
  private verdicts(shard: ShardS<R>, t: TallyOf<R>, settled: boolean): void {
    const outvoted = new Set(t.outvoted);
    shard.repliedBy.forEach((identity, i) => {
      if (outvoted.has(i)) this.listener.workerVerdict?.(identity, 'outvoted');
      else if (settled) this.listener.workerVerdict?.(identity, 'verified');
    });
  }

  /** Whether a connected, unquarantined worker that serves the shard has not answered it and is not out for it. */
  private replicaPossible(shard: ShardS<R>): boolean {
    for (const w of this.workers.values()) {
      if (this.quarantined.has(w.identity) || !w.offers.has(shard.needs)) continue;
      if (shard.repliedBy.includes(w.identity) || shard.voted.has(w.identity) || shard.excluded.has(w.identity)) continue;
      return true;
    }
    return false;
  }


  /**
   * Brings a shard's queue / speculation membership in line with its state. Returns true when
   * it (re-)entered the queue. `front`: re-queued work goes ahead of fresh work.
   */
  private refresh(shard: ShardS<R>, front: boolean): boolean {
    const isLive = live(shard);
    const need = shard.target - shard.replies.length;
    const wanted = isLive ? need - shard.active.size : 0;
    let queued = false;
    if (wanted > 0) {
      if (shard.queueToken === 0) {
        shard.queueToken = ++this.tokens;
        const entry = { shard, token: shard.queueToken, order: front ? this.frontOrder-- : ++this.backOrder };
        const key = shard.needs;
        let queue = this.queues.get(key);
        if (queue === undefined) this.queues.set(key, (queue = new Deque<QueueEntry<R>>()));
        if (front) queue.pushFront(entry);
        else queue.pushBack(entry);
        queued = true;
      }
    } else {
      shard.queueToken = 0; // its deque entry, if any, is now stale
    }
    const candidate = shard.job.speculative && isLive && need > 0 && shard.active.size === need;
    if (candidate && !shard.inSpec) {
      this.spec.set(shard, true);
      shard.inSpec = true;
      shard.coveredAt = this.now();
    } else if (!candidate && shard.inSpec) {
      this.spec.delete(shard);
      shard.inSpec = false;
    }
    return queued;
  }

  private entryValid(e: QueueEntry<R>): boolean {
    return e.token === e.shard.queueToken && live(e.shard);
  }

  /** Drops stale entries at the head of one deque; returns whether any entry is left. */
  private trimQueue(queue: Deque<QueueEntry<R>>): boolean {
    for (;;) {
      const head = queue.at(0);
      if (head === undefined) return false;
      if (this.entryValid(head)) return true;
      queue.popFront();
      if (head.token === head.shard.queueToken) head.shard.queueToken = 0;
    }
  }

  /** Trims every deque (dropping empty ones); returns whether any entry is left. */
  private trimQueues(): boolean {
    let any = false;
    for (const [key, queue] of this.queues) {
      if (this.trimQueue(queue)) any = true;
      else this.queues.delete(key);
    }
    return any;
  }

  private eligible(shard: ShardS<R>, w: WorkerS<R>): boolean {
    if (!w.offers.has(shard.needs)) return false;
    if (shard.voted.has(w.identity)) return false;
    if (shard.excluded.has(w.identity) && !this.open(shard)) return false;
    // One vote per identity: a worker never answers a shard twice, even over two connections under one name.
    if (shard.repliedBy.includes(w.identity)) return false;
    for (const l of shard.active.values()) if (l.worker.identity === w.identity) return false;
    return true;
  }

  private leaseOne(w: WorkerS<R>): Grant | undefined {
    if (w.leases.size >= w.credit || this.quarantined.has(w.identity)) {
      this.hungry.delete(w);
      return undefined;
    }
    let shard: ShardS<R> | undefined;
    let speculative = false;
    let order = Infinity;
    for (const key of w.offers) {
      const queue = this.queues.get(key);
      if (queue === undefined || !this.trimQueue(queue)) continue;
      const n = Math.min(queue.length, this.scanLimit);
      for (let i = 0; i < n; i++) {
        const e = queue.at(i) as QueueEntry<R>;
        if (this.entryValid(e) && this.eligible(e.shard, w)) {
          if (e.order < order) {
            shard = e.shard;
            order = e.order;
          }
          break;
        }
      }
    }
    // A speculative copy races an outstanding lease: only a worker with a good record may run one.
    if (shard === undefined && this.spec.size > 0 && (this.trusted?.(w.identity) ?? true)) {
      let seen = 0;
      const now = this.now();
      for (const s of this.spec.keys()) {
        if (seen++ >= this.scanLimit) break;
        if (now >= this.speculableAt(s) && this.eligible(s, w)) {
          shard = s;
          speculative = true;
          break;
        }
      }
    }
    if (shard === undefined) return undefined;
    return this.issue(shard, w, speculative);
  }

  /** When a speculation candidate has been out long enough to count as slow. */
  private speculableAt(shard: ShardS<R>): number {
    const typical = shard.job.typicalMs ?? this.typicalMs ?? this.leaseMs / 8;
    return shard.coveredAt + this.speculateFactor * typical;
  }

  private issue(shard: ShardS<R>, w: WorkerS<R>, speculative: boolean): Grant {
    const job = shard.job;
    const now = this.now();
    const lease: LeaseS<R> = {
      id: this.newLeaseId(), issuedAt: now, shard, worker: w, deadline: now + this.leaseMs, attempt: ++shard.issues,
      speculative, obsolete: false, gone: false,
    };
    shard.active.set(lease.id, lease);
    w.leases.set(lease.id, lease);
    this.leases.set(lease.id, lease);
    job.leases.add(lease);
    this.deadlines.push(lease);
    this.stats.leased++;
    if (speculative) this.stats.speculative++;
    if (job.state === 'queued') this.setState(job, 'running');
    this.refresh(shard, false);
    this.updateHungry(w);
    return {
      leaseId: lease.id, workerId: w.id, jobId: job.id, shardId: shardIdOf(job.id, shard.index), shardIndex: shard.index,
      start: shard.start, count: shard.count, attempt: lease.attempt, deadline: lease.deadline, speculative,
    };
  }

  /** Forgets a lease everywhere (its heap entry is skipped later). */
  private dropLease(lease: LeaseS<R>): void {
    if (lease.gone) return;
    lease.gone = true;
    lease.shard.active.delete(lease.id);
    lease.worker.leases.delete(lease.id);
    this.leases.delete(lease.id);
    lease.shard.job.leases.delete(lease);
    this.updateHungry(lease.worker);
  }

  private lose(lease: LeaseS<R>, reason: LossReason, detail: string = reason): void {
    this.dropLease(lease);
    const shard = lease.shard;
    if (lease.obsolete || !live(shard)) return;
    // (A pinned shard re-queued here when its worker left is given up by removeWorker, which loses leases first.)
    if (shard.job.hooks.retry?.(shard.index, reason, lease.attempt) === false) {
      this.giveUp(shard, reason);
      return;
    }
    this.blameFor(shard, lease.worker.identity, detail, false);
    if (!live(shard)) return;
    if (this.refresh(shard, true)) this.stats.requeued[reason]++;
    // A disagreement waiting for a replica nobody is left to run is disputed now, not never.
    if (shard.replies.length > 1 && shard.active.size === 0) this.settle(shard);
  }

  /**
   * Counts a loss of `shard` against one worker identity (`out`: it is out for the shard at once). The shard fails its
   * job when `blameWorkers` identities are out for it, or when every connected worker that could serve it is.
   */
  private blameFor(shard: ShardS<R>, identity: string, why: string, vote: boolean): void {
    this.listener.workerBlamed?.(identity, vote ? 'refused' : 'lost');
    const b = shard.blame.get(identity) ?? { losses: 0, last: why };
    b.losses++;
    b.last = why;
    shard.blame.set(identity, b);
    shard.losses++;
    if (vote) shard.voted.add(identity);
    if (vote || b.losses >= this.lossesPerWorker) shard.excluded.add(identity);
    shard.openStamp = -1;
    if (shard.excluded.size === 0) return;
    const who = (ids: Iterable<string>): string => [...ids].map((id) => `${id} (${shard.blame.get(id)?.last ?? '?'})`).join(', ');
    const label = shard.job.hooks.label?.(shard.index) ?? `shard ${shard.index}`;
    if (shard.excluded.size >= this.blameWorkers) {
      this.endJob(shard.job, 'failed', `${label} could not be done by ${shard.excluded.size} workers: ${who(shard.excluded)}`);
    } else if (shard.voted.size > 0 && !this.someoneCanServe(shard, shard.voted)) {
      this.endJob(shard.job, 'failed', `${label} could not be done by any connected worker that serves it: ${who(shard.voted)}`);
    } else if (this.open(shard) && shard.losses >= this.maxLosses) {
      this.endJob(shard.job, 'failed', `${label} was lost ${shard.losses} times by every connected worker that serves it: ${who(shard.excluded)}`);
    }
  }

  /** Whether a connected worker that offers the shard's key is not in `out`. */
  private someoneCanServe(shard: ShardS<R>, out: ReadonlySet<string>): boolean {
    for (const w of this.workers.values()) if (w.offers.has(shard.needs) && !out.has(w.identity)) return true;
    return false;
  }

  /**
   * Whether the workers out for a shard by losses may take it again: when no connected worker that serves it is left
   * otherwise (a small pool must not stall). Recomputed once per worker generation, only when an excluded worker asks.
   */
  private open(shard: ShardS<R>): boolean {
    if (shard.openStamp !== this.generation) {
      shard.openToAll = !this.someoneCanServe(shard, shard.excluded);
      shard.openStamp = this.generation;
    }
    return shard.openToAll;
  }

  /** A shard that will have no result: out of the queue, its other leases obsolete, its owner told. */
  private giveUp(shard: ShardS<R>, reason: LossReason): void {
    this.retire(shard);
    this.listener.shardLost?.({ jobId: shard.job.id, index: shard.index, reason });
  }

  /** Marks a shard finished without a result (open jobs: dropShard, giveUp). */
  private retire(shard: ShardS<R>): void {
    const job = shard.job;
    shard.done = true;
    job.remaining--;
    for (const l of shard.active.values()) l.obsolete = true;
    shard.active.clear();
    this.refresh(shard, false);
    if (job.open) job.shards.delete(shard.index);
    this.advancePrefix(job);
  }

  private finishShard(shard: ShardS<R>, result: R, disputed: number[], agreed: boolean): void {
    const job = shard.job;
    shard.done = true;
    job.remaining--;
    job.doneItems += shard.count;
    this.stats.completed++;
    this.stats.itemsDone += shard.count;
    if (!agreed) {
      job.disagreements++;
      this.stats.disagreements++;
    }
    job.disputed += disputed.length;
    this.stats.disputed += disputed.length;
    // Other leases of this shard (speculative twins) keep their worker's credit until answered.
    for (const l of shard.active.values()) l.obsolete = true;
    shard.active.clear();
    this.refresh(shard, false);
    const replies = shard.replies.length;
    const workers = shard.repliedBy;
    shard.replies = [];
    shard.repliedBy = [];
    if (job.open) job.shards.delete(shard.index);
    this.advancePrefix(job);
    this.listener.shardDone?.({ jobId: job.id, index: shard.index, result, agreed, disputed, replies, workers });
    if (job.remaining === 0 && !job.open && isActive(job)) this.endJob(job, 'done');
  }

  private advancePrefix(job: JobS<R>): void {
    // An open job forgets done shards: a missing index below nextIndex is a done one.
    for (;;) {
      if (job.prefix >= job.nextIndex) return;
      const shard = job.shards.get(job.prefix);
      if (shard !== undefined && !shard.done) return;
      job.prefixItems += shard?.count ?? 1;
      job.prefix++;
    }
  }

  private setState(job: JobS<R>, state: JobState, error?: string, dropped: JobStateEvent['dropped'] = []): void {
    job.state = state;
    const event: JobStateEvent = { jobId: job.id, state, at: this.now(), dropped };
    if (error !== undefined) event.error = error;
    this.listener.jobState?.(event);
  }

  /** Ends a job: frees all its leases (reported as `dropped`) and its shard objects. */
  private endJob(job: JobS<R>, state: 'done' | 'failed' | 'cancelled', error?: string): void {
    job.state = state;
    const dropped: JobStateEvent['dropped'] = [];
    for (const lease of [...job.leases]) {
      this.dropLease(lease);
      dropped.push({ workerId: lease.worker.id, leaseId: lease.id });
      this.refresh(lease.shard, false); // leaves the speculation map
    }
    // Queued entries of this job go stale lazily (live() is false now).
    job.shards = new Map();
    this.setState(job, state, error, dropped);
  }
}
