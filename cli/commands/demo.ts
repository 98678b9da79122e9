// fedpool demo: a whole pool on this machine — a coordinator and two workers as real processes on free local
// ports — then a scoring job and a training job through it, saying what each number means; the results stay in
// ./fedpool-demo/ (or --out DIR).
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fedpoolChild as fedpool, waitForLine as waitFor } from '../children.js';
import { gaussianClasses } from '../demo-data.js';
import { checkEmptyDir } from '../out-dir.js';

interface DemoOptions {
  keep?: boolean;
}

const TOPICS = ['rivers', 'prime numbers', 'photosynthesis', 'the moon', 'sorting', 'volcanoes', 'gradient descent', 'tides'];

/** A small deterministic preference set: groups of candidate answers per prompt, and chosen/rejected pairs. */
function demoInput(file: string): { items: number; pairs: number } {
  const out: string[] = [];
  let items = 0;
  let pairs = 0;
  for (let q = 0; q < 50; q++) {
    const topic = TOPICS[q % TOPICS.length];
    const prompt = `question ${q}: explain ${topic} briefly`;
    for (let c = 0; c < 4; c++) {
      const response = `${c % 2 === 0 ? 'a careful' : 'a short'} answer about ${topic}, take ${c}`;
      out.push(JSON.stringify({ id: `q${q}-c${c}`, prompt, response, group: `q${q}`, answer: `${(q + c) % 3}` }));
      items++;
    }
    out.push(JSON.stringify({ id: `q${q}-pair`, prompt, chosen: `a careful answer about ${topic}`, rejected: 'no idea' }));
    pairs++;
  }
  writeFileSync(file, `${out.join('\n')}\n`);
  return { items, pairs };
}


/** The share of pair lines whose chosen answer scored higher, from a score output file. */
function pairAccuracy(file: string): { accuracy: number; pairs: number } {
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { correct?: boolean });
  const pairs = lines.filter((l) => typeof l.correct === 'boolean');
  return { accuracy: pairs.filter((l) => l.correct === true).length / Math.max(1, pairs.length), pairs: pairs.length };
}

/** The first and last evaluated accuracy of a training run's metrics.jsonl. */
function trainAccuracy(file: string): { first: number; last: number; steps: number } {
  const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { accuracy: number | null });
  const evaluated = lines.map((l) => l.accuracy).filter((a): a is number => a !== null);
  return { first: evaluated[0] ?? Number.NaN, last: evaluated.at(-1) ?? Number.NaN, steps: lines.length };
}

