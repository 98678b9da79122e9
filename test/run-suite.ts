// `npm test`'s runner: ava in a temp folder of its own, then a check that the run left nothing behind. Every
// process the suite starts inherits FEDPOOL_TEST_RUN=<this run's id>, so one still running afterwards is found
// (by that marker in /proc/PID/environ — only this run's processes carry it), listed, killed, and fails the run;
// so does any file or folder left in the run's temp folder (tsx's compile cache there is expected).
// Usage: node --import=tsx test/run-suite.ts [ava arguments, e.g. test files]
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { distIsCurrent } from './helpers/fedpool.js';

const root = fileURLToPath(new URL('../', import.meta.url));
const avaCli = path.join(root, 'node_modules/ava/entrypoints/cli.mjs');
const runId = randomUUID();
const marker = `FEDPOOL_TEST_RUN=${runId}`;
const runTmp = mkdtempSync(path.join(tmpdir(), 'fedpool-suite-'));

/** PIDs of live (not zombie) processes whose environment carries this run's marker. */
function leftovers(): { pid: number; cmd: string }[] {
  const found: { pid: number; cmd: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/environ`, 'latin1').split('\0').includes(marker)) continue;
      if (/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${entry}/stat`, 'latin1'))) continue;
      found.push({ pid: Number(entry), cmd: readFileSync(`/proc/${entry}/cmdline`, 'latin1').split('\0').join(' ').trim() });
    } catch {
      // exited while we looked, or not ours to read
    }
  }
  return found;
}

// Said once, so that a slow run from source (dist/ older than a source file) is not a mystery.
console.error(distIsCurrent() ? 'run-suite: tests run the CLI from dist/ (current with every source file)' : 'run-suite: dist/ is missing or older than a source file: tests run the CLI from source through tsx (slower; npm test builds first)');
const started = performance.now();
// npm test starts this runner with TSX_DISABLE_CACHE=1, so that tsx keeps no cache of it in the OS temp folder;
// the suite's processes compile much more and get tsx's cache back, in the run's own temp folder.
const { TSX_DISABLE_CACHE: _noCache, ...env } = process.env;
const ava = spawn(process.execPath, [avaCli, ...process.argv.slice(2)], {
  cwd: root,
  stdio: 'inherit',
  env: { ...env, TMPDIR: runTmp, [marker.split('=')[0]!]: runId },
});
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.on(signal, () => ava.kill(signal));
const code = await new Promise<number>((resolve) => ava.once('exit', (c, s) => resolve(c ?? (s === null ? 1 : 128))));
const seconds = (performance.now() - started) / 1000;

const problems: string[] = [];
if (existsProc()) {
  // A process that is still shutting down gets a few seconds; one that is still there then was left behind.
  let left = leftovers();
  for (let i = 0; i < 50 && left.length > 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    left = leftovers();
  }
  for (const p of left) {
    problems.push(`process ${p.pid} still running: ${p.cmd.slice(0, 300)}`);
    try {
      process.kill(p.pid, 'SIGKILL');
    } catch {
      // gone now
    }
  }
} else {
  console.error('run-suite: no /proc here, so leftover processes are not checked');
}
for (const name of readdirSync(runTmp)) {
  if (/^tsx-\d+$/.test(name)) continue;
  problems.push(`left in the temp folder: ${name}`);
}
rmSync(runTmp, { recursive: true, force: true });

for (const p of problems) console.error(`run-suite: ${p}`);
console.error(`run-suite: ava exited ${code} after ${seconds.toFixed(0)} s; ${problems.length === 0 ? 'nothing left behind' : `${problems.length} thing(s) left behind`}`);
process.exitCode = code !== 0 ? code : problems.length > 0 ? 1 : 0;

function existsProc(): boolean {
  try {
    readdirSync('/proc/self');
    return true;
  } catch {
    return false;
  }
}
