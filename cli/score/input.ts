// `fedpool score` input: JSONL lines of items, pairs, best-of-k rows, or group members (formats in
// docs/scoring-reports.md). Everything is validated before anything is submitted: the first bad line (a blank line and
// a repeated id included) stops the command with "FILE:LINE: what is wrong".
import { z } from 'zod';
import { UserError } from '../errors.js';
import { issueText, readJsonl } from '../jsonl.js';

const base = {
  id: z.string().min(1, 'must be a non-empty string'),
  group: z.string().min(1).optional(),
  answer: z.string().optional(),
  // RewardBench-style subset name: reported per subset in the summary (docs/scoring-reports.md).
  subset: z.string().min(1).optional(),
};
/** An item's true class, for a classifier (accuracy in the summary). */
const label = z.number().int('must be a class id (an integer ≥ 0)').min(0, 'must be a class id (an integer ≥ 0)').optional();
const featureItem = z.strictObject({ ...base, label, features: z.array(z.number().finite()).min(1) });
const textItem = z.strictObject({ ...base, label, prompt: z.string(), response: z.string() });
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
  | (Common & { kind: 'features'; features: number[]; label?: number })
  | (Common & { kind: 'text'; prompt: string; response: string; label?: number })
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
  if (!r.success) return issueText(r.error);
  return { kind, line, ...r.data } as ScoreLine;
}

/**
 * Reads and validates the whole file. Output line N is input line N, so a blank line is refused rather than skipped,
 * and so is an id used twice (the output could not be told apart).
 */
export async function readScoreInput(file: string): Promise<ScoreLine[]> {
  const lines: ScoreLine[] = [];
  const seen = new Map<string, number>();
  const onLine = (line: ScoreLine, n: number): void => {
    const first = seen.get(line.id);
    if (first !== undefined) throw new UserError(`${file}:${n}: duplicate id ${JSON.stringify(line.id)} (also on line ${first})`);
    seen.set(line.id, n);
    lines.push(line);
  };
  await readJsonl(file, 'fedpool score', parseLine, onLine, 'each input line is one output line: remove it');
  if (lines.length === 0) throw new UserError(`${file}: no items (the file is empty)`);
  return lines;
}
