// `fedpool compare` input: the output files of `fedpool score` (formats in docs/scoring-reports.md). Each line is
// validated; the first bad one stops the command with "FILE:LINE: what is wrong".
import path from 'node:path';
import { z } from 'zod';
import { UserError } from '../errors.js';
import { issueText, readJsonl } from '../jsonl.js';

/** One output line of `fedpool score`, reduced to what a comparison needs. */
export interface ScoredItem {
  kind: 'item';
  id: string;
  score: number;
  group?: string;
  subset?: string;
}
export interface ScoredPair {
  kind: 'pair';
  id: string;
  chosen: number;
  rejected: number;
  subset?: string;
}
export interface ScoredBestOf {
  kind: 'bestof';
  id: string;
  chosen: number;
  rejected: number[];
  subset?: string;
}
export type ScoredLine = ScoredItem | ScoredPair | ScoredBestOf;

export interface ScoreFile {
  /** The path as given. */
  file: string;
  /** Short model name: the base name without .jsonl / .json (made unique among the files compared). */
  name: string;
  /** Lines by id, in file order (Map keeps insertion order). */
  lines: Map<string, ScoredLine & { line: number }>;
}

const id = z.string().min(1, 'must be a non-empty string');
const score = z.number({ error: 'must be a number' });
const label = z.string().min(1).optional();
// Output lines carry more fields than these (correct, row_score, log-prob statistics): they are not needed here.
const itemLine = z.object({ id, score, group: label, subset: label });
const pairLine = z.object({ id, chosen_score: score, rejected_score: score, subset: label });
const bestOfLine = z.object({ id, chosen_score: score, rejected_scores: z.array(score).min(1, 'must list at least one score'), subset: label });

function parseLine(value: unknown): ScoredLine | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'expected a JSON object';
  const o = value as Record<string, unknown>;
  if ('rejected_scores' in o) {
    const r = bestOfLine.safeParse(o);
    if (!r.success) return issueText(r.error);
    return withSubset({ kind: 'bestof', id: r.data.id, chosen: r.data.chosen_score, rejected: r.data.rejected_scores }, r.data.subset);
  }
  if ('chosen_score' in o || 'rejected_score' in o) {
    const r = pairLine.safeParse(o);
    if (!r.success) return issueText(r.error);
    return withSubset({ kind: 'pair', id: r.data.id, chosen: r.data.chosen_score, rejected: r.data.rejected_score }, r.data.subset);
  }
  if ('score' in o) {
    const r = itemLine.safeParse(o);
    if (!r.success) return issueText(r.error);
    const line: ScoredItem = withSubset({ kind: 'item', id: r.data.id, score: r.data.score }, r.data.subset);
    if (r.data.group !== undefined) line.group = r.data.group;
    return line;
  }
  return 'not a fedpool score output line (no "score", "chosen_score" or "rejected_scores")';
}

function withSubset<T extends ScoredLine>(line: T, subset: string | undefined): T {
  if (subset !== undefined) line.subset = subset;
  return line;
}

/** Reads and validates one output file (blank lines are skipped). */
export async function readScoreFile(file: string): Promise<Omit<ScoreFile, 'name'>> {
  const lines = new Map<string, ScoredLine & { line: number }>();
  await readJsonl(file, 'fedpool compare', parseLine, (parsed, line) => {
    if (lines.has(parsed.id)) throw new UserError(`${file}:${line}: duplicate id ${JSON.stringify(parsed.id)}`);
    lines.set(parsed.id, { ...parsed, line });
  });
  if (lines.size === 0) throw new UserError(`${file}: no score lines (the file is empty)`);
  return { file, lines };
}

/** Short names from the files' base names; where two collide, the path as given (less its extension) is used instead. */
export function modelNames(files: readonly string[]): string[] {
  const strip = (f: string): string => f.replace(/\.(jsonl|json|ndjson)$/i, '');
  const base = files.map((f) => strip(path.basename(f)));
  const names = base.map((b, i) => (base.filter((x) => x === b).length > 1 ? strip(files[i]) : b));
  // The same file given twice: number the repeats.
  return names.map((n, i) => {
    const before = names.slice(0, i).filter((x) => x === n).length;
    return before === 0 ? n : `${n}#${before + 1}`;
  });
}
