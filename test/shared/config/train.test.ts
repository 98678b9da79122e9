import test from 'ava';
import fc from 'fast-check';
import { ConfigError, joinPath, parseTrainConfig, trainClientCount, trainPipelineSpec, type TrainConfig } from '../../../shared/config/train.js';

const sync = {
  model: 'model',
  task: 'classify',
  data: { source: 'central', path: 'train.jsonl', partition: { clients: 20, kind: 'dirichlet', alpha: 0.3, seed: 1 } },
  eval: { path: 'val.jsonl', every: 5 },
  mode: 'sync',
  rounds: 50,
  clientsPerRound: 10,
  local: { steps: 10, batchSize: 32, lr: 0.05, momentum: 0.9 },
  aggregation: { weighting: 'fedau', fedauCutoff: null, robust: { mix: 'nnm', rule: 'trimmed-mean', f: 2 }, server: { optimizer: 'sgd', lr: 1, momentum: 0 } },
};
const asyncCfg = {
  model: '/abs/model',
  task: 'reward-pairs',
  data: { source: 'worker', name: 'prefs' },
  mode: 'async',
  steps: 100,
  concurrency: 8,
  buffer: 4,
};

function error(json: unknown): string {
  try {
    parseTrainConfig(json, '/cfg');
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    return e.message;
  }
  throw new Error('expected a ConfigError');
}

test('the issue’s sync example parses; paths resolve against the config folder', (t) => {
  const cfg = parseTrainConfig(sync, '/work/exp');
  t.is(cfg.model, '/work/exp/model');
  t.deepEqual(cfg.data, { source: 'central', path: '/work/exp/train.jsonl', partition: { clients: 20, kind: 'dirichlet', alpha: 0.3, seed: 1 } });
  t.deepEqual(cfg.eval, { path: '/work/exp/val.jsonl', every: 5 });
  t.is(cfg.mode, 'sync');
  if (cfg.mode !== 'sync') return;
  t.is(cfg.roundDeadlineMs, 60_000);
  t.is(trainClientCount(cfg), 20);
  const spec = trainPipelineSpec(cfg);
  t.is(spec.numClients, 20);
  t.is(spec.weighting, 'fedau');
});

test('minimal configs get documented defaults', (t) => {
  const cfg = parseTrainConfig(
    { model: 'm', task: 'classify', data: { source: 'central', path: 'd.jsonl', partition: { clients: 4 } }, rounds: 3, clientsPerRound: 2 },
    'rel/dir',
  );
  t.deepEqual(cfg, {
    model: 'rel/dir/m',
    task: 'classify',
    data: { source: 'central', path: 'rel/dir/d.jsonl', partition: { clients: 4, kind: 'iid', seed: 1 } },
    mode: 'sync',
    rounds: 3,
    clientsPerRound: 2,
    roundDeadlineMs: 60_000,
    local: { steps: 10, batchSize: 32, lr: 0.05, momentum: 0.9 },
    checkpointEvery: 10,
    aggregation: { weighting: 'samples', fedauCutoff: null, robust: { mix: 'none', rule: 'mean', f: 0 }, server: { optimizer: 'sgd', lr: 1, momentum: 0 } },
  });
  const dir = parseTrainConfig({ model: 'm', task: 'classify', data: { source: 'central', path: 'd', partition: { clients: 4, kind: 'dirichlet' } }, rounds: 1, clientsPerRound: 1 }, '');
  t.is(dir.data.source === 'central' ? dir.data.partition.alpha : -1, 0.3);
});

test('async defaults: poly(0.5) staleness, no max staleness; worker data keeps its name', (t) => {
  const cfg = parseTrainConfig(asyncCfg, '/cfg');
  t.is(cfg.model, '/abs/model');
  t.deepEqual(cfg.data, { source: 'worker', name: 'prefs', seed: 1 });
  t.is(cfg.mode, 'async');
  if (cfg.mode !== 'async') return;
  t.deepEqual(cfg.staleness, { kind: 'poly', exponent: 0.5 });
  t.is(cfg.maxStaleness, null);
  t.is(trainClientCount(cfg), null);
  const hinge = parseTrainConfig({ ...asyncCfg, staleness: { kind: 'hinge', a: 0.5, b: 4 }, maxStaleness: 20 }, '/cfg');
  t.like(hinge, { staleness: { kind: 'hinge', a: 0.5, b: 4 }, maxStaleness: 20 });
});