export async function run(options: Record<string, unknown>): Promise<void> {
  const { keep = false } = options as DemoOptions;
  // The results stay where the user can open them; the pool itself (processes, tokens) is gone when the demo ends.
  const dir = path.resolve(typeof options['out'] === 'string' ? options['out'] : 'fedpool-demo');
  await checkEmptyDir(dir, 'the demo folder', "an earlier demo's results?", 'remove it, or give another folder: fedpool demo --out DIR');
  mkdirSync(dir, { recursive: true });
  const children: ChildProcess[] = [];
  const workerToken = randomBytes(12).toString('hex');
  const clientToken = randomBytes(12).toString('hex');
  const stop = async (): Promise<void> => {
    await Promise.all(
      children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            c.once('exit', () => resolve());
            c.kill('SIGTERM');
          }),
      ),
    );
  };
  try {
    const say = (s: string) => process.stdout.write(`${s}\n`);
    say('fedpool demo: starting a coordinator and two workers on this machine');
    const coordinator = fedpool(['coordinator', '--port', '0', '--state', ':memory:', '--worker-token', workerToken, '--client-token', clientToken]);
    children.push(coordinator);
    const [, url] = await waitFor(coordinator, /^fedpool coordinator listening on (http:\/\/\S+)$/, 'the coordinator', 'fedpool demo');
    say(`  coordinator  ${url}`);
    // Said while the pool runs (the jobs take seconds); after the last line the pool is gone unless --keep.
    say(`  dashboard    ${url}/?token=${clientToken}  (live while the demo runs${keep ? '' : '; --keep keeps it up'})`);
    for (const name of ['demo-worker-1', 'demo-worker-2']) {
      const w = fedpool(['worker', '--url', url, '--token', workerToken, '--name', name, '--threads', '1']);
      children.push(w);
      const [line] = await waitFor(w, /^fedpool worker .* connected to .*$/, name, 'fedpool demo');
      say(`  ${line}`);
    }

    const modelDir = path.join(dir, 'reward-model');
    const init = await import('./model-init.js');
    await init.run({ out: modelDir, input: 'text:256', output: 'reward', hidden: '64,32', seed: 7 });
    const input = path.join(dir, 'items.jsonl');
    const counts = demoInput(input);
    say(`scoring ${counts.items} candidate answers in ${counts.items / 4} groups and ${counts.pairs} preference pairs with a new, untrained reward model (weighted-majority selection)`);
    const score = await import('./score.js');
    const scores = path.join(dir, 'scores.jsonl');
    await score.run({ url, token: clientToken, model: modelDir, input, output: scores, shardSize: 64, redundancy: 1, select: 'weighted-majority' });
    const pairs = pairAccuracy(scores);
    say(`  pair accuracy ${pairs.accuracy.toFixed(2)}: the share of the ${pairs.pairs} pairs whose chosen answer the model scored higher. The model's weights are random (fedpool model init), so this is chance, not a measurement; a trained reward model (fedpool train with task reward-pairs) is scored the same way.`);
    say(`  each line's score: ${scores}; each group's choice: ${path.join(dir, 'scores.selected.jsonl')}`);
    const trainDir = path.join(dir, 'train');
    await init.run({ out: path.join(trainDir, 'model'), input: 'features:8', output: 'classes:3', hidden: '16', seed: 2 });
    gaussianClasses(path.join(trainDir, 'train.jsonl'), 1200, 1);
    gaussianClasses(path.join(trainDir, 'val.jsonl'), 300, 2);
    const config = {
      model: 'model',
      task: 'classify',
      data: { source: 'central', path: 'train.jsonl', partition: { clients: 12, kind: 'dirichlet', alpha: 0.5, seed: 3 } },
      eval: { path: 'val.jsonl', every: 1 },
      mode: 'sync',
      rounds: 6,
      clientsPerRound: 6,
      local: { steps: 10, batchSize: 32, lr: 0.1, momentum: 0.5 },
    };
    writeFileSync(path.join(trainDir, 'train.json'), JSON.stringify(config, null, 2));
    say('federated fine-tuning: 12 clients with Dirichlet(0.5) label skew, 6 FedAvg rounds of 6 clients, local SGD with momentum');
    const train = await import('./train.js');
    const trainOut = path.join(trainDir, 'out');
    await train.run({ url, token: clientToken, config: path.join(trainDir, 'train.json'), out: trainOut });
    const acc = trainAccuracy(path.join(trainOut, 'metrics.jsonl'));
    say(`  accuracy ${acc.first.toFixed(2)} after the first round, ${acc.last.toFixed(2)} after round ${acc.steps}: the share of 300 held-out examples the federated model classifies right (3 classes: chance is 0.33)`);
    say(`  the trained model: ${path.join(trainOut, 'model')}; per-round metrics: ${path.join(trainOut, 'metrics.jsonl')}`);
    say(`results kept in ${dir}. Next steps:`);
    say('  npx fedpool coordinator --worker-token W --client-token C          # a pool of your own (./fedpool.db keeps its state)');
    say('  npx fedpool worker --url http://HOST:7447 --token W                  # on each machine that joins it');
    say(`  npx fedpool score --url http://HOST:7447 --token C --model ${path.join(trainOut, 'model')} --input ITEMS.jsonl --output OUT.jsonl`);
    say(`  npx fedpool train --url http://HOST:7447 --token C --config ${path.join(trainDir, 'train.json')}`);
    say('  npx fedpool jobs / job ID / wait ID / cancel ID / status            # follow and manage jobs');
    if (keep) {
      say(`the pool and its dashboard keep running (--keep): ${url}/?token=${clientToken}; press Ctrl-C to stop them`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
    }
    say('fedpool demo: done');
  } finally {
    await stop();
  }
}
