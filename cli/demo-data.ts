// Seeded synthetic data for the demo (and the tests that run the same job).
import { writeFileSync } from 'node:fs';
import { mulberry32, normal } from '../shared/random.js';

/** Three Gaussian classes in 8 dimensions, seeded: `{"features", "label"}` lines. */
export function gaussianClasses(file: string, n: number, seed: number): void {
  const rand = mulberry32(seed);
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const label = i % 3;
    const features = Array.from({ length: 8 }, (_, j) => +((j === label ? 2 : j === label + 3 ? -2 : 0) + normal(rand)).toFixed(4));
    lines.push(JSON.stringify({ features, label }));
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}
