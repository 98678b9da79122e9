// The defence a line-searched ALIE/FOE attacks (docs/algorithms.md §2.2): the pipeline's robust stage — NNM, then the
// rule — as a pure function of one aggregation's vectors, leaving the server's state alone. Weighting is not applied:
// the attacks that need the line search run with weighting 'uniform', where it is the identity.
import { centeredClipping } from '../aggregation/centered-clipping.js';
import { nearestNeighborMixing } from '../aggregation/nnm.js';
import type { PipelineSpec, ServerAggregator } from '../aggregation/pipeline.js';
import { RobustAggregator } from '../aggregation/robust.js';
import type { Defence } from './adversary.js';

/**
 * A stateless copy of `pipeline`'s robust stage. Centered clipping starts from `aggregator`'s current centre (read at
 * each call), as the real step will; the other rules keep no state between rounds.
 */
export function defenceProbe(pipeline: PipelineSpec, aggregator: ServerAggregator): Defence {
  const robust = pipeline.robust;
  if (robust.rule === 'cclip') {
    return (all) => {
      const y = robust.mix === 'nnm' ? nearestNeighborMixing(all, robust.f) : all;
      const center = aggregator.robust.clippingCenter ?? new Float32Array(all[0]!.length);
      return centeredClipping(y, center, { tau: robust.tau ?? 1, iters: robust.iters });
    };
  }
  const stateless = new RobustAggregator(robust);
  return (all) => stateless.aggregate(all);
}
