// Telling a refused TLS certificate apart from a network failure: a worker or a submitter that does not trust the
// coordinator's certificate cannot fix it by retrying, and should say which certificate problem it met.

/** The codes Node (OpenSSL) gives an error when it refuses the certificate the other side presented. */
const CERTIFICATE_CODES: ReadonlySet<string> = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'INVALID_PURPOSE',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * When `error` (or an error in its `cause` chain, as fetch reports them) is a refused server certificate, what was
 * wrong with it in OpenSSL's words ("self-signed certificate", "certificate has expired", …); otherwise undefined.
 */
export function certificateRefusal(error: unknown): string | undefined {
  let e: unknown = error;
  for (let depth = 0; depth < 8 && typeof e === 'object' && e !== null; depth++) {
    const code: unknown = Reflect.get(e, 'code');
    if (typeof code === 'string' && CERTIFICATE_CODES.has(code)) {
      const message: unknown = Reflect.get(e, 'message');
      return typeof message === 'string' && message !== '' ? message : code;
    }
    e = Reflect.get(e, 'cause');
  }
  return undefined;
}

/** One line for a refused certificate: what was wrong, and what to do about it. */
export function certificateAdvice(url: string, problem: string): string {
  const remedy = /altname|hostname/i.test(problem)
    ? 'connect with an address the certificate names'
    : "give the CA that signed it with --ca FILE";
  return `the coordinator at ${url} presented a certificate that is not trusted (${problem}): ${remedy}`;
}
