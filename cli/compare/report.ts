// `fedpool compare`'s numbers: the files joined by id, then for every two models their agreement on pairs (share
// and Cohen's κ), on best-of-k rows (the same over their outcomes), and on items (Kendall τ-b and Spearman ρ overall
// and within groups, best-of-n pick agreement), overall and per subset. Pure over parsed files; the statistics
// and their degenerate cases are described in docs/scoring-reports.md.
import { cohenKappa, groupAgreement, kendallTauB, preference, spearmanRho, type Preference } from '../../shared/scoring/agreement.js';
import { bestOfRowScore } from '../../shared/scoring/rewardbench.js';
import { pairAccuracy } from '../../shared/scoring/selection.js';
import { UserError } from '../errors.js';
import type { ScoredLine, ScoreFile } from './read.js';

/** One id present in every file: its kind, its group and subset (from the first file that gives them), each model's line. */
export interface JoinedRecord {
  id: string;
  kind: ScoredLine['kind'];
  group?: string;
  subset?: string;
  /** One line per model, in the order the files were given. */
  lines: ScoredLine[];
}

const KIND_NAMES: Record<ScoredLine['kind'], string> = { item: 'an item line', pair: 'a pair line', bestof: 'a best-of-k line' };

/**
 * The ids present in every file, in the first file's order; `dropped` counts ids missing from at least one file, and
 * `unmatched[f]` the lines of file f that were left out. The same id must be the same kind of line everywhere (and a
 * best-of-k row must have the same k).
 */
export function joinFiles(files: readonly ScoreFile[]): { records: JoinedRecord[]; dropped: number; unmatched: number[] } {
  const records: JoinedRecord[] = [];
  for (const [id, first] of files[0].lines) {
    const lines: (ScoredLine & { line: number })[] = [];
    for (const f of files) {
      const l = f.lines.get(id);
      if (l === undefined) break;
      lines.push(l);
    }
    if (lines.length < files.length) continue;
    lines.forEach((l, k) => {
      const differs = l.kind !== first.kind || (l.kind === 'bestof' && first.kind === 'bestof' && l.rejected.length !== first.rejected.length);
      if (differs) {
        const what = (x: ScoredLine): string => (x.kind === 'bestof' ? `a best-of-${x.rejected.length + 1} line` : KIND_NAMES[x.kind]);
        throw new UserError(`fedpool compare: id ${JSON.stringify(id)} is ${what(first)} in ${files[0].file}:${first.line} but ${what(l)} in ${files[k].file}:${l.line}`);
      }
    });
    const r: JoinedRecord = { id, kind: first.kind, lines };
    const group = lines.find((l) => l.kind === 'item' && l.group !== undefined);
    if (group?.kind === 'item' && group.group !== undefined) r.group = group.group;
    const subset = lines.find((l) => l.subset !== undefined)?.subset;
    if (subset !== undefined) r.subset = subset;
    records.push(r);
  }
  const union = new Set<string>();
  for (const f of files) for (const id of f.lines.keys()) union.add(id);
  return { records, dropped: union.size - records.length, unmatched: files.map((f) => f.lines.size - records.length) };
}

/** Agreement over outcome labels: share of cases with the same label, and Cohen's κ (null where undefined). */
export interface LabelStats {
  n: number;
  agreement: number;
  kappa: number;
}

export interface ItemStats {
  /** Items compared (overall correlations are over all of them). */
  n: number;
  tau: number;
  rho: number;
  /** Within groups of ≥ 2 items: mean τ-b and ρ (over groups where defined, counted), best-of-n pick agreement. */
  groups?: { n: number; tau: number; tau_groups: number; rho: number; rho_groups: number; top1: number };
}

export interface Stats {
  pairs?: LabelStats;
  bestof?: LabelStats;
  items?: ItemStats;
}

export interface Comparison extends Stats {
  a: string;
  b: string;
  subsets?: Record<string, Stats>;
}

export interface ModelSummary {
  name: string;
  file: string;
  /** Lines in the file, and how many of them were left out (their id is missing from another file). */
  lines: number;
  unmatched: number;
  /** On the common pairs: share with chosen_score > rejected_score. */
  pairs?: { n: number; accuracy: number };
  /** On the common best-of-k rows: mean row score. */
  bestof?: { n: number; accuracy: number };
}

export interface CompareReport {
  format: 'fedpool-compare/1';
  models: ModelSummary[];
  /** Ids in every file, and ids left out because some file lacks them. */
  common: number;
  dropped: number;
  counts: { items: number; pairs: number; bestof: number; groups: number; subsets: string[] };
  comparisons: Comparison[];
}

