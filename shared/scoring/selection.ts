// What `fedpool score` computes from scores: pairwise preference accuracy and per-group selection.
// Pure functions over plain data, so the CLI, the simulator and the dashboard agree. The modes and their tie rules
// are described in docs/scoring-reports.md.

/** Share of pairs with chosen_score > rejected_score; ties count as wrong. NaN for no pairs. */
export function pairAccuracy(pairs: readonly { chosen: number; rejected: number }[]): number {
  if (pairs.length === 0) return Number.NaN;
  let right = 0;
  for (const p of pairs) if (p.chosen > p.rejected) right++;
  return right / pairs.length;
}

/** Every `--select` mode but `none`, in the order `--help` lists them. */
export const SELECT_MODES = ['best-of-n', 'majority', 'weighted-majority', 'mean-logprob', 'self-certainty', 'certainty-vote'] as const;
export type SelectMode = (typeof SELECT_MODES)[number];

/** The default exponent of certainty-vote's Borda votes (`--borda-p`). */
export const DEFAULT_BORDA_P = 0.5;

export interface Candidate {
  id: string;
  group: string;
  score: number;
  answer?: string;
  /** Mean token log-prob of the response (log-prob scorers). */
  logprobMean?: number;
  /** Self-certainty of the response (log-prob scorers; Kang et al. 2025). */
  selfCertainty?: number;
}

export interface SelectOptions {
  /** certainty-vote: the exponent p of a vote (N − r + 1)^p; default 0.5. */
  bordaP?: number;
}

/** Relative slack under which two vote totals count as tied (sums of powers are not exact in floating point). */
const VOTE_TIE = 1e-9;

/**
 * Per group, what each mode selects: best-of-n → the id of the highest-scoring item; mean-logprob and self-certainty
 * → the id of the item with the highest mean log-prob / self-certainty (ties → first in input order); majority → the
 * most frequent answer; weighted-majority → the answer with the largest score sum; certainty-vote → the answer with
 * the largest Borda total, an item of self-certainty rank r among the group's N giving (N − r + 1)^p (ties → the
 * answer seen first). Groups appear in first-seen order. Voting modes need an `answer` on every item of the group;
 * the log-prob modes need their field on every item. See docs/scoring-reports.md.
 */
export function selectPerGroup(candidates: readonly Candidate[], mode: SelectMode, options: SelectOptions = {}): Map<string, string> {
  const p = options.bordaP ?? DEFAULT_BORDA_P;
  if (mode === 'certainty-vote' && !(Number.isFinite(p) && p >= 0)) throw new RangeError(`select certainty-vote: the Borda exponent must be a finite number ≥ 0, got ${p}`);
  const groups = new Map<string, Candidate[]>();
  for (const c of candidates) {
    const g = groups.get(c.group);
    if (g === undefined) groups.set(c.group, [c]);
    else g.push(c);
  }
  const out = new Map<string, string>();
  for (const [group, items] of groups) {
    if (mode === 'best-of-n' || mode === 'mean-logprob' || mode === 'self-certainty') {
      const value = (c: Candidate): number => (mode === 'best-of-n' ? c.score : field(c, group, mode));
      let best = items[0];
      let bestValue = value(best);
      for (const c of items) {
        const v = value(c);
        if (v > bestValue) {
          best = c;
          bestValue = v;
        }
      }
      out.set(group, best.id);
      continue;
    }
    // Tally keys are inserted in input order, so the first-seen answer wins a tie.
    const tally = new Map<string, number>();
    for (const c of items) {
      if (c.answer === undefined) throw new RangeError(`select ${mode}: item ${JSON.stringify(c.id)} of group ${JSON.stringify(group)} has no answer`);
      if (!tally.has(c.answer)) tally.set(c.answer, 0);
    }
    if (mode === 'certainty-vote') {
      for (const [answer, vote] of bordaVotes(items, group, p)) tally.set(answer, (tally.get(answer) ?? 0) + vote);
    } else {
      for (const c of items) tally.set(c.answer ?? '', (tally.get(c.answer ?? '') ?? 0) + (mode === 'majority' ? 1 : c.score));
    }
    let bestAnswer: string | undefined;
    let bestValue = -Infinity;
    for (const [answer, value] of tally) {
      const beats = mode === 'certainty-vote' ? value > bestValue + VOTE_TIE * Math.max(1, Math.abs(bestValue)) : value > bestValue;
      if (bestAnswer === undefined || beats) {
        bestAnswer = answer;
        bestValue = value;
      }
    }
    out.set(group, bestAnswer ?? '');
  }
  return out;
}

/**
 * certainty-vote's ballots for one group: the items sorted by self-certainty, highest first (a stable sort: ties keep
 * input order), the item at rank r (1-based) of N voting (N − r + 1)^p for its answer. Returned in rank order.
 */
export function bordaVotes(items: readonly Candidate[], group: string, p: number = DEFAULT_BORDA_P): [answer: string, vote: number][] {
  const ranked = items
    .map((c, k) => ({ c, k, v: field(c, group, 'certainty-vote') }))
    .sort((a, b) => (b.v > a.v ? 1 : b.v < a.v ? -1 : a.k - b.k));
  const n = ranked.length;
  return ranked.map(({ c }, i) => {
    if (c.answer === undefined) throw new RangeError(`select certainty-vote: item ${JSON.stringify(c.id)} of group ${JSON.stringify(group)} has no answer`);
    return [c.answer, (n - i) ** p];
  });
}

function field(c: Candidate, group: string, mode: 'mean-logprob' | 'self-certainty' | 'certainty-vote'): number {
  const v = mode === 'mean-logprob' ? c.logprobMean : c.selfCertainty;
  if (v === undefined || Number.isNaN(v)) {
    const name = mode === 'mean-logprob' ? 'mean log-prob' : 'self-certainty';
    throw new RangeError(`select ${mode}: item ${JSON.stringify(c.id)} of group ${JSON.stringify(group)} has no ${name} (log-prob scorers send it)`);
  }
  return v;
}
