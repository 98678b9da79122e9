// The CLI as users run it: the real bin/fedpool.js (compiled by `npm run build`, which `npm test` runs first).
import test from 'ava';
import { fileURLToPath } from 'node:url';
import { cleanEnv, run as runCommand } from '../helpers/processes.js';

const bin = fileURLToPath(new URL('../../bin/fedpool.js', import.meta.url));
const run = (...args: string[]) => runCommand(process.execPath, [bin, ...args], { env: cleanEnv() });

const contractCommands = ['coordinator', 'worker', 'model', 'score', 'train', 'simulate', 'demo', 'compare', 'jobs', 'job', 'cancel', 'wait', 'status', 'prune'];

test('--help lists every command of the contract', async (t) => {
  const r = await run('--help');
  t.is(r.status, 0, r.stderr);
  for (const c of contractCommands) t.regex(r.stdout, new RegExp(`^\\s+${c}\\b`, 'm'), c);
  t.regex(r.stdout, /model init/);
  t.regex(r.stdout, /model pull/);
});

test('every command has --help that documents its contract flags', async (t) => {
  const flags: Record<string, string[]> = {
    coordinator: ['--host', '--port', '--worker-token', '--client-token', '--admin-token', '--state', '--lease-ms', '--metrics-public', '--tls-cert', '--tls-key', '--retain-jobs', '--worker-identity'],
    worker: ['--url', '--token', '--token-file', '--ca', '--name', '--threads', '--backend', '--data', '--scorer-url', '--scorer-api'],
    'model init': ['--out', '--input', '--embedding-model', '--output', '--hidden', '--seed'],
    score: ['--model', '--input', '--output', '--shard-size', '--redundancy', '--agree-tol', '--select', '--resume', '--token-file', '--ca', '--detach'],
    train: ['--url', '--token', '--token-file', '--ca', '--config', '--out', '--detach', '--resume'],
    'model pull': ['<id>', '--out', '--url', '--token', '--token-file', '--ca'],
    status: ['--url', '--token', '--token-file', '--ca', '--json'],
    prune: ['--older', '--url', '--token', '--token-file', '--ca', '--json'],
    jobs: ['--url', '--token', '--token-file', '--ca', '--json'],
    job: ['<id>', '--url', '--token', '--token-file', '--ca', '--json'],
    cancel: ['<id>', '--url', '--token', '--token-file', '--ca', '--json'],
    wait: ['<id>', '--url', '--token', '--token-file', '--ca', '--json'],
    'workers unquarantine': ['--url', '--token', '--token-file', '--ca'],
    simulate: ['--preset', '--config', '--seeds', '--out', '--live', '--workers', '--processes', '--time-scale'],
    demo: ['--keep'],
    compare: ['<files...>', '--out'],
  };
  for (const [cmd, fl] of Object.entries(flags)) {
    const r = await run(...cmd.split(' '), '--help');
    t.is(r.status, 0, `${cmd}: ${r.stderr}`);
    for (const f of fl) t.true(r.stdout.includes(f), `${cmd} --help lacks ${f}`);
  }
});

test('simulate --live: a missing config or a preset is one line, exit 1 (everything is built)', async (t) => {
  for (const [args, line] of [
    [['--config', 'x.json', '--live'], 'fedpool simulate: x.json: cannot read (ENOENT)'],
    [['--preset', 'fedau-participation', '--live'], 'fedpool simulate --live: give --config sim.json (the presets run in the simulator only)'],
  ] as const) {
    const r = await run('simulate', ...args);
    t.is(r.status, 1, args.join(' '));
    t.is(r.stdout, '');
    t.is(r.stderr, `${line}\n`);
  }
});

test('user errors: one clear line, non-zero exit', async (t) => {
  for (const [args, pattern] of [
    [['nope'], /unknown command 'nope'/],
    [['worker', '--bogus'], /unknown option '--bogus'/],
    [['coordinator', '--port', 'abc'], /--port.*'abc' is invalid/],
    [['worker', '--backend', 'tpu'], /--backend.*tpu/],
    [['worker', '--url', 'ftp://x'], /http/],
    [['score', '--redundancy', 'often'], /--redundancy.*an integer in \[1, 16\] or "adaptive"/],
  ] as const) {
    const r = await run(...args);
    t.not(r.status, 0, args.join(' '));
    t.regex(r.stderr, pattern);
    t.true(r.stderr.trim().split('\n').length <= 2, `${args.join(' ')}: ${r.stderr}`);
  }
});
