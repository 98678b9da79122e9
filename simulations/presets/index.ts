// The fixed presets of `fedpool simulate --preset NAME` (issue 5).
import { fedauParticipation } from './fedau-participation.js';
import { fedbuffSpeed } from './fedbuff-speed.js';
import { monnaAttacks } from './monna-attacks.js';
import type { Preset } from './preset.js';

export type { Preset } from './preset.js';

export const presets: ReadonlyMap<string, Preset> = new Map([fedauParticipation, monnaAttacks, fedbuffSpeed].map((p) => [p.name, p]));

export function presetNamed(name: string): Preset {
  const p = presets.get(name);
  if (p === undefined) throw new RangeError(`unknown preset ${JSON.stringify(name)} (known: ${[...presets.keys()].join(', ')})`);
  return p;
}
