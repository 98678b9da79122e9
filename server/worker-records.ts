// Each worker's record, by name, across reconnects (docs/security.md, "Worker records and quarantine"): results the
// pool accepted, shards it lost, leases it refused as impossible, protocol errors, connections. A record dominated
// by bad events puts the worker in quarantine: it gets no leases until an operator lets it out
// (`fedpool workers unquarantine NAME`), which also starts its record afresh.

export interface WorkerRecord {
  accepted: number;
  /** Leases it lost: expired, disconnected, a retryable failure, a result that did not fit. */
  lost: number;
  /** Leases it reported as impossible (retryable: false). */
  refused: number;
  protocolErrors: number;
  connections: number;
  quarantined: boolean;
}

export interface QuarantineRule {
  /** Bad events (lost + refused + protocol errors) before quarantine is considered. Default 20. */
  minBad: number;
  /** Quarantine when bad events exceed this many times the accepted results. Default 2. */
  ratio: number;
}

export const DEFAULT_QUARANTINE: QuarantineRule = { minBad: 20, ratio: 2 };

export class WorkerRecords {
  private readonly records = new Map<string, WorkerRecord>();

  constructor(
    private readonly rule: QuarantineRule = DEFAULT_QUARANTINE,
    /** Called once when a worker goes into quarantine. */
    private readonly onQuarantine: (name: string, record: WorkerRecord) => void = () => {},
  ) {}

  of(name: string): WorkerRecord {
    let r = this.records.get(name);
    if (r === undefined) this.records.set(name, (r = { accepted: 0, lost: 0, refused: 0, protocolErrors: 0, connections: 0, quarantined: false }));
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
    if (!r.quarantined && bad >= this.rule.minBad && bad > this.rule.ratio * r.accepted) {
      r.quarantined = true;
      this.onQuarantine(name, r);
    }
  }

  /** A good record: nothing bad, or at least ten accepted results for each bad event (speculative copies go only to these). */
  trusted(name: string): boolean {
    const r = this.records.get(name);
    if (r === undefined) return true;
    const bad = r.lost + r.refused + r.protocolErrors;
    return !r.quarantined && (bad === 0 || r.accepted >= 10 * bad);
  }

  isQuarantined(name: string): boolean {
    return this.records.get(name)?.quarantined === true;
  }

  /** Lets a worker out of quarantine with a fresh record; false when it was not in quarantine. */
  release(name: string): boolean {
    const r = this.records.get(name);
    if (r === undefined || !r.quarantined) return false;
    this.records.set(name, { accepted: 0, lost: 0, refused: 0, protocolErrors: 0, connections: r.connections, quarantined: false });
    return true;
  }

  quarantinedCount(): number {
    let n = 0;
    for (const r of this.records.values()) if (r.quarantined) n++;
    return n;
  }
}