test('participation and adversary sections: defaults per kind and attack', (t) => {
  const cfg = parseTrainConfig(
    { ...sync, participation: { kind: 'markov', p: { min: 0.05, max: 0.5 } }, adversary: { clients: [0, 3], attack: 'scaled-sign-flip' } },
    '/cfg',
  );
  t.deepEqual(cfg.participation, { kind: 'markov', p: { min: 0.05, max: 0.5 }, q: 0.05, seed: 1 });
  t.deepEqual(cfg.adversary, { clients: [0, 3], attack: 'scaled-sign-flip', scale: 10 });
  const cyc = parseTrainConfig({ ...sync, participation: { kind: 'cyclic', p: 0.2 }, adversary: { clients: [1], attack: 'alie' } }, '/cfg');
  t.deepEqual(cyc.participation, { kind: 'cyclic', p: 0.2, period: 100, seed: 1 });
  t.is(cyc.adversary?.scale, 1.5);
  const arr = parseTrainConfig({ ...sync, participation: { kind: 'bernoulli', p: Array.from({ length: 20 }, () => 0.3), seed: 9 } }, '/cfg');
  t.is(arr.participation?.seed, 9);
});

test('the resolved config parses again to itself (config.json round trip)', (t) => {
  for (const input of [sync, asyncCfg, { ...sync, adversary: { clients: [2], attack: 'random' }, participation: { kind: 'bernoulli', p: 0.5 } }]) {
    const once = parseTrainConfig(input, '/a/b');
    const twice = parseTrainConfig(JSON.parse(JSON.stringify(once)) as unknown, '/elsewhere');
    t.deepEqual(twice, once);
  }
});

