// Seeded synthetic preference pairs with a learnable signal for text reward models: a chosen response carries two
// words of a "helpful" vocabulary, a rejected one two words of an "unhelpful" one, both padded with shared neutral words.
import { writeFileSync } from 'node:fs';
import { mulberry32 } from '../../shared/random.js';

const GOOD = ['clear', 'correct', 'thanks', 'precise', 'step', 'because', 'example', 'verified', 'kind', 'sources'];
const BAD = ['whatever', 'wrong', 'guess', 'rude', 'maybe', 'dunno', 'spam', 'lazy', 'vague', 'nonsense'];
const NEUTRAL = Array.from({ length: 40 }, (_, i) => `w${i}`);

/** `{"id", "prompt", "chosen", "rejected"}` lines (the id lets `fedpool score` read the same file). */
export function preferencePairs(file: string, n: number, seed: number): void {
  const rand = mulberry32(seed);
  const pick = (words: readonly string[], k: number): string[] => Array.from({ length: k }, () => words[Math.floor(rand() * words.length)]!);
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const prompt = pick(NEUTRAL, 4).join(' ');
    const chosen = [...pick(NEUTRAL, 5), ...pick(GOOD, 2)].sort(() => rand() - 0.5).join(' ');
    const rejected = [...pick(NEUTRAL, 5), ...pick(BAD, 2)].sort(() => rand() - 0.5).join(' ');
    lines.push(JSON.stringify({ id: `p${seed}-${i}`, prompt, chosen, rejected }));
  }
  writeFileSync(file, `${lines.join('\n')}\n`);
}
