// Turns validated input lines into the coordinator's job items, and the job's in-order results back into output
// lines (formats in docs/scoring-reports.md). Kept apart from I/O so it is tested directly and shared by submit and
// --resume.
import { bestOfReport, bestOfRowScore, rewardBenchV1, subsetAccuracies, type BestOfReport, type RewardBenchV1Report, type SubsetAccuracy } from '../../shared/scoring/rewardbench.js';
import { pairAccuracy, selectPerGroup, type Candidate, type SelectMode, type SelectOptions } from '../../shared/scoring/selection.js';
import type { ScoreLine } from './input.js';

/**
 * The job's items in the coordinator's compact column form (see server/jobs.ts): features as an uploaded blob of
 * float32, prompts and responses as an uploaded text blob (shared/data/text-blob.ts).
 */
export type ColumnsBody = { ids: string[]; features: { dim: number; blob: string } } | { ids: string[]; text: { blob: string } };

/** The job's items before submission: features as one row-major float32 matrix, or text columns (each uploaded as a blob). */
export type PlannedItems = { ids: string[]; dim: number; features: Float32Array } | { ids: string[]; prompts: string[]; responses: string[] };

/**
 * What the job remembers of each input line (stored as job meta, so --resume can rebuild the output). Fields are
 * only ever added: meta stored by an older fedpool (no `subset`, no `rejected`) still reads the same.
 */
export interface LineMeta {
  id: string;
  pair?: true;
  /** A best-of-k row: k, its number of rejected answers (the line is scored as 1 + k items). */
  rejected?: number;
  group?: string;
  answer?: string;
  subset?: string;
  /** An item's true class (classifiers): its line says whether the model got it right. */
  label?: number;
}

/** How many job items a line is scored as: 2 for a pair, 1 + k for a best-of-k row, else 1. */
export function itemsOfLine(m: LineMeta): number {
  return m.pair ? 2 : m.rejected !== undefined ? 1 + m.rejected : 1;
}

/** How many job items the lines are scored as. */
export function scoredItems(meta: readonly LineMeta[]): number {
  return meta.reduce((s, m) => s + itemsOfLine(m), 0);
}

/** Feature rows as one row-major float32 matrix (n × dim). */
export function featureMatrix(ids: string[], rows: readonly ArrayLike<number>[], dim: number): PlannedItems {
  const features = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => features.set(r, i * dim));
  return { ids, dim, features };
}

/** Lines must all be features lines or all text/pair/best-of lines (checked against the model before this). */
export function planItems(lines: readonly ScoreLine[]): { items: PlannedItems; meta: LineMeta[]; scored: number } {
  const ids: string[] = [];
  const rows: number[][] = [];
  const prompts: string[] = [];
  const responses: string[] = [];
  const meta: LineMeta[] = [];
  lines.forEach((l, k) => {
    const m: LineMeta = { id: l.id };
    if (l.group !== undefined) m.group = l.group;
    if (l.answer !== undefined) m.answer = l.answer;
    if (l.subset !== undefined) m.subset = l.subset;
    if ((l.kind === 'features' || l.kind === 'text') && l.label !== undefined) m.label = l.label;
    // Job item ids are positions, not the user's ids: unique, short, and the output maps back by order.
    if (l.kind === 'features') {
      ids.push(`${k}`);
      rows.push(l.features);
    } else if (l.kind === 'text') {
      ids.push(`${k}`);
      prompts.push(l.prompt);
      responses.push(l.response);
    } else if (l.kind === 'pair') {
      m.pair = true;
      ids.push(`${k}c`, `${k}r`);
      prompts.push(l.prompt, l.prompt);
      responses.push(l.chosen, l.rejected);
    } else {
      m.rejected = l.rejected.length;
      ids.push(`${k}c`, ...l.rejected.map((_, r) => `${k}r${r}`));
      prompts.push(l.prompt, ...l.rejected.map(() => l.prompt));
      responses.push(l.chosen, ...l.rejected);
    }
    meta.push(m);
  });
  const items = rows.length > 0 ? featureMatrix(ids, rows, rows[0].length) : { ids, prompts, responses };
  return { items, meta, scored: ids.length };
}

