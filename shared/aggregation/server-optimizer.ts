import { checkNonNegative } from './validate.js';

export type ServerOptimizerSpec =
  | { optimizer: 'sgd'; lr: number; momentum?: number }
  | { optimizer: 'adam'; lr: number; beta1?: number; beta2?: number; eps?: number };

/**
 * The server's step on the aggregated update. Updates are model deltas (local − global, the direction to move),
 * so SGD is x ← x + lr·(μ·buf + Δ) and Adam treats −Δ as the gradient (FedAdam, Reddi et al. 2021).
 * With sgd, lr = 1 and momentum 0 the step is plain FedAvg: x ← x + Δ.
 */
export class ServerOptimizer {
  readonly spec: Readonly<ServerOptimizerSpec>;
  private buf: Float64Array | null = null; // SGD momentum, or Adam's first moment
  private second: Float64Array | null = null; // Adam's second moment
  private t = 0;

  constructor(spec: ServerOptimizerSpec) {
    if (spec.optimizer !== 'sgd' && spec.optimizer !== 'adam') {
      throw new RangeError(`server optimizer: unknown optimizer ${JSON.stringify((spec as { optimizer?: unknown }).optimizer)} (sgd or adam)`);
    }
    checkNonNegative('server optimizer', 'lr', spec.lr);
    if (spec.optimizer === 'sgd') {
      const mu = spec.momentum ?? 0;
      if (!(mu >= 0 && mu < 1)) throw new RangeError(`server optimizer: sgd momentum must be in [0, 1), got ${String(mu)}`);
    } else {
      for (const [k, v] of [['beta1', spec.beta1 ?? 0.9], ['beta2', spec.beta2 ?? 0.999]] as const) {
        if (!(v >= 0 && v < 1)) throw new RangeError(`server optimizer: adam ${k} must be in [0, 1), got ${String(v)}`);
      }
      const eps = spec.eps ?? 1e-8;
      if (!(eps > 0 && Number.isFinite(eps))) throw new RangeError(`server optimizer: adam eps must be a finite number > 0, got ${String(eps)}`);
    }
    this.spec = { ...spec };
  }

  /** Server steps taken so far. */
  get steps(): number {
    return this.t;
  }

  /** Returns the new model; inputs are not mutated. */
  step(model: Float32Array, delta: Float32Array): Float32Array {
    if (!(model instanceof Float32Array) || !(delta instanceof Float32Array)) throw new RangeError('server optimizer: model and delta must be Float32Arrays');
    if (model.length !== delta.length) throw new RangeError(`server optimizer: model has ${model.length} parameters, update has ${delta.length}`);
    const d = model.length;
    if (this.buf !== null && this.buf.length !== d) throw new RangeError(`server optimizer: model size changed from ${this.buf.length} to ${d}`);
    const out = new Float32Array(d);
    const s = this.spec;
    this.t++;
    if (s.optimizer === 'sgd') {
      const mu = s.momentum ?? 0;
      if (mu === 0) {
        for (let j = 0; j < d; j++) out[j] = model[j] + s.lr * delta[j];
        return out;
      }
      const b = (this.buf ??= new Float64Array(d));
      for (let j = 0; j < d; j++) {
        b[j] = mu * b[j] + delta[j];
        out[j] = model[j] + s.lr * b[j];
      }
      return out;
    }
    const b1 = s.beta1 ?? 0.9;
    const b2 = s.beta2 ?? 0.999;
    const eps = s.eps ?? 1e-8;
    const m = (this.buf ??= new Float64Array(d));
    const v = (this.second ??= new Float64Array(d));
    const c1 = 1 - Math.pow(b1, this.t);
    const c2 = 1 - Math.pow(b2, this.t);
    for (let j = 0; j < d; j++) {
      const g = -delta[j];
      m[j] = b1 * m[j] + (1 - b1) * g;
      v[j] = b2 * v[j] + (1 - b2) * g * g;
      out[j] = model[j] - (s.lr * (m[j] / c1)) / (Math.sqrt(v[j] / c2) + eps);
    }
    return out;
  }
}
