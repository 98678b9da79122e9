// sim.json (`fedpool simulate --config`, docs/sim-config.md): the schema's one-line errors, the Preset it builds
// (identical to the fixed preset it restates), the runner's threads, and the CLI end to end.
import test from 'ava';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanEnv, runFedpool } from '../helpers/processes.js';
import { parseSimConfig, SimConfigError } from '../../simulations/config.js';
import { fedauParticipation } from '../../simulations/presets/fedau-participation.js';
import { presetFromConfig } from '../../simulations/presets/from-config.js';
import { simulate } from '../../simulations/runner.js';

/** docs/algorithms.md §1.5's Bernoulli and Markov experiments of fedau-participation, restated as a sim.json. */
const fedauConfig = {
  name: 'fedau-participation',
  task: { kind: 'quadratic', dim: 10 },
  clients: 100,
  rounds: 3000,
  local: { steps: 5, lr: 0.1, batchSize: 1, momentum: 0 },
  logEvery: 50,
  averageTail: 0.5,
  participation: { kind: 'bernoulli', p: { min: 0.02, max: 0.5, by: 'data' } },
  experiments: [{ name: 'bernoulli' }, { name: 'markov-0.05', participation: { kind: 'markov', p: { min: 0.02, max: 0.5, by: 'data' }, q: 0.05 } }],
  algorithms: [
    { name: 'fedau', weighting: 'fedau', server: { optimizer: 'sgd', lr: 1 } },
    { name: 'known-1/p', weighting: 'known' },
  ],
};

test('a config restating fedau-participation gives the preset’s rows exactly, for the same seed', (t) => {
  const preset = presetFromConfig(parseSimConfig(fedauConfig));
  t.deepEqual(preset.experiments, ['fedau-participation/bernoulli', 'fedau-participation/markov-0.05']);
  t.deepEqual(preset.algorithms, ['fedau', 'known-1/p']);
  for (const [experiment, algorithm, seed] of [['fedau-participation/bernoulli', 'fedau', 2], ['fedau-participation/markov-0.05', 'known-1/p', 1]] as const) {
    const mine = preset.run(experiment, algorithm, seed);
    const theirs = fedauParticipation.run(experiment, algorithm, seed);
    t.is(mine.rows.length, 61);
    t.deepEqual(mine, theirs, `${experiment} ${algorithm}`);
  }
});

test('parsing fills in the documented defaults and parses again to itself', (t) => {
  const cfg = parseSimConfig({ name: 'x', task: { kind: 'softmax' }, clients: 10, rounds: 3, algorithms: [{ name: 'a' }] });
  t.deepEqual(cfg.task, { kind: 'softmax', samplesPerClient: 100, classes: 10, features: 20, alpha: 1 });
  t.deepEqual(cfg.local, { steps: 5, lr: 0.1, batchSize: 16, momentum: 0 });
  t.deepEqual(cfg.algorithms[0], {
    name: 'a', mode: 'sync', weighting: 'samples', fedauCutoff: null,
    robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1, momentum: 0 },
  });
  t.is(cfg.logEvery, 1);
  t.is(cfg.averageTail, 0);
  t.deepEqual(parseSimConfig(JSON.parse(JSON.stringify(cfg))), cfg);
  t.deepEqual(presetFromConfig(cfg).experiments, ['x/default']);
});

const base = { name: 'x', task: { kind: 'quadratic' }, clients: 10, rounds: 5, algorithms: [{ name: 'a' }] };