test('each invalid field gives a one-line error naming it', (t) => {
  const cases: Array<[unknown, RegExp]> = [
    ['nope', /^train\.json: .*object/],
    [{ ...sync, extra: 1 }, /^train\.json: extra: unknown key$/],
    [{ ...sync, model: '' }, /^train\.json: model: /],
    [{ ...sync, model: undefined }, /^train\.json: model: /],
    [{ ...sync, task: 'regress' }, /^train\.json: task: /],
    [{ ...sync, data: { source: 'cloud' } }, /^train\.json: data\.source: /],
    [{ ...sync, data: { source: 'worker' } }, /^train\.json: data\.name: /],
    [{ ...sync, data: { ...sync.data, partition: { clients: 0 } } }, /^train\.json: data\.partition\.clients: /],
    [{ ...sync, data: { ...sync.data, partition: { clients: 5, kind: 'shards' } } }, /^train\.json: data\.partition\.kind: /],
    [{ ...sync, data: { ...sync.data, partition: { clients: 5, alpha: 0.5 } } }, /^train\.json: data\.partition\.alpha: only for kind 'dirichlet'$/],
    [{ ...sync, data: { ...sync.data, partition: { clients: 5, kind: 'dirichlet', alpha: 0 } } }, /^train\.json: data\.partition\.alpha: /],
    [{ ...sync, data: { ...sync.data, partition: { clients: 5, colour: 1 } } }, /^train\.json: data\.partition\.colour: unknown key$/],
    [{ ...sync, eval: { path: 'v', every: 0 } }, /^train\.json: eval\.every: /],
    [{ ...sync, mode: 'batch' }, /^train\.json: mode: /],
    [{ ...sync, rounds: undefined }, /^train\.json: rounds: required for mode 'sync'$/],
    [{ ...sync, rounds: 2.5 }, /^train\.json: rounds: /],
    [{ ...sync, clientsPerRound: undefined }, /^train\.json: clientsPerRound: required for mode 'sync'$/],
    [{ ...sync, clientsPerRound: 21 }, /^train\.json: clientsPerRound: 21 exceeds the 20 clients$/],
    [{ ...sync, roundDeadlineMs: -1 }, /^train\.json: roundDeadlineMs: /],
    [{ ...sync, steps: 10 }, /^train\.json: steps: only for mode 'async'$/],
    [{ ...asyncCfg, steps: undefined }, /^train\.json: steps: required for mode 'async'$/],
    [{ ...asyncCfg, concurrency: undefined }, /^train\.json: concurrency: required for mode 'async'$/],
    [{ ...asyncCfg, buffer: undefined }, /^train\.json: buffer: required for mode 'async'$/],
    [{ ...asyncCfg, rounds: 3 }, /^train\.json: rounds: only for mode 'sync'$/],
    [{ ...asyncCfg, data: { source: 'worker', name: 'x', clients: 4 } }, /^train\.json: concurrency: 8 exceeds the 4 clients/],
    [{ ...asyncCfg, staleness: { kind: 'linear' } }, /^train\.json: staleness\.kind: /],
    [{ ...asyncCfg, staleness: { kind: 'hinge', a: 1 } }, /^train\.json: staleness\.b: /],
    [{ ...asyncCfg, maxStaleness: -1 }, /^train\.json: maxStaleness: /],
    [{ ...sync, participation: { kind: 'poisson', p: 0.1 } }, /^train\.json: participation\.kind: /],
    [{ ...sync, participation: { kind: 'bernoulli', p: 1.5 } }, /^train\.json: participation\.p: /],
    [{ ...sync, participation: { kind: 'bernoulli', p: [0.5, 0.5] } }, /^train\.json: participation\.p: has 2 entries but there are 20 clients$/],
    [{ ...asyncCfg, participation: { kind: 'bernoulli', p: [0.5] } }, /^train\.json: participation\.p: an array needs a known client count/],
    [{ ...sync, participation: { kind: 'markov', p: 0.1, q: 0 } }, /^train\.json: participation\.q: /],
    [{ ...sync, participation: { kind: 'cyclic', p: 0.1, period: 0 } }, /^train\.json: participation\.period: /],
    [{ ...sync, participation: { kind: 'bernoulli', p: { min: 0.5, max: 0.1 } } }, /^train\.json: participation\.p\.max: /],
    [{ ...sync, local: { lr: 0 } }, /^train\.json: local\.lr: /],
    [{ ...sync, local: { momentum: 1 } }, /^train\.json: local\.momentum: /],
    [{ ...sync, local: { batch: 3 } }, /^train\.json: local\.batch: unknown key$/],
    [{ ...sync, adversary: { clients: [20], attack: 'alie' } }, /^train\.json: adversary\.clients\.0: client id 20 is not below the 20 clients$/],
    [{ ...sync, adversary: { clients: [1, 1], attack: 'alie' } }, /^train\.json: adversary\.clients\.1: client id 1 is listed twice$/],
    [{ ...sync, adversary: { clients: [1], attack: 'mimic' } }, /^train\.json: adversary\.attack: /],
    [{ ...sync, adversary: { clients: [1], attack: 'random', scale: 0 } }, /^train\.json: adversary\.scale: /],
    [{ ...asyncCfg, adversary: { clients: [1], attack: 'foe' } }, /^train\.json: adversary\.clients: needs a known client count/],
    [{ ...sync, aggregation: { weighting: 'votes' } }, /^train\.json: aggregation\.weighting: /],
    [{ ...sync, aggregation: { robust: { rule: 'krum', f: 4 } } }, /^train\.json: aggregation\.robust: krum with f = 4 needs at least 11 updates per step, but a step aggregates 10$/],
    [{ ...asyncCfg, aggregation: { robust: { mix: 'nnm', rule: 'trimmed-mean', f: 2 } } }, /^train\.json: aggregation\.robust: nnm \+ trimmed-mean with f = 2 needs at least 5 .* aggregates 4$/],
    [{ ...asyncCfg, aggregation: { weighting: 'fedau' } }, /^train\.json: aggregation\.weighting: 'fedau' needs a known client count/],
  ];
  for (const [input, re] of cases) {
    const msg = error(input);
    t.regex(msg, re, JSON.stringify(input));
    t.false(msg.includes('\n'), msg);
  }
  // async with a known worker count makes fedau fine
  t.notThrows(() => parseTrainConfig({ ...asyncCfg, data: { source: 'worker', name: 'x', clients: 10 }, aggregation: { weighting: 'fedau' } }, '/'));
});