/** A best-of-k row's outcome under one model: chosen strictly on top, tied on top, or beaten. */
function bestOfOutcome(chosen: number, rejected: readonly number[]): Preference {
  const s = bestOfRowScore(chosen, rejected);
  return s === 1 ? 'chosen' : s === 0 ? 'rejected' : 'tie';
}

/** What models a and b (indices into each record's lines) agree on, over these records. */
export function stats(records: readonly JoinedRecord[], a: number, b: number): Stats {
  const out: Stats = {};
  const pairs = records.filter((r) => r.kind === 'pair');
  if (pairs.length > 0) {
    const label = (r: JoinedRecord, m: number): Preference => {
      const l = r.lines[m];
      return l.kind === 'pair' ? preference(l.chosen, l.rejected) : 'tie';
    };
    const k = cohenKappa(pairs.map((r) => label(r, a)), pairs.map((r) => label(r, b)));
    out.pairs = { n: k.n, agreement: k.agreement, kappa: k.kappa };
  }
  const rows = records.filter((r) => r.kind === 'bestof');
  if (rows.length > 0) {
    const label = (r: JoinedRecord, m: number): Preference => {
      const l = r.lines[m];
      return l.kind === 'bestof' ? bestOfOutcome(l.chosen, l.rejected) : 'tie';
    };
    const k = cohenKappa(rows.map((r) => label(r, a)), rows.map((r) => label(r, b)));
    out.bestof = { n: k.n, agreement: k.agreement, kappa: k.kappa };
  }
  const items = records.filter((r) => r.kind === 'item');
  if (items.length > 0) {
    const score = (r: JoinedRecord, m: number): number => {
      const l = r.lines[m];
      return l.kind === 'item' ? l.score : Number.NaN;
    };
    const x = items.map((r) => score(r, a));
    const y = items.map((r) => score(r, b));
    const s: ItemStats = { n: items.length, tau: kendallTauB(x, y), rho: spearmanRho(x, y) };
    const groups = new Map<string, { a: number[]; b: number[] }>();
    for (const r of items) {
      if (r.group === undefined) continue;
      const g = groups.get(r.group) ?? { a: [], b: [] };
      g.a.push(score(r, a));
      g.b.push(score(r, b));
      groups.set(r.group, g);
    }
    if (groups.size > 0) {
      const g = groupAgreement([...groups.values()]);
      s.groups = { n: g.groups, tau: g.tau, tau_groups: g.tauGroups, rho: g.rho, rho_groups: g.rhoGroups, top1: g.top1 };
    }
    out.items = s;
  }
  return out;
}

/** Joins the files and compares every two of them (in the order given: 1–2, 1–3, …, 2–3, …). */
export function compareFiles(files: readonly ScoreFile[]): { report: CompareReport; records: JoinedRecord[] } {
  const { records, dropped, unmatched } = joinFiles(files);
  if (records.length === 0) {
    throw new UserError(`fedpool compare: no id is in every file (${files.map((f) => `${f.file}: ${f.lines.size} lines`).join(', ')})`);
  }
  const subsets = [...new Set(records.flatMap((r) => (r.subset === undefined ? [] : [r.subset])))];
  const models: ModelSummary[] = files.map((f, m) => {
    const s: ModelSummary = { name: f.name, file: f.file, lines: f.lines.size, unmatched: unmatched[m] };
    const pairs = records.flatMap((r) => {
      const l = r.lines[m];
      return l.kind === 'pair' ? [{ chosen: l.chosen, rejected: l.rejected }] : [];
    });
    if (pairs.length > 0) s.pairs = { n: pairs.length, accuracy: pairAccuracy(pairs) };
    const rows = records.flatMap((r) => {
      const l = r.lines[m];
      return l.kind === 'bestof' ? [bestOfRowScore(l.chosen, l.rejected)] : [];
    });
    if (rows.length > 0) s.bestof = { n: rows.length, accuracy: rows.reduce((x, y) => x + y, 0) / rows.length };
    return s;
  });
  const comparisons: Comparison[] = [];
  for (let a = 0; a < files.length; a++) {
    for (let b = a + 1; b < files.length; b++) {
      const c: Comparison = { a: files[a].name, b: files[b].name, ...stats(records, a, b) };
      if (subsets.length > 0) c.subsets = Object.fromEntries(subsets.map((s) => [s, stats(records.filter((r) => r.subset === s), a, b)]));
      comparisons.push(c);
    }
  }
  const count = (kind: ScoredLine['kind']): number => records.filter((r) => r.kind === kind).length;
  const groups = new Set(records.flatMap((r) => (r.kind === 'item' && r.group !== undefined ? [r.group] : [])));
  const report: CompareReport = {
    format: 'fedpool-compare/1',
    models,
    common: records.length,
    dropped,
    counts: { items: count('item'), pairs: count('pair'), bestof: count('bestof'), groups: groups.size, subsets },
    comparisons,
  };
  return { report, records };
}
