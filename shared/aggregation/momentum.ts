/**
 * Worker-side Polyak momentum as MoNNA uses it (code: momentum = dampening = β, i.e. an EMA):
 * m ← β·m + (1 − β)·g, starting from m = 0. Returns the new momentum; inputs are not mutated.
 */
export function momentumStep(m: Float32Array | null, g: Float32Array, beta: number): Float32Array {
  if (!(g instanceof Float32Array)) throw new RangeError('momentumStep: gradient must be a Float32Array');
  if (typeof beta !== 'number' || !(beta >= 0 && beta < 1)) throw new RangeError(`momentumStep: β must be in [0, 1), got ${String(beta)}`);
  if (m !== null && m.length !== g.length) throw new RangeError(`momentumStep: momentum has length ${m.length}, gradient ${g.length}`);
  const out = new Float32Array(g.length);
  for (let j = 0; j < g.length; j++) out[j] = (m === null ? 0 : beta * m[j]) + (1 - beta) * g[j];
  return out;
}