test('bad configs: one line naming the field', (t) => {
  const cases: [unknown, string, RegExp][] = [
    [{ ...base, bogus: 1 }, 'bogus', /unknown key$/],
    [{ ...base, local: { steps: 2, lrr: 0.1 } }, 'local.lrr', /unknown key$/],
    [{ ...base, task: { kind: 'quadratic', alpha: 1 } }, 'task.alpha', /unknown key$/],
    [{ ...base, clients: undefined }, 'clients', /missing \(required\)$/],
    [{ ...base, algorithms: [{ mode: 'sync' }] }, 'algorithms.0.name', /missing \(required\)$/],
    [{ ...base, rounds: undefined }, 'rounds', /required when an algorithm has mode sync/],
    [{ ...base, task: { kind: 'cnn' } }, 'task.kind', /not one of quadratic, softmax, mnist, spam$/],
    [{ ...base, algorithms: [{ name: 'a', mode: 'later' }] }, 'algorithms.0.mode', /not one of sync, async, p2p$/],
    [{ ...base, algorithms: [{ name: 'a', robust: { rule: 'mode' } }] }, 'algorithms.0.robust.rule', /expected one of "mean"/],
    [{ ...base, algorithms: [{ name: 'a', robust: { rule: 'krum', f: 4 } }] }, 'algorithms.0.robust.f', /krum with f = 4 needs at least 11 updates per step, but a step aggregates at most 10$/],
    [{ ...base, algorithms: [{ name: 'a', clientsPerRound: 5, robust: { mix: 'nnm', rule: 'trimmed-mean', f: 3 } }] }, 'algorithms.0.robust.f', /nnm \+ trimmed-mean with f = 3 needs at least 7/],
    [{ ...base, participation: { kind: 'bernoulli', p: [0.5, 0.5] } }, 'participation.p', /has 2 entries but there are 10 clients/],
    [{ ...base, byzantine: { clients: 2, attack: 'sign-flip' } }, 'algorithms.0.weighting', /need 'uniform'/],
    [{ ...base, algorithms: [{ name: 'a', weighting: 'known' }] }, 'algorithms.0.weighting', /'known' needs participation/],
    [{ ...base, maxTime: 5, algorithms: [{ name: 'b', mode: 'async', concurrency: 2 }] }, 'algorithms.0.buffer', /required for kind 'fedbuff'/],
    [{ ...base, algorithms: [{ name: 'b', mode: 'async', concurrency: 2, buffer: 2 }] }, 'maxTime', /required when an algorithm has mode async/],
    [{ ...base, algorithms: [{ name: 'a' }, { name: 'a' }] }, 'algorithms.1.name', /used twice/],
    [{ ...base, experiments: [{ name: 'e', speeds: { kind: 'uniform', min: 2, max: 1 } }] }, 'experiments.0.speeds.max', /below min/],
    [{ ...base, maxTime: 5, speeds: { kind: 'constant', value: 0 }, algorithms: [{ name: 'b', mode: 'async', concurrency: 2, buffer: 1 }] }, 'speeds', /durations > 0$/],
    [{ ...base, participation: { kind: 'bernoulli', p: 0.5 }, algorithms: [{ name: 'a', weighting: 'known', clientsPerRound: 3 }] }, 'algorithms.0.clientsPerRound', /not with weighting 'known'/],
  ];
  for (const [cfg, field, problem] of cases) {
    const e = t.throws(() => parseSimConfig(cfg, 'my.json'), { instanceOf: SimConfigError }, field);
    if (e === undefined) continue;
    t.is(e.field, field, e.message);
    t.true(e.message.startsWith(`my.json: ${field}: `), e.message);
    t.regex(e.message, problem);
    t.false(e.message.includes('\n'));
  }
});

/** Sync FedAvg vs FedBuff vs FedFix on the softmax task under log-normal speeds, CI-sized. */
const comparison = {
  name: 'buff-vs-sync',
  task: { kind: 'softmax', samplesPerClient: 40, alpha: 1 },
  clients: 20,
  speeds: { kind: 'log-normal', mu: 0, sigma: 1, jitter: [0.8, 1.2] },
  rounds: 15,
  maxTime: 40,
  local: { steps: 5, lr: 0.1, batchSize: 16 },
  logEvery: 2,
  target: 2,
  algorithms: [
    { name: 'sync-fedavg', mode: 'sync', weighting: 'uniform', clientsPerRound: 5 },
    { name: 'fedbuff-k3', mode: 'async', concurrency: 5, buffer: 3, staleness: { kind: 'poly', exponent: 0.5 } },
    { name: 'fedfix-1', mode: 'async', kind: 'fedfix', concurrency: 5, interval: 1 },
  ],
};

