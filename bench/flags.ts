// Command-line flags of the benchmarks: `--name VALUE`.

/** `--name N` from args as a non-negative integer (fallback when absent); a bad value exits 2 with one line. */
export function integerFlag(args: readonly string[], name: string, fallback: number): number {
  const i = args.indexOf(`--${name}`);
  const v = Number(i >= 0 ? args[i + 1] : fallback);
  if (!Number.isInteger(v) || v < 0) {
    console.error(`--${name}: a non-negative integer, got ${args[i + 1]}`);
    process.exit(2);
  }
  return v;
}

/** `--name VALUE` from args as given (fallback when absent). */
export function stringFlag(args: readonly string[], name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? (args[i + 1] as string) : fallback;
}
