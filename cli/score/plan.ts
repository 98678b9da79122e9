// Turns validated input lines into the coordinator's job items, and the job's in-order results back into output
// lines. Kept apart from I/O so it is tested directly and shared by submit and --resume.
import { pairAccuracy, selectPerGroup, type SelectMode } from '../../shared/scoring/selection.js';
import type { ScoreLine } from './input.js';

/** The job's items in the coordinator's compact column form (see server/jobs.ts): features as base64 float32. */
export type JobColumns =
  | { ids: string[]; features: { dim: number; base64: string } }
  | { ids: string[]; prompts: string[]; responses: string[] };

/** What the job remembers of each input line (stored as job meta, so --resume can rebuild the output). */
export interface LineMeta {
  id: string;
  pair?: true;
  group?: string;
  answer?: string;
}

/** Packs features (n × dim float32, little-endian) as base64. */
export function featureColumns(ids: string[], rows: readonly ArrayLike<number>[], dim: number): JobColumns {
  const f = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => f.set(r, i * dim));
  return { ids, features: { dim, base64: Buffer.from(f.buffer).toString('base64') } };
}

/** Lines must all be features lines or all text/pair lines (checked against the model before this). */
export function planItems(lines: readonly ScoreLine[]): { columns: JobColumns; meta: LineMeta[]; scored: number } {
  const ids: string[] = [];
  const rows: number[][] = [];
  const prompts: string[] = [];
  const responses: string[] = [];
  const meta: LineMeta[] = [];
  lines.forEach((l, k) => {
    const m: LineMeta = { id: l.id };
    if (l.group !== undefined) m.group = l.group;
    if (l.answer !== undefined) m.answer = l.answer;
    // Job item ids are positions, not the user's ids: unique, short, and the output maps back by order.
    if (l.kind === 'features') {
      ids.push(`${k}`);
      rows.push(l.features);
    } else if (l.kind === 'text') {
      ids.push(`${k}`);
      prompts.push(l.prompt);
      responses.push(l.response);
    } else {
      m.pair = true;
      ids.push(`${k}c`, `${k}r`);
      prompts.push(l.prompt, l.prompt);
      responses.push(l.chosen, l.rejected);
    }
    meta.push(m);
  });
  const columns = rows.length > 0 ? featureColumns(ids, rows, rows[0].length) : { ids, prompts, responses };
  return { columns, meta, scored: ids.length };
}

export type OutputLine = { id: string; score: number } | { id: string; chosen_score: number; rejected_score: number; correct: boolean };

/**
 * Consumes item scores in job order and emits each output line as soon as it is complete (a pair needs both).
 */
export class OutputAssembler {
  private next = 0;
  private pendingChosen: number | null = null;
  private readonly pairs: { chosen: number; rejected: number }[] = [];
  private readonly scored: { id: string; group: string; score: number; answer?: string }[] = [];

  constructor(
    private readonly meta: readonly LineMeta[],
    private readonly emit: (line: OutputLine) => void,
  ) {}

  get linesDone(): number {
    return this.next;
  }

  push(score: number): void {
    const m = this.meta[this.next];
    if (m === undefined) throw new Error(`more results than input lines (${this.meta.length})`);
    if (m.pair) {
      if (this.pendingChosen === null) {
        this.pendingChosen = score;
        return;
      }
      const chosen = this.pendingChosen;
      this.pendingChosen = null;
      this.pairs.push({ chosen, rejected: score });
      this.emit({ id: m.id, chosen_score: chosen, rejected_score: score, correct: chosen > score });
    } else {
      if (m.group !== undefined) this.scored.push({ id: m.id, group: m.group, score, answer: m.answer });
      this.emit({ id: m.id, score });
    }
    this.next++;
  }

  /** Summary fields that apply: accuracy over pairs, and the per-group selection. */
  summary(select: 'none' | SelectMode): { accuracy?: number; pairs?: number; selected?: Record<string, string> } {
    const out: { accuracy?: number; pairs?: number; selected?: Record<string, string> } = {};
    if (this.pairs.length > 0) {
      out.accuracy = pairAccuracy(this.pairs);
      out.pairs = this.pairs.length;
    }
    if (select !== 'none') out.selected = Object.fromEntries(selectPerGroup(this.scored, select));
    return out;
  }
}
