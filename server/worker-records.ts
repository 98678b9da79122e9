// Each worker's record, by name, across reconnects (docs/security.md, "Worker records and quarantine"): results the
// pool accepted, shards it lost, leases it refused as impossible, protocol errors, connections, and redundant results
// its peers confirmed or outvoted. A record dominated by bad events, or with outvoted results, puts the worker in
// quarantine: it gets no leases until an operator lets it out (`fedpool workers unquarantine NAME`), which also starts
// its record afresh.

export interface WorkerRecord {
  accepted: number;
  /** Leases it lost: expired, disconnected, a retryable failure, a result that did not fit. */
  lost: number;
  /** Leases it reported as impossible (retryable: false). */
  refused: number;
  protocolErrors: number;
  /**
   * Results refused at the coordinator's boundary (a wrong shape, a training update over its job's norm bound). Each
   * also counts as a lost lease and a protocol error, so it is not counted again among the bad events.
   */
  rejected: number;
  connections: number;
  /** Redundant results a quorum confirmed, and outvoted ones (docs/security.md, "Redundancy that verifies"). */
  verified: number;
  outvoted: number;
  /** Confirmed results since the last outvoted one: an adaptive job spot-checks it with probability 1/this. */
  consecutiveValid: number;
  quarantined: boolean;
}

export interface QuarantineRule {
  /** Bad events (lost + refused + protocol errors) before quarantine is considered. Default 20. */
  minBad: number;
  /** Quarantine when bad events exceed this many times the accepted results. Default 2. */
  ratio: number;
  /**
   * Outvoted results before quarantine, when they are more than `outvotedShare` of the worker's verified results.
   * Default 3 and 0.05: a liar is out after three votes, an honest worker whose floating point differs once in a
   * while stays.
   */
  minOutvoted: number;
  outvotedShare: number;
}

export const DEFAULT_QUARANTINE: QuarantineRule = { minBad: 20, ratio: 2, minOutvoted: 3, outvotedShare: 0.05 };

function fresh(connections: number): WorkerRecord {
  return { accepted: 0, lost: 0, refused: 0, protocolErrors: 0, rejected: 0, connections, verified: 0, outvoted: 0, consecutiveValid: 0, quarantined: false };
}

export class WorkerRecords {
  private readonly records = new Map<string, WorkerRecord>();

  constructor(
    private readonly rule: QuarantineRule = DEFAULT_QUARANTINE,
    /** Called once when a worker goes into quarantine. */
    private readonly onQuarantine: (name: string, record: WorkerRecord) => void = () => {},
  ) {}

  of(name: string): WorkerRecord {
    let r = this.records.get(name);
    if (r === undefined) this.records.set(name, (r = fresh(0)));
    return r;
  }

  connected(name: string): void {
    this.of(name).connections++;
  }

  accepted(name: string): void {
    this.of(name).accepted++;
  }

  bad(name: string, kind: 'lost' | 'refused' | 'protocolErrors'): void {
    const r = this.of(name);
    r[kind]++;
    const bad = r.lost + r.refused + r.protocolErrors;
    if (bad >= this.rule.minBad && bad > this.rule.ratio * r.accepted) this.quarantine(name, r);
  }

  /** A result of this worker's was refused at the boundary (worker-records.ts WorkerRecord.rejected). */
  rejected(name: string): void {
    this.of(name).rejected++;
  }

  /** A redundant result of this worker's was confirmed by its quorum, or outvoted. */
  verdict(name: string, verdict: 'verified' | 'outvoted'): void {
    const r = this.of(name);
    if (verdict === 'verified') {
      r.verified++;
      r.consecutiveValid++;
      return;
    }
    r.outvoted++;
    r.consecutiveValid = 0;
    if (r.outvoted >= this.rule.minOutvoted && r.outvoted > this.rule.outvotedShare * r.verified) this.quarantine(name, r);
  }

  /** Confirmed results in a row (0 for an unknown worker). */
  consecutiveValid(name: string): number {
    return this.records.get(name)?.consecutiveValid ?? 0;
  }

  private quarantine(name: string, r: WorkerRecord): void {
    if (r.quarantined) return;
    r.quarantined = true;
    this.onQuarantine(name, r);
  }

  /** A good record: nothing bad, or at least ten accepted results for each bad event (speculative copies go only to these). */
  trusted(name: string): boolean {
    const r = this.records.get(name);
    if (r === undefined) return true;
    const bad = r.lost + r.refused + r.protocolErrors + r.outvoted;
    return !r.quarantined && (bad === 0 || r.accepted >= 10 * bad);
  }

  isQuarantined(name: string): boolean {
    return this.records.get(name)?.quarantined === true;
  }

  /** Lets a worker out of quarantine with a fresh record; false when it was not in quarantine. */
  release(name: string): boolean {
    const r = this.records.get(name);
    if (r === undefined || !r.quarantined) return false;
    this.records.set(name, fresh(r.connections));
    return true;
  }

  quarantinedCount(): number {
    let n = 0;
    for (const r of this.records.values()) if (r.quarantined) n++;
    return n;
  }
}
