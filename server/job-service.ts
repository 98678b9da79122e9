// What the coordinator's job registry (job-registry.ts) asks of each kind of job (docs/architecture.md, "One lease table"):
// score jobs (score-jobs.ts) and training jobs (training/training-service.ts) keep their shards in the one lease
// table (scheduler.ts) and implement this interface; sockets and HTTP talk to the registry, which routes by job id.
import type { LeaseMessage, ResultMessage, WeightsMessage } from '../shared/protocol/index.js';
import type { Grant, JobHooks, JobStateEvent, LeaseView, Scheduler, ShardDoneEvent, ShardLostEvent } from './scheduler.js';
import type { JobStatusBase } from './store.js';

/** A worker's result as the lease table holds it: a score shard's scores or a training shard's update. */
export type ShardOutput = ResultMessage['payload'];

/**
 * A lease to send, and for a training lease whose model version the worker's connection does not hold yet, the
 * `weights` message to send before it on the same connection (one object per job and version, so the socket layer
 * encodes it once and sends the same frame to every worker).
 */
export interface OutgoingLease {
  message: LeaseMessage;
  weights?: WeightsMessage;
}

/** The lease table of every kind of work. */
export type LeaseTable = Scheduler<ShardOutput>;

/** Lease-table hooks of a job. */
export type ShardHooks = JobHooks<ShardOutput>;

export interface JobService<S extends JobStatusBase = JobStatusBase> {
  status(id: string): S | undefined;
  /** Its jobs, in submission order. */
  list(): S[];
  /** Cancels a queued or running job; false if it is unknown or already over. */
  cancel(id: string): boolean;
  /** Fails its running jobs that need blob `hash` (damaged on the coordinator, so removed) with `error`. */
  failJobsUsing(hash: string, error: string): void;
  /** The submitter that owns the job (auth.ts Principal.owner): a string, null for an ownerless job, undefined for an unknown one. */
  ownerOf(id: string): string | null | undefined;
  /**
   * Drops an ended job from memory after the store deleted it (retention, DELETE): from then on it is unknown to every
   * route, and readers waiting on it wake and find it gone. Writes nothing. No-op for an unknown or unended job.
   */
  forget(id: string): void;
  /** The lease message for a grant of one of its shards; throws when the shard cannot be sent (the registry fails the job). */
  lease(grant: Grant): OutgoingLease;
  /** Checks a result against its lease before the table takes it; throws the ProtocolError to answer the worker with. */
  check(lease: LeaseView, m: ResultMessage): void;
  /** The table accepted a worker's result for one of its leases (the worker's record). */
  counted(workerId: string, lease: LeaseView, elapsedMs: number | undefined): void;
  shardDone(e: ShardDoneEvent<ShardOutput>): void;
  shardLost(e: ShardLostEvent): void;
  jobState(e: JobStateEvent): void;
  /** Loads its jobs from the store (a restarted coordinator); unfinished ones go on. */
  restore(): { resumed: number; total: number };
  /** A worker's connection is gone (before its leases go back to the table). */
  workerGone?(workerId: string): void;
  /** Starts what can start and adds shards that are due (every pump, before leases are dispatched). */
  pump(): void;
  /** Stops: writes what is pending, wakes waiters, keeps what a restart resumes from. */
  close(): void;
}

/** What a service gets from the registry. */
export interface ServiceHost {
  readonly table: LeaseTable;
  /** Routes the job's leases, results and events to `service` from now on. */
  register(jobId: string, service: JobService): void;
  /** Dispatches what is due (re-entrant calls fold into one). */
  pump(): void;
}
