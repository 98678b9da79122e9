import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Who holds a token: a worker (a process in the pool), a submitter (who sends jobs; `--client-token`), or an admin
 * (`--admin-token`: a submitter who sees and cancels every submitter's jobs).
 */
export type Role = 'worker' | 'submitter';

/** Whose request it is, for the submitter role: jobs belong to the token that created them (docs/security.md). */
export interface Principal {
  /** The owner id of the token's jobs (the hex sha-256 of the token); null when the submitter role is open. */
  owner: string | null;
  admin: boolean;
}

export type AuthResult =
  | { ok: true; principal: Principal }
  /** 401: no token, or not a token of this role (a token of the other role is not confirmed as such). */
  | { ok: false; status: 401; reason: string };

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Flags arrive from commander as a list (repeated flag) or a single string (env var); empty strings mean none. */
export function tokenList(value: unknown): string[] {
  const list = Array.isArray(value) ? value : value === undefined || value === null ? [] : [value];
  return list.filter((t): t is string => typeof t === 'string' && t !== '');
}

/** Characters of an owner's sha-256 shown as its id: enough to tell submitters apart, not the token's whole hash. */
export const OWNER_ID_LENGTH = 12;

/** A job owner's public id (Principal.owner is the token's hex sha-256); null for an ownerless job. */
export function ownerId(owner: string | null | undefined): string | null {
  return typeof owner === 'string' ? owner.slice(0, OWNER_ID_LENGTH) : null;
}

/** Whether a job owned by `owner` (null: created while the submitter role was open) is visible to `who`. */
export function canSee(who: Principal, owner: string | null | undefined): boolean {
  return who.admin || who.owner === null || owner === null || owner === undefined || owner === who.owner;
}

const OPEN: Principal = { owner: null, admin: false };

/**
 * Token sets per role. Tokens are kept only as sha-256 digests and compared with timingSafeEqual
 * against every digest of every role, so neither the match position nor the role leaks through
 * timing, and digests have equal length whatever the token length. A token of another role is refused
 * like an unknown one: a refusal never confirms that a token is valid somewhere else.
 * A role without tokens is open: anything is admitted for it (the caller warns once at startup); admin tokens
 * close the submitter role too.
 */
export class Auth {
  private readonly digests: { readonly worker: readonly Buffer[]; readonly submitter: readonly Buffer[]; readonly admin: readonly Buffer[] };

  constructor(tokens: { readonly worker: readonly string[]; readonly submitter: readonly string[]; readonly admin?: readonly string[] }) {
    this.digests = { worker: tokenList(tokens.worker).map(digest), submitter: tokenList(tokens.submitter).map(digest), admin: tokenList(tokens.admin).map(digest) };
  }

  /** Whether any admin token is configured (then pool-wide actions need one). */
  hasAdmins(): boolean {
    return this.digests.admin.length > 0;
  }

  isOpen(role: Role): boolean {
    return role === 'worker' ? this.digests.worker.length === 0 : this.digests.submitter.length === 0 && this.digests.admin.length === 0;
  }

  check(role: Role, token: unknown): AuthResult {
    if (this.isOpen(role)) return { ok: true, principal: OPEN };
    if (typeof token !== 'string' || token === '') {
      return role === 'worker'
        ? { ok: false, status: 401, reason: 'unauthorized: this coordinator needs a worker token' }
        : { ok: false, status: 401, reason: 'unauthorized: a client token is required (Authorization: Bearer TOKEN)' };
    }
    const d = digest(token);
    const hit = { worker: false, submitter: false, admin: false };
    for (const r of ['worker', 'submitter', 'admin'] as const) {
      // Non-short-circuiting: every comparison runs.
      for (const known of this.digests[r]) hit[r] = timingSafeEqual(d, known) || hit[r];
    }
    if (role === 'worker' ? hit.worker : hit.submitter || hit.admin) return { ok: true, principal: { owner: d.toString('hex'), admin: role === 'submitter' && hit.admin } };
    // Messages name tokens by their flags (--worker-token, --client-token), as users know them.
    return { ok: false, status: 401, reason: `unauthorized: unknown ${role === 'worker' ? 'worker' : 'client'} token` };
  }
}

/** The token of an `Authorization: Bearer T` header, if any. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return m?.[1];
}
