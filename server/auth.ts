import { createHash, timingSafeEqual } from 'node:crypto';

/** Who holds a token: a worker (a process in the pool) or a submitter (who sends jobs; `--client-token`). */
export type Role = 'worker' | 'submitter';

export type AuthResult =
  | { ok: true }
  /** 401: no or unknown token; 403: a valid token of the other role. */
  | { ok: false; status: 401 | 403; reason: string };

function digest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Flags arrive from commander as a list (repeated flag) or a single string (env var); empty strings mean none. */
export function tokenList(value: unknown): string[] {
  const list = Array.isArray(value) ? value : value === undefined || value === null ? [] : [value];
  return list.filter((t): t is string => typeof t === 'string' && t !== '');
}

/**
 * Token sets per role. Tokens are kept only as sha-256 digests and compared with timingSafeEqual
 * against every digest of both roles, so neither the match position nor the role leaks through
 * timing, and digests have equal length whatever the token length.
 * A role without tokens is open: anything is admitted for it (the caller warns once at startup).
 */
export class Auth {
  private readonly digests: { readonly [R in Role]: readonly Buffer[] };

  constructor(tokens: { readonly [R in Role]: readonly string[] }) {
    this.digests = { worker: tokenList(tokens.worker).map(digest), submitter: tokenList(tokens.submitter).map(digest) };
  }

  isOpen(role: Role): boolean {
    return this.digests[role].length === 0;
  }

  check(role: Role, token: unknown): AuthResult {
    if (this.isOpen(role)) return { ok: true };
    if (typeof token !== 'string' || token === '') {
      return role === 'worker'
        ? { ok: false, status: 401, reason: 'unauthorized: this coordinator needs a worker token' }
        : { ok: false, status: 401, reason: 'unauthorized: a client token is required (Authorization: Bearer TOKEN)' };
    }
    const d = digest(token);
    let own = false;
    let other = false;
    for (const r of ['worker', 'submitter'] as const) {
      for (const known of this.digests[r]) {
        // Non-short-circuiting: every comparison runs.
        const eq = timingSafeEqual(d, known);
        if (r === role) own = own || eq;
        else other = other || eq;
      }
    }
    if (own) return { ok: true };
    if (other) {
      return role === 'worker'
        ? { ok: false, status: 401, reason: 'unauthorized: this is a client token; workers need a worker token' }
        : { ok: false, status: 403, reason: 'forbidden: this is a worker token; the HTTP API needs a client token' };
    }
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