/** What log-prob scorers send with each item's score (the score is the mean log-prob). */
export interface ItemExtra {
  logprob_mean: number;
  perplexity: number;
  self_certainty: number;
}

/**
 * Output line of an item: the log-prob fields only from log-prob scorers, group and subset only when given; with a
 * `label` (a binary classifier, whose score is P(class 1)) whether the score's class (1 above 0.5) is that label.
 */
export interface ItemLine {
  id: string;
  score: number;
  logprob_mean?: number;
  perplexity?: number;
  self_certainty?: number;
  group?: string;
  subset?: string;
  label?: number;
  correct?: boolean;
  /** No quorum of redundant workers agreed on its score (docs/security.md). */
  disputed?: true;
}
/** Output line of an item scored by a classifier of C ≥ 3 classes: the most probable class and all C probabilities. */
export interface ClassLine {
  id: string;
  class: number;
  probs: number[];
  label?: number;
  correct?: boolean;
  group?: string;
  subset?: string;
  disputed?: true;
}
/** Output line of a pair: correct = chosen_score > rejected_score (a tie is wrong). */
export interface PairLine {
  id: string;
  chosen_score: number;
  rejected_score: number;
  correct: boolean;
  subset?: string;
  disputed?: true;
}
/** Output line of a best-of-k row: correct = chosen strictly highest; row_score = RewardBench v2's 1, 1/t or 0. */
export interface BestOfLine {
  id: string;
  chosen_score: number;
  rejected_scores: number[];
  correct: boolean;
  row_score: number;
  subset?: string;
  disputed?: true;
}
export type OutputLine = ItemLine | ClassLine | PairLine | BestOfLine;

/** The summary fields that apply to the output (docs/scoring-reports.md). */
export interface ScoreSummary {
  /** Pairs (not best-of rows): share correct, and how many. */
  accuracy?: number;
  pairs?: number;
  /** Pairs per subset, when pairs name subsets. */
  subsets?: Record<string, SubsetAccuracy>;
  /** RewardBench v1 section scores and headline, when subsets are RewardBench's. */
  rewardbench?: RewardBenchV1Report;
  /** Best-of-k rows: mean row score overall and per subset. */
  bestof?: BestOfReport;
  /** Per group, what --select chose. */
  selected?: Record<string, string>;
  /** Items with a `label`: the share whose predicted class is the label, and how many. */
  label_accuracy?: number;
  labelled?: number;
}

/**
 * Consumes item scores in job order and emits each output line as soon as it is complete (a pair needs both, a
 * best-of-k row its 1 + k).
 */
export class OutputAssembler {
  private next = 0;
  private readonly pending: number[] = [];
  private readonly pairs: { chosen: number; rejected: number; subset?: string }[] = [];
  private readonly rows: { score: number; subset?: string }[] = [];
  private readonly scored: Candidate[] = [];
  private labelled = 0;
  private labelledRight = 0;

  constructor(
    private readonly meta: readonly LineMeta[],
    private readonly emit: (line: OutputLine) => void,
  ) {}

  get linesDone(): number {
    return this.next;
  }

  /** Output lines with a disputed item (no quorum of redundant workers agreed on it). */
  disputedLines = 0;
  private pendingDisputed = false;

