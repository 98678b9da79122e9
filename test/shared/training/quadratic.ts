// A quadratic federated objective simulated in-test: client n minimises ½‖x − c_n‖², and its "local training" on
// model x returns update = −η·(x − c_n) + σ·noise (seeded), the delta a few local SGD steps would produce.
import { mulberry32, normal } from '../../../shared/random.js';
import type { ClientArrival, DispatchOrder } from '../../../shared/training/types.js';
import type { PipelineSpec } from '../../../shared/aggregation/pipeline.js';

export interface Quadratic {
  centers: Float64Array[];
  dim: number;
  /** mean c_n, the optimum of F = (1/N) Σ f_n. */
  optimum: Float64Array;
  /** Local training on an order. `attack` > 0 makes it a scaled sign flip: −attack × the honest update. */
  train(order: DispatchOrder, attack?: number): ClientArrival;
}

export function quadratic(centers: Float64Array[], opts: { eta: number; noise: number; seed: number }): Quadratic {
  const dim = centers[0].length;
  const rand = mulberry32(opts.seed);
  const optimum = new Float64Array(dim);
  for (const c of centers) for (let j = 0; j < dim; j++) optimum[j] += c[j] / centers.length;
  return {
    centers,
    dim,
    optimum,
    train(order, attack = 0) {
      const c = centers[order.client];
      const x = order.weights;
      const update = new Float32Array(dim);
      let loss = 0;
      for (let j = 0; j < dim; j++) {
        const r = x[j] - c[j];
        loss += 0.5 * r * r;
        update[j] = -opts.eta * r + opts.noise * normal(rand);
        if (attack > 0) update[j] *= -attack;
      }
      return { client: order.client, baseVersion: order.version, update, samples: 10, loss };
    },
  };
}

/** Centres c_n = base + spread·N(0, I). */
export function gaussianCenters(n: number, dim: number, spread: number, seed: number, base = 1): Float64Array[] {
  const rand = mulberry32(seed);
  return Array.from({ length: n }, () => Float64Array.from({ length: dim }, () => base + spread * normal(rand)));
}

/** ½‖x − y‖². */
export function halfSqDist(x: ArrayLike<number>, y: ArrayLike<number>): number {
  let s = 0;
  for (let j = 0; j < x.length; j++) s += 0.5 * (x[j] - y[j]) ** 2;
  return s;
}

export const plainMean: PipelineSpec = {
  weighting: 'uniform',
  robust: { mix: 'none', rule: 'mean', f: 0 },
  server: { optimizer: 'sgd', lr: 1 },
};
