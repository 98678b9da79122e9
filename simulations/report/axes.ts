// report.html's plot axes: a value range to "nice" tick positions and labels, linear or log₁₀, and a value's position
// along the axis.

export interface Tick {
  v: number;
  label: string;
}

export interface Axis {
  lo: number;
  hi: number;
  log: boolean;
  ticks: Tick[];
}

function niceStep(range: number, target: number): number {
  const raw = range / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const f = raw / mag;
  const nice = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
  return nice * mag;
}

function expLabel(v: number): string {
  return Number(v.toPrecision(3)).toExponential().replace('e+', 'e');
}

/** About five ticks over [min, max]; `extend` widens the range out to whole ticks. */
export function linearAxis(min: number, max: number, extend: boolean): Axis {
  let lo = min;
  let hi = max;
  if (!(hi > lo)) {
    const pad = Math.abs(lo) * 0.1 || 1;
    lo -= pad;
    hi += pad;
  }
  const step = niceStep(hi - lo, 5);
  if (extend) {
    lo = Math.floor(lo / step) * step;
    hi = Math.ceil(hi / step) * step;
  }
  const maxAbs = Math.max(Math.abs(lo), Math.abs(hi));
  const stepText = String(Number(step.toPrecision(2)));
  const useExp = maxAbs >= 1e6 || maxAbs < 1e-3 || stepText.includes('e');
  const decimals = useExp ? 0 : (stepText.split('.')[1] ?? '').length;
  const ticks: Tick[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k <= Math.floor(hi / step + 1e-9); k++) {
    const v = k * step;
    ticks.push({ v, label: k === 0 ? '0' : useExp ? expLabel(v) : v.toFixed(decimals) });
  }
  return { lo, hi, log: false, ticks };
}

/** Whole decades around [min, max] (min > 0), at most about seven ticks. */
export function logAxis(min: number, max: number): Axis {
  const kLo = Math.floor(Math.log10(min));
  let kHi = Math.ceil(Math.log10(max));
  if (kHi === kLo) kHi++;
  const every = Math.max(1, Math.ceil((kHi - kLo) / 6));
  const ticks: Tick[] = [];
  for (let k = kLo; k <= kHi; k += every) {
    const v = Number(`1e${k}`);
    ticks.push({ v, label: k >= -3 && k <= 4 ? String(v) : `1e${k}` });
  }
  return { lo: Number(`1e${kLo}`), hi: Number(`1e${kHi}`), log: true, ticks };
}

/** Where v lies along the axis: 0 at lo, 1 at hi. */
export function fraction(a: Axis, v: number): number {
  return a.log ? (Math.log10(v) - Math.log10(a.lo)) / (Math.log10(a.hi) - Math.log10(a.lo)) : (v - a.lo) / (a.hi - a.lo);
}
