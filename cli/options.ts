import { InvalidArgumentError } from 'commander';

// Flag parsers: a bad value becomes commander's one-line "error: option '…' argument '…' is invalid. …".

export function integer(min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    const n = Number(value);
    if (!/^-?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new InvalidArgumentError(`expected an integer in [${min}, ${max}]`);
    }
    return n;
  };
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number > 0');
  return n;
}

export function nonNegativeNumber(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number ≥ 0');
  return n;
}

/** `--redundancy`: a replica count R ≥ 1, or `adaptive`. */
export function redundancy(value: string): number | 'adaptive' {
  if (value.trim() === 'adaptive') return 'adaptive';
  try {
    return integer(1, 16)(value);
  } catch {
    throw new InvalidArgumentError('expected an integer in [1, 16] or "adaptive"');
  }
}

export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

export function url(value: string): string {
  try {
    const u = new URL(value);
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('protocol');
    return value;
  } catch {
    throw new InvalidArgumentError('expected an http:// or https:// URL');
  }
}

export const DEFAULT_URL = 'http://127.0.0.1:7447';
