// How tests run the fedpool CLI. From the compiled dist/ when it is up to date with every source file (npm test
// builds it first), otherwise from source through tsx. Both run the same code, and a test can never exercise a
// stale dist/; the compiled one starts a process in about a third of the CPU time (no loader compiling every module
// of the child and of each of its threads), which is most of what the end-to-end files spend. Tests start it through
// test/helpers/processes.ts (startFedpool, runFedpool).
import { readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** This file: run with tsx's loader, it is the CLI from source. */
export const fedpoolEntry = fileURLToPath(import.meta.url);

const root = fileURLToPath(new URL('../../', import.meta.url));
/** The folders tsconfig.build.json compiles into dist/ that the CLI can load. */
const SOURCES = ['shared', 'server', 'client', 'simulations', 'cli'];

/** Every .ts under `dir` (declaration files aside), as paths relative to the checkout. */
function sourceFiles(dir: string): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(path.join(root, dir), { withFileTypes: true })) {
    const rel = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...sourceFiles(rel));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) found.push(rel);
  }
  return found;
}

/** Whether dist/ holds a compiled file at least as new as each source file of the CLI. */
export function distIsCurrent(): boolean {
  try {
    return SOURCES.flatMap(sourceFiles).every((rel) => statSync(path.join(root, 'dist', rel.replace(/\.ts$/, '.js'))).mtimeMs >= statSync(path.join(root, rel)).mtimeMs);
  } catch {
    return false; // no dist/, or a source file without its compiled one
  }
}

let useDist: boolean | undefined;
/** Node arguments that run the CLI (bin/fedpool.js, as installed, or from source): `process.execPath` + these + the command's arguments. */
export function fedpoolArgv(tsxLoader: string, args: readonly string[]): string[] {
  useDist ??= process.env['FEDPOOL_TEST_FROM_SOURCE'] !== '1' && distIsCurrent();
  return useDist ? [path.join(root, 'bin/fedpool.js'), ...args] : [`--import=${tsxLoader}`, fedpoolEntry, ...args];
}

// Imported lazily: a test file that only starts processes does not load the CLI itself.
if (process.argv[1] === fedpoolEntry) {
  const { main } = await import('../../cli/main.js');
  process.exitCode = await main(process.argv);
}
