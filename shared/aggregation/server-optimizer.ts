import { checkNonNegative } from './validate.js';

/**
 * Everything that determines the optimizer's future steps besides its spec: the step count t and the float64
 * moments (SGD: the momentum buffer in `first`; Adam: m in `first`, v in `second`). A moment is null before the
 * first step (and SGD without momentum never has one). Plain data; restore() copies it.
 */
export interface ServerOptimizerSnapshot {
  optimizer: 'sgd' | 'adam';
  steps: number;
  first: Float64Array | null;
  second: Float64Array | null;
}

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

  /** The state that, with the spec, determines every later step (copies; see ServerOptimizerSnapshot). */
  snapshot(): ServerOptimizerSnapshot {
    return {
      optimizer: this.spec.optimizer,
      steps: this.t,
      first: this.buf === null ? null : this.buf.slice(),
      second: this.second === null ? null : this.second.slice(),
    };
  }

  /**
   * Loads a snapshot (copied) taken under the same spec; `dim`, when given, is the model size the moments must have.
   * A malformed snapshot is a RangeError and leaves this optimizer unchanged.
   */
  restore(s: ServerOptimizerSnapshot, dim?: number): void {
    const where = 'server optimizer restore';
    if (s === null || typeof s !== 'object') throw new RangeError(`${where}: snapshot must be an object`);
    if (s.optimizer !== this.spec.optimizer) throw new RangeError(`${where}: snapshot is of a ${String(s.optimizer)} optimizer, this one is ${this.spec.optimizer}`);
    if (!Number.isInteger(s.steps) || s.steps < 0) throw new RangeError(`${where}: steps must be an integer ≥ 0, got ${String(s.steps)}`);
    for (const [name, v] of [['first', s.first], ['second', s.second]] as const) {
      if (v === null) continue;
      if (!(v instanceof Float64Array)) throw new RangeError(`${where}: ${name} moment must be a Float64Array or null`);
      if (dim !== undefined && v.length !== dim) throw new RangeError(`${where}: ${name} moment has ${v.length} values, the model has ${dim}`);
      for (let j = 0; j < v.length; j++) if (!Number.isFinite(v[j])) throw new RangeError(`${where}: ${name} moment has a non-finite value at ${j}`);
    }
    const stepped = s.steps > 0;
    if (this.spec.optimizer === 'sgd') {
      const withMomentum = (this.spec.momentum ?? 0) !== 0;
      if (s.second !== null) throw new RangeError(`${where}: sgd has no second moment`);
      if (!withMomentum && s.first !== null) throw new RangeError(`${where}: sgd without momentum has no momentum buffer`);
      if (withMomentum && stepped !== (s.first !== null)) throw new RangeError(`${where}: sgd momentum buffer ${s.first === null ? 'missing' : 'present'} after ${s.steps} steps`);
    } else {
      if ((s.first === null) !== (s.second === null)) throw new RangeError(`${where}: adam needs both moments or neither`);
      if (stepped !== (s.first !== null)) throw new RangeError(`${where}: adam moments ${s.first === null ? 'missing' : 'present'} after ${s.steps} steps`);
      if (s.first !== null && s.second !== null) {
        if (s.first.length !== s.second.length) throw new RangeError(`${where}: adam moments have ${s.first.length} and ${s.second.length} values`);
        for (let j = 0; j < s.second.length; j++) if (s.second[j]! < 0) throw new RangeError(`${where}: adam second moment is negative at ${j}`);
      }
    }
    this.t = s.steps;
    this.buf = s.first === null ? null : s.first.slice();
    this.second = s.second === null ? null : s.second.slice();
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
