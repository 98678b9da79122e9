// Redundancy that verifies (docs/security.md, "Redundancy that verifies"): the replies of several workers to one shard
// are tallied item by item. Within an item, replies agree when every value is within a relative tolerance; an item is
// settled when its largest group of agreeing replies reaches the quorum. A pure function: the lease table calls it on
// every reply and decides from its answer whether the shard is accepted, needs more replicas, or is disputed.

/** The quorum for R replicas: a strict majority of them, ⌈(R + 1)/2⌉ (1 for R = 1). */
export function quorumOf(replicas: number): number {
  return Math.ceil((replicas + 1) / 2);
}

/** The most replies a shard of redundancy R gets before it is disputed: 2R + 1, at least 5. */
export function maxRepliesOf(replicas: number): number {
  return Math.max(5, 2 * replicas + 1);
}

export interface Tally {
  /** Per item, the value of its largest agreeing group (the earliest of equal groups); width values per item. */
  value: Float32Array;
  /** Offsets (within the shard) of items whose largest group is below the quorum. */
  unresolved: number[];
  /** The fewest further agreeing replies that every unresolved item would need (0 when none is unresolved). */
  short: number;
  /** Indices of replies that disagree with a settled item's winning group. */
  outvoted: number[];
  /** Whether any item had replies in more than one group. */
  disagreed: boolean;
}

/** |a − b| ≤ tolerance · max(1, |a|, |b|) for each of the `width` values of item `item`. */
function itemsAgree(a: Float32Array, b: Float32Array, item: number, width: number, tolerance: number): boolean {
  for (let k = item * width, end = k + width; k < end; k++) {
    const x = a[k] as number;
    const y = b[k] as number;
    if (Math.abs(x - y) > tolerance * Math.max(1, Math.abs(x), Math.abs(y))) return false;
  }
  return true;
}

/**
 * Tallies equally long replies (items × width values each) against a quorum. Replies are grouped per item in arrival
 * order: a reply joins the first group whose first reply it agrees with, else starts a new one.
 */
export function tally(replies: readonly Float32Array[], width: number, quorum: number, tolerance: number): Tally {
  const first = replies[0];
  if (first === undefined) throw new RangeError('tally needs at least one reply');
  const items = first.length / width;
  const value = new Float32Array(first.length);
  const unresolved: number[] = [];
  const outvoted = new Set<number>();
  let short = 0;
  let disagreed = false;
  // group[j] = the group of reply j for the current item; reps[g] = the first reply of group g.
  const group = new Int32Array(replies.length);
  const sizes: number[] = [];
  const reps: number[] = [];
  for (let i = 0; i < items; i++) {
    sizes.length = 0;
    reps.length = 0;
    for (let j = 0; j < replies.length; j++) {
      const reply = replies[j] as Float32Array;
      let g = 0;
      while (g < reps.length && !itemsAgree(replies[reps[g] as number] as Float32Array, reply, i, width, tolerance)) g++;
      if (g === reps.length) {
        reps.push(j);
        sizes.push(0);
      }
      sizes[g] = (sizes[g] as number) + 1;
      group[j] = g;
    }
    if (reps.length > 1) disagreed = true;
    let best = 0;
    for (let g = 1; g < sizes.length; g++) if ((sizes[g] as number) > (sizes[best] as number)) best = g;
    const rep = replies[reps[best] as number] as Float32Array;
    value.set(rep.subarray(i * width, (i + 1) * width), i * width);
    const top = sizes[best] as number;
    if (top < quorum) {
      unresolved.push(i);
      short = Math.max(short, quorum - top);
    } else {
      for (let j = 0; j < replies.length; j++) if (group[j] !== best) outvoted.add(j);
    }
  }
  return { value, unresolved, short, outvoted: [...outvoted].sort((a, b) => a - b), disagreed };
}
