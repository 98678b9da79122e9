// The guarantees the whole suite leans on (docs/testing.md): a child is killed when its start-up line never comes,
// a stop escalates to SIGKILL of the whole process group, a run past its limit is killed and fails, and the CLI
// starts from any working folder. And test/run-suite.ts fails a run that leaves a process or a temp file behind.
import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { alive, gone, root, run, runFedpool, start, tsxLoader } from './processes.js';

const node = process.execPath;

test('a start-up line that never comes: the wait rejects and the process is killed', async (t) => {
  const child = start(t, node, ['-e', 'console.log("up"); setInterval(() => {}, 1000)']);
  await child.line(/^up$/m);
  await t.throwsAsync(child.line(/never/, { ms: 300, what: 'the never line' }), { message: /^the never line: not seen within 0\.3 s \(process killed\)/ });
  t.like(await child.exited, { code: null, signal: 'SIGKILL' });
});

test('a process that exits before its line: the wait rejects at once with its stderr', async (t) => {
  const child = start(t, node, ['-e', 'console.error("no config"); process.exit(3)']);
  await t.throwsAsync(child.line(/listening/), { message: /the process exited \(3\) first; stderr: no config/ });
  t.is(await child.status, 3);
});

test('stop escalates: SIGTERM ignored → SIGKILL to the group, grandchildren included', async (t) => {
  // The child ignores SIGTERM and starts a grandchild that ignores it too, then prints the grandchild's pid.
  const script = `
    process.on('SIGTERM', () => {});
    const { spawn } = require('node:child_process');
    const g = spawn(process.execPath, ['-e', "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000)"], { stdio: 'ignore' });
    console.log('grandchild ' + g.pid);
    setInterval(() => {}, 1000);`;
  const child = start(t, node, ['-e', script]);
  const [, pid] = await child.line(/^grandchild (\d+)$/m);
  t.is(await child.stop('SIGTERM', 300), 128 + 9);
  t.true(await gone(Number(pid), 10_000), 'the grandchild is gone too');
});

test('run: a command past its limit is killed and the call rejects', async (t) => {
  t.plan(1);
  await t.throwsAsync(run(node, ['-e', 'setInterval(() => {}, 1000)'], { ms: 300 }), { message: /still running after 0\.3 s \(killed\)/ });
});

test('the CLI starts from any working folder (tsx is resolved from the checkout, not from the cwd)', async (t) => {
  const elsewhere = mkdtempSync(path.join(tmpdir(), 'fedpool-cwd-'));
  t.teardown(() => rmSync(elsewhere, { recursive: true, force: true }));
  const r = await runFedpool(['--help'], { cwd: elsewhere });
  t.is(r.status, 0, r.stderr);
  t.regex(r.stdout, /^\s+coordinator\b/m);
});

test('run-suite fails a run that leaves a process or a temp folder behind, names them and cleans up', async (t) => {
  const r = await run(node, [`--import=${tsxLoader}`, path.join(root, 'test/run-suite.ts'), '--config', 'test/fixtures/leaky/ava.config.mjs']);
  t.is(r.status, 1, `${r.stdout}\n${r.stderr}`);
  const [, pid] = /leaked pid (\d+)/.exec(`${r.stdout}\n${r.stderr}`) ?? [];
  t.truthy(pid, `${r.stdout}\n${r.stderr}`);
  t.regex(r.stderr, new RegExp(`^run-suite: process ${pid} still running: .*setInterval`, 'm'));
  t.regex(r.stderr, /^run-suite: left in the temp folder: leaked-\w+$/m);
  t.regex(r.stderr, /^run-suite: ava exited 0 after \d+ s; 2 thing\(s\) left behind$/m);
  t.false(alive(Number(pid)), 'the leaked process was killed');
});