test('a sync + async comparison runs, the same in one thread and in two', async (t) => {
  const cfg = parseSimConfig(comparison);
  const one = await simulate({ preset: cfg.name, config: cfg, seeds: 2, threads: 1 });
  t.is(one.length, 3 * 2);
  t.deepEqual(one.map((r) => `${r.algorithm}:${r.seed}`), ['sync-fedavg:1', 'sync-fedavg:2', 'fedbuff-k3:1', 'fedbuff-k3:2', 'fedfix-1:1', 'fedfix-1:2']);
  for (const r of one) {
    t.is(r.experiment, 'buff-vs-sync/default');
    t.true(r.rows.length > 2, r.algorithm);
    t.true(r.rows.every((row) => row.time <= 40 + 1e-9 || r.algorithm === 'sync-fedavg'));
    const first = r.rows[0]!.loss!;
    t.true(r.finalLoss !== null && r.finalLoss < first, `${r.algorithm}: ${first} → ${r.finalLoss}`);
    t.true(r.finalAccuracy !== null);
  }
  const two = await simulate({ preset: cfg.name, config: cfg, seeds: 2, threads: 2 });
  t.deepEqual(two, one);
});

test('fedpool simulate --config: writes the three files; a bad config is one line, exit 1, nothing written', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'fedpool-simcfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cfgFile = path.join(dir, 'sim.json');
  writeFileSync(cfgFile, JSON.stringify({
    name: 'tiny',
    task: { kind: 'quadratic', dim: 4 },
    clients: 8,
    rounds: 10,
    logEvery: 5,
    participation: { kind: 'bernoulli', p: { min: 0.2, max: 0.8 } },
    algorithms: [{ name: 'fedau', weighting: 'fedau' }, { name: 'fedavg', weighting: 'uniform' }],
  }));
  // Run from the config's folder, so that relative names are what the messages show.
  const cli = (...args: string[]) => runFedpool(['simulate', ...args], { cwd: dir, env: cleanEnv() });
  const out = path.join(dir, 'out');
  const r = await cli('--config', cfgFile, '--seeds', '2', '--out', out);
  t.is(r.status, 0, r.stderr);
  for (const f of ['metrics.csv', 'summary.json', 'report.html']) t.true(existsSync(path.join(out, f)), f);
  const csv = readFileSync(path.join(out, 'metrics.csv'), 'utf8').trim().split('\n');
  t.is(csv[0], 'experiment,algorithm,seed,step,time,loss,accuracy');
  t.is(csv.length, 1 + 2 * 2 * 3);
  t.true(csv[1]!.startsWith('tiny/default,fedau,1,0,'));
  const summary = JSON.parse(readFileSync(path.join(out, 'summary.json'), 'utf8')) as { experiment: string; algorithm: string; seeds: number }[];
  t.deepEqual(summary.map((s) => [s.experiment, s.algorithm, s.seeds]), [['tiny/default', 'fedau', 2], ['tiny/default', 'fedavg', 2]]);
  t.regex(r.stdout, /fedavg/);

  writeFileSync(path.join(dir, 'bad.json'), JSON.stringify({ ...base, algorithms: [{ name: 'a', robust: { rule: 'median', f: 1 }, colour: 'red' }] }));
  // The same --out again: refused (as train refuses an occupied model folder), unless --force.
  const again = await cli('--config', cfgFile, '--seeds', '2', '--out', out);
  t.is(again.status, 1);
  t.is(again.stderr, `${out}: not empty (an earlier simulation's results?); choose another --out, or add --force to overwrite\n`);
  const forced = await cli('--config', cfgFile, '--seeds', '2', '--out', out, '--force');
  t.is(forced.status, 0, forced.stderr);
  t.is(readFileSync(path.join(out, 'metrics.csv'), 'utf8').trim().split('\n').length, 1 + 2 * 2 * 3);

  const bad = await cli('--config', 'bad.json', '--out', path.join(dir, 'bad-out'));
  t.is(bad.status, 1);
  t.is(bad.stdout, '');
  t.is(bad.stderr, 'fedpool simulate: bad.json: algorithms.0.colour: unknown key\n');
  t.false(existsSync(path.join(dir, 'bad-out')));
  const both = await cli('--config', 'sim.json', '--preset', 'fedau-participation');
  t.is(both.status, 1);
  t.regex(both.stderr, /^[^\n]*--preset[^\n]*--config[^\n]*\n$/);
});
