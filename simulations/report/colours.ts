// One colour per algorithm, the same in every plot, legend and table of a report.

const PALETTE = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f', '#edc948', '#b07aa1', '#ff9da7', '#9c755f', '#7f7f7f'];

/** The i-th algorithm's colour: the palette, then hues spread by the golden angle. */
export function colourAt(i: number): string {
  if (i < PALETTE.length) return PALETTE[i];
  const hue = Math.round(((i - PALETTE.length) * 137.508 + 20) % 360);
  return `hsl(${hue},55%,42%)`;
}