test('checkpointEvery defaults to 10, takes a positive integer, refuses others', (t) => {
  t.is(parseTrainConfig(sync, '/cfg').checkpointEvery, 10);
  t.is(parseTrainConfig(asyncCfg, '/cfg').checkpointEvery, 10);
  t.is(parseTrainConfig({ ...sync, checkpointEvery: 3 }, '/cfg').checkpointEvery, 3);
  for (const bad of [0, -1, 2.5, '5', null]) {
    const msg = error({ ...sync, checkpointEvery: bad });
    t.regex(msg, /^train\.json: checkpointEvery: /, String(bad));
    t.false(msg.includes('\n'));
  }
});

test("task 'reward-pairs' with a dirichlet partition is refused with one line naming data.partition.kind", (t) => {
  const base = { ...sync, task: 'reward-pairs', aggregation: undefined };
  const msg = error({ ...base, data: { source: 'central', path: 'p', partition: { clients: 20, kind: 'dirichlet' } } });
  t.regex(msg, /^train\.json: data\.partition\.kind: /);
  t.regex(msg, /dirichlet/);
  t.false(msg.includes('\n'), msg);
  t.is(error({ ...base, data: { source: 'central', path: 'p', partition: { clients: 20, kind: 'dirichlet', alpha: 1 } } }), msg);
  const e = t.throws(() => parseTrainConfig({ ...base, data: { source: 'central', path: 'p', partition: { clients: 20, kind: 'dirichlet' } } }, '/'), { instanceOf: ConfigError });
  t.is(e?.field, 'data.partition.kind');
  // iid reward pairs, and dirichlet classify, are fine.
  t.notThrows(() => parseTrainConfig({ ...base, data: { source: 'central', path: 'p', partition: { clients: 20, kind: 'iid' } } }, '/'));
  t.notThrows(() => parseTrainConfig({ ...base, task: 'classify', data: { source: 'central', path: 'p', partition: { clients: 20, kind: 'dirichlet' } } }, '/'));
});

test('ConfigError carries the field', (t) => {
  const e = t.throws(() => parseTrainConfig({ ...sync, clientsPerRound: 30 }, '/'), { instanceOf: ConfigError });
  t.is(e?.field, 'clientsPerRound');
  t.true(e instanceof Error);
});

test('joinPath: posix join with . and .. folded, absolute paths kept, custom resolver honoured', (t) => {
  t.is(joinPath('/a/b', 'c.jsonl'), '/a/b/c.jsonl');
  t.is(joinPath('/a/b/', './c/../d.jsonl'), '/a/b/d.jsonl');
  t.is(joinPath('/a/b', '../../../x'), '/x');
  t.is(joinPath('a', '../../x'), '../x');
  t.is(joinPath('', 'x'), 'x');
  t.is(joinPath('.', 'x'), 'x');
  t.is(joinPath('/a', '/etc/x'), '/etc/x');
  t.is(joinPath('/a', 'C:\\data\\x'), 'C:\\data\\x');
  t.is(joinPath('C:/exp', 'm'), 'C:/exp/m');
  const cfg: TrainConfig = parseTrainConfig(sync, 'BASE', (b, p) => `${b}|${p}`);
  t.is(cfg.model, 'BASE|model');
  t.is(cfg.eval?.path, 'BASE|val.jsonl');
});

test('property: any valid sync config with clientsPerRound ≤ clients parses, larger is refused', (t) => {
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 50 }), fc.integer({ min: 1, max: 60 }), (clients, perRound) => {
      const input = { ...sync, aggregation: {}, data: { ...sync.data, partition: { clients } }, clientsPerRound: perRound };
      if (perRound <= clients) return parseTrainConfig(input, '/').mode === 'sync';
      return /clientsPerRound: /.test(error(input));
    }),
  );
  t.pass();
});

test('the examples in docs/train-config.md parse', async (t) => {
  const { readFileSync } = await import('node:fs');
  const doc = readFileSync(new URL('../../../docs/train-config.md', import.meta.url), 'utf8');
  const blocks = [...doc.matchAll(/```json\n([\s\S]*?)```/g)].map((m) => JSON.parse(m[1]) as unknown);
  t.is(blocks.length, 2);
  for (const b of blocks) t.notThrows(() => parseTrainConfig(b, '/exp'));
});
