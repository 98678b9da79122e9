// Reading a JSONL file a command was given: streamed line by line, blank lines skipped or refused, and the first bad
// line stops the command with "FILE:LINE: what is wrong" (one line, no stack trace). Used by `fedpool score` and
// `fedpool compare`.
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { z } from 'zod';
import { UserError } from './errors.js';

/** zod's first issue as `"field.path": message` (or `line: message` for the whole line). */
export function issueText(error: z.ZodError): string {
  const issue = error.issues[0];
  if (issue === undefined) return 'line: invalid';
  return `${issue.path.length > 0 ? `"${issue.path.join('.')}"` : 'line'}: ${issue.message}`;
}

/**
 * Calls `onLine` with each non-blank line's parsed value and its 1-based line number. `parse` returns the value or
 * what is wrong with the line; `onLine` may throw a UserError of its own (e.g. a duplicate id). Returns the number of
 * values read. `command` names the command in the error for a file that cannot be opened. `blank` is why a blank
 * line is refused, or undefined to skip blank lines.
 */
export async function readJsonl<T>(file: string, command: string, parse: (value: unknown, line: number) => T | string, onLine: (value: T, line: number) => void, blank?: string): Promise<number> {
  const stream = createReadStream(file, { encoding: 'utf8' });
  const opened = new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', reject);
  });
  try {
    await opened;
  } catch (e) {
    throw new UserError(`${command}: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  let n = 0;
  let values = 0;
  for await (const text of createInterface({ input: stream, crlfDelay: Infinity })) {
    n++;
    if (text.trim() === '') {
      if (blank !== undefined) throw new UserError(`${file}:${n}: blank line (${blank})`);
      continue;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new UserError(`${file}:${n}: not valid JSON (${(e as Error).message})`);
    }
    const parsed = parse(value, n);
    if (typeof parsed === 'string') throw new UserError(`${file}:${n}: ${parsed}`);
    onLine(parsed, n);
    values++;
  }
  return values;
}
