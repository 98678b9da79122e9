// What `fedpool score` computes from scores: pairwise preference accuracy and per-group selection.
// Pure functions over plain data, so the CLI, the simulator and the dashboard agree.

/** Share of pairs with chosen_score > rejected_score; ties count as wrong. NaN for no pairs. */
export function pairAccuracy(pairs: readonly { chosen: number; rejected: number }[]): number {
  if (pairs.length === 0) return Number.NaN;
  let right = 0;
  for (const p of pairs) if (p.chosen > p.rejected) right++;
  return right / pairs.length;
}

export type SelectMode = 'best-of-n' | 'majority' | 'weighted-majority';

export interface Candidate {
  id: string;
  group: string;
  score: number;
  answer?: string;
}

/**
 * Per group, what each mode selects: best-of-n → the id of the highest-scoring item (ties → first in input order);
 * majority → the most frequent answer; weighted-majority → the answer with the largest score sum (ties → the
 * answer seen first). Groups appear in first-seen order. Voting modes need an `answer` on every item of the group.
 */
export function selectPerGroup(candidates: readonly Candidate[], mode: SelectMode): Map<string, string> {
  const groups = new Map<string, Candidate[]>();
  for (const c of candidates) {
    const g = groups.get(c.group);
    if (g === undefined) groups.set(c.group, [c]);
    else g.push(c);
  }
  const out = new Map<string, string>();
  for (const [group, items] of groups) {
    if (mode === 'best-of-n') {
      let best = items[0];
      for (const c of items) if (c.score > best.score) best = c;
      out.set(group, best.id);
      continue;
    }
    const tally = new Map<string, number>();
    for (const c of items) {
      if (c.answer === undefined) throw new RangeError(`select ${mode}: item ${JSON.stringify(c.id)} of group ${JSON.stringify(group)} has no answer`);
      tally.set(c.answer, (tally.get(c.answer) ?? 0) + (mode === 'majority' ? 1 : c.score));
    }
    let bestAnswer = '';
    let bestValue = -Infinity;
    for (const [answer, value] of tally) {
      if (value > bestValue) {
        bestAnswer = answer;
        bestValue = value;
      }
    }
    out.set(group, bestAnswer);
  }
  return out;
}