  /**
   * The next item's score, with the log-prob statistics when the scorer sends them (pairs and best-of rows ignore
   * them); `disputed`: no quorum settled it, and its line says so.
   */
  push(score: number, extra?: ItemExtra, disputed = false): void {
    const m = this.meta[this.next];
    if (m === undefined) throw new Error(`more results than input lines (${this.meta.length})`);
    const need = itemsOfLine(m);
    this.pendingDisputed ||= disputed;
    if (need > 1) {
      this.pending.push(score);
      if (this.pending.length < need) return;
      const [chosen, ...rejected] = this.pending.splice(0);
      if (m.pair) {
        this.pairs.push(m.subset === undefined ? { chosen, rejected: rejected[0] } : { chosen, rejected: rejected[0], subset: m.subset });
        const line: PairLine = { id: m.id, chosen_score: chosen, rejected_score: rejected[0], correct: chosen > rejected[0] };
        if (m.subset !== undefined) line.subset = m.subset;
        this.emitLine(line);
      } else {
        const rowScore = bestOfRowScore(chosen, rejected);
        this.rows.push(m.subset === undefined ? { score: rowScore } : { score: rowScore, subset: m.subset });
        const line: BestOfLine = { id: m.id, chosen_score: chosen, rejected_scores: rejected, correct: rowScore === 1, row_score: rowScore };
        if (m.subset !== undefined) line.subset = m.subset;
        this.emitLine(line);
      }
    } else {
      const line: ItemLine = { id: m.id, score };
      if (extra !== undefined) {
        line.logprob_mean = extra.logprob_mean;
        line.perplexity = extra.perplexity;
        line.self_certainty = extra.self_certainty;
      }
      if (m.group !== undefined) {
        line.group = m.group;
        const c: Candidate = { id: m.id, group: m.group, score };
        if (m.answer !== undefined) c.answer = m.answer;
        if (extra !== undefined) {
          c.logprobMean = extra.logprob_mean;
          c.selfCertainty = extra.self_certainty;
        }
        this.scored.push(c);
      }
      if (m.label !== undefined) {
        line.label = m.label;
        line.correct = this.judge((score > 0.5 ? 1 : 0) === m.label);
      }
      if (m.subset !== undefined) line.subset = m.subset;
      this.emitLine(line);
    }
    this.next++;
  }

  /**
   * The next item's class probabilities (a classifier of C ≥ 3 classes); its class is the most probable one (the
   * lowest on ties, as the coordinator computes it).
   */
  pushClasses(probs: readonly number[], disputed = false): void {
    const m = this.meta[this.next];
    if (m === undefined) throw new Error(`more results than input lines (${this.meta.length})`);
    if (itemsOfLine(m) !== 1) throw new Error(`line ${this.next + 1} is a pair or best-of row; a classifier of ${probs.length} classes scores items only`);
    let best = 0;
    for (let c = 1; c < probs.length; c++) if ((probs[c] as number) > (probs[best] as number)) best = c;
    const line: ClassLine = { id: m.id, class: best, probs: [...probs] };
    if (m.label !== undefined) {
      line.label = m.label;
      line.correct = this.judge(best === m.label);
    }
    if (m.group !== undefined) line.group = m.group;
    if (m.subset !== undefined) line.subset = m.subset;
    this.pendingDisputed ||= disputed;
    this.emitLine(line);
    this.next++;
  }

  private judge(right: boolean): boolean {
    this.labelled++;
    if (right) this.labelledRight++;
    return right;
  }

  /** Emits a line, marked disputed when one of its items was. */
  private emitLine(line: OutputLine): void {
    if (this.pendingDisputed) {
      line.disputed = true;
      this.disputedLines++;
    }
    this.pendingDisputed = false;
    this.emit(line);
  }

  /** Summary fields that apply: accuracy over pairs (overall, per subset, RewardBench), best-of rows, the per-group selection. */
  summary(select: 'none' | SelectMode, options: SelectOptions = {}): ScoreSummary {
    const out: ScoreSummary = {};
    if (this.pairs.length > 0) {
      out.accuracy = pairAccuracy(this.pairs);
      out.pairs = this.pairs.length;
      const subsets = subsetAccuracies(this.pairs);
      if (Object.keys(subsets).length > 0) {
        out.subsets = subsets;
        const rb = rewardBenchV1(subsets);
        if (rb !== undefined) out.rewardbench = rb;
      }
    }
    if (this.rows.length > 0) out.bestof = bestOfReport(this.rows);
    if (this.labelled > 0) {
      out.label_accuracy = this.labelledRight / this.labelled;
      out.labelled = this.labelled;
    }
    if (select !== 'none') out.selected = Object.fromEntries(selectPerGroup(this.scored, select, options));
    return out;
  }
}
