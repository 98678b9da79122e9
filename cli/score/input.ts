// `fedpool score` input: JSONL lines of items, pairs, best-of-k rows, or group members (formats in
// docs/scoring-reports.md). Everything is validated before anything is submitted: the first bad line stops the command with "FILE:LINE: what is wrong".
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { z } from 'zod';
import { UserError } from '../errors.js';

const base = {
  id: z.string().min(1, 'must be a non-empty string'),
  group: z.string().min(1).optional(),
  answer: z.string().optional(),
  // RewardBench-style subset name: reported per subset in the summary (docs/scoring-reports.md).
  subset: z.string().min(1).optional(),
};
const featureItem = z.strictObject({ ...base, features: z.array(z.number().finite()).min(1) });
const textItem = z.strictObject({ ...base, prompt: z.string(), response: z.string() });
const pair = z.strictObject({ ...base, prompt: z.string(), chosen: z.string(), rejected: z.string() });
/** A best-of-k row (RewardBench v2): one chosen answer against k ≥ 1 rejected ones. */
const bestOf = z.strictObject({ ...base, prompt: z.string(), chosen: z.string(), rejected: z.array(z.string()).min(1, 'must list at least one rejected answer') });

interface Common {
  id: string;
  group?: string;
  answer?: string;
  subset?: string;
  /** 1-based line number in the input file, for error messages. */
  line: number;
}
export type ScoreLine =
  | (Common & { kind: 'features'; features: number[] })
  | (Common & { kind: 'text'; prompt: string; response: string })
  | (Common & { kind: 'pair'; prompt: string; chosen: string; rejected: string })
  | (Common & { kind: 'bestof'; prompt: string; chosen: string; rejected: string[] });

function parseLine(value: unknown, line: number): ScoreLine | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'expected a JSON object';
  const o = value as Record<string, unknown>;
  const [schema, kind] =
    'features' in o
      ? ([featureItem, 'features'] as const)
      : 'chosen' in o || 'rejected' in o
        ? Array.isArray(o['rejected'])
          ? ([bestOf, 'bestof'] as const)
          : ([pair, 'pair'] as const)
        : ([textItem, 'text'] as const);
  const r = schema.safeParse(o);
  if (!r.success) {
    const issue = r.error.issues[0];
    const field = issue.path.length > 0 ? `"${issue.path.join('.')}"` : 'line';
    return `${field}: ${issue.message}`;
  }
  return { kind, line, ...r.data } as ScoreLine;
}

/** Reads and validates the whole file (blank lines are skipped). */
export async function readScoreInput(file: string): Promise<ScoreLine[]> {
  const lines: ScoreLine[] = [];
  const stream = createReadStream(file, { encoding: 'utf8' });
  const opened = new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', reject);
  });
  try {
    await opened;
  } catch (e) {
    throw new UserError(`fedpool score: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  let n = 0;
  for await (const text of createInterface({ input: stream, crlfDelay: Infinity })) {
    n++;
    if (text.trim() === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      throw new UserError(`${file}:${n}: not valid JSON (${(e as Error).message})`);
    }
    const parsed = parseLine(value, n);
    if (typeof parsed === 'string') throw new UserError(`${file}:${n}: ${parsed}`);
    lines.push(parsed);
  }
  if (lines.length === 0) throw new UserError(`${file}: no items (the file is empty)`);
  return lines;
}
