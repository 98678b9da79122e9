// Every benchmark of the performance issue, one after another on this machine, each as its own process with a time
// limit: their markdown tables go to bench/results.md and, with the command, exit status and wall time of each, to
// bench/results.json (with --only, to stdout: a selection does not replace the whole run's results). Side-by-side
// anchors (numpy, base64 vs blob) are inside each benchmark's own run.
//
//   npm run bench        (= build, then node --import=tsx bench/run-all.ts [--only NAME,…])
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '..');

interface Bench {
  name: string;
  /** What it measures, in a line. */
  what: string;
  argv: string[];
  timeoutS: number;
}

const tsx = ['--import=tsx'];
const benches: Bench[] = [
  { name: 'aggregate', what: 'aggregation rules against numpy on the same inputs', argv: [...tsx, 'bench/aggregate.ts'], timeoutS: 300 },
  { name: 'coordinator', what: "the coordinator's CPU per score shard, 50 light workers", argv: ['dist/bench/coordinator.js', '--shards', '20000'], timeoutS: 120 },
  { name: 'coordinator-sqlite', what: 'the same with SQLite state', argv: ['dist/bench/coordinator.js', '--shards', '20000', '--state', 'sqlite'], timeoutS: 120 },
  { name: 'coordinator-training', what: "the coordinator's CPU per 4 MB training update, 10 light workers", argv: ['dist/bench/coordinator-training.js'], timeoutS: 300 },
  { name: 'submit', what: 'a job of 100,000 items (13 and 102 MB of features), features as a blob and as base64', argv: ['dist/bench/pool.js', '--workers', '1', '--items', '100000', '--shard-size', '4096', '--submit', 'blob,base64'], timeoutS: 240 },
  { name: 'large-bodies', what: 'a 250 MB row-form JSON job: longest event-loop block, peak RSS', argv: [...tsx, 'bench/large-bodies.ts', '250'], timeoutS: 180 },
  { name: 'simulate', what: 'the simulator against vectorized numpy, whole process', argv: ['dist/bench/simulate.js'], timeoutS: 300 },
  { name: 'train', what: 'training: server step per rule, and the coordinator CPU per step of a real job (2 workers, 4 updates a step)', argv: ['dist/bench/train.js', '--workers', '2', '--rounds', '8', '--local-steps', '1', '--reps', '3'], timeoutS: 300 },
  { name: 'transport', what: '4 MB updates and round trips through the protocol beside raw ws', argv: [...tsx, 'bench/transport.ts'], timeoutS: 180 },
];

interface Outcome {
  name: string;
  what: string;
  command: string;
  exitCode: number | null;
  timedOut: boolean;
  seconds: number;
  tables: string[];
  /** Its last lines of stderr when it failed. */
  error?: string;
}

function run(b: Bench): Promise<Outcome> {
  const command = `node ${b.argv.join(' ')}`;
  process.stderr.write(`bench: ${b.name}: ${command}\n`);
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, b.argv, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4000)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGTERM');
    }, b.timeoutS * 1000);
    child.once('close', (code) => {
      clearTimeout(timer);
      // Markdown tables: runs of lines that start with '|'.
      const tables: string[] = [];
      let current: string[] = [];
      for (const line of [...out.split('\n'), '']) {
        if (line.startsWith('|')) current.push(line);
        else if (current.length > 0) {
          tables.push(current.join('\n'));
          current = [];
        }
      }
      const outcome: Outcome = { name: b.name, what: b.what, command, exitCode: code, timedOut, seconds: (performance.now() - t0) / 1000, tables };
      if (code !== 0 || timedOut) outcome.error = err.trim().split('\n').slice(-5).join('\n');
      resolve(outcome);
    });
  });
}

const only = (() => {
  const i = process.argv.indexOf('--only');
  return i < 0 ? undefined : (process.argv[i + 1] ?? '').split(',');
})();
const unknown = (only ?? []).filter((n) => !benches.some((b) => b.name === n));
if (unknown.length > 0) {
  console.error(`bench: unknown benchmark ${unknown.join(', ')} (known: ${benches.map((b) => b.name).join(', ')})`);
  process.exit(2);
}
const date = new Date().toISOString().slice(0, 10);
const machine = { cores: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', node: process.version, loadAtStart: loadavg().map((l) => Number(l.toFixed(1))) };
const outcomes: Outcome[] = [];
for (const b of benches.filter((x) => only === undefined || only.includes(x.name))) outcomes.push(await run(b));

const md: string[] = [`# Benchmarks, ${date}`, '', `\`npm run bench\` on ${machine.cores} cores (${machine.cpu}), Node ${machine.node}, load average ${machine.loadAtStart.join(' ')} at the start.`, ''];
for (const o of outcomes) {
  md.push(`## ${o.name}: ${o.what}`, '', `\`${o.command}\` — ${o.timedOut ? `stopped after ${o.seconds.toFixed(0)} s (time limit)` : o.exitCode === 0 ? `${o.seconds.toFixed(0)} s` : `exited ${o.exitCode} after ${o.seconds.toFixed(0)} s`}`, '');
  for (const t of o.tables) md.push(t, '');
  if (o.error !== undefined) md.push('```', o.error, '```', '');
}
const failed = outcomes.filter((o) => o.exitCode !== 0 || o.timedOut);
const seconds = outcomes.reduce((s, o) => s + o.seconds, 0).toFixed(0);
if (only === undefined) {
  writeFileSync(path.join(here, 'results.json'), `${JSON.stringify({ date, machine, outcomes }, null, 2)}\n`);
  writeFileSync(path.join(here, 'results.md'), md.join('\n'));
  process.stderr.write(`bench: ${outcomes.length - failed.length} of ${outcomes.length} ran; bench/results.md and bench/results.json written (${seconds} s)\n`);
} else {
  // A selection leaves the results of the whole run alone.
  console.log(md.join('\n'));
  process.stderr.write(`bench: ${outcomes.length - failed.length} of ${outcomes.length} ran (${seconds} s)\n`);
}
process.exit(failed.length === 0 ? 0 : 1);
