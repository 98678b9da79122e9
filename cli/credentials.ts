// What a command that talks to a coordinator needs besides its address: the bearer token (`--token`, FEDPOOL_TOKEN
// or `--token-file`, the last of which keeps it out of `ps`) and the CA that signed an https coordinator's
// certificate (`--ca`). Every problem is one line naming the flag and the file.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { UserError } from './errors.js';

export interface Credentials {
  token: string | undefined;
  /** PEM text of the CA certificate(s) to trust for https and wss, instead of the system's. */
  ca: string | undefined;
}

/** A file's text, or a one-line UserError: `fedpool CMD: --FLAG FILE: cannot read (ENOENT)`. */
export function readFlagFile(command: string, flag: string, file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`fedpool ${command}: ${flag} ${file}: cannot read (${code ?? (e instanceof Error ? e.message : String(e))})`);
  }
}

/** `--token-file FILE`: its one line, surrounding whitespace (the trailing newline) removed. */
export function readTokenFile(command: string, file: string): string {
  const token = readFlagFile(command, '--token-file', file).trim();
  if (token === '') throw new UserError(`fedpool ${command}: --token-file ${file} is empty`);
  if (/[\r\n]/.test(token)) throw new UserError(`fedpool ${command}: --token-file ${file} holds more than one line (a token is one line)`);
  return token;
}

/** `--ca FILE`: PEM text holding at least one certificate. */
export function readCaFile(command: string, file: string): string {
  const pem = readFlagFile(command, '--ca', file);
  try {
    new X509Certificate(pem);
  } catch {
    throw new UserError(`fedpool ${command}: --ca ${file}: not a PEM certificate`);
  }
  return pem;
}

/** The token and CA from a command's parsed options (`token`, `tokenFile`, `ca`). */
export function credentials(options: Record<string, unknown>, command: string): Credentials {
  const flag = typeof options['token'] === 'string' && options['token'] !== '' ? options['token'] : undefined;
  const file = typeof options['tokenFile'] === 'string' ? options['tokenFile'] : undefined;
  if (flag !== undefined && file !== undefined) throw new UserError(`fedpool ${command}: give --token (or FEDPOOL_TOKEN) or --token-file, not both`);
  const ca = typeof options['ca'] === 'string' ? readCaFile(command, options['ca']) : undefined;
  return { token: file === undefined ? flag : readTokenFile(command, file), ca };
}
