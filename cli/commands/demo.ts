// fedpool demo: a whole pool on this machine — a coordinator and two workers as real processes on free local
// ports — then a scoring job through it, printing what happened at each step.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fedpoolChild as fedpool, waitForLine as waitFor } from '../children.js';
import { gaussianClasses } from '../demo-data.js';
import { UserError } from '../errors.js';

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


export async function run(options: Record<string, unknown>): Promise<void> {
  const { keep = false } = options as DemoOptions;
  const dir = mkdtempSync(path.join(tmpdir(), 'fedpool-demo-'));
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
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const say = (s: string) => process.stdout.write(`${s}\n`);
    say('fedpool demo: starting a coordinator and two workers on this machine');
    const coordinator = fedpool(['coordinator', '--port', '0', '--state', ':memory:', '--worker-token', workerToken, '--client-token', clientToken]);
    children.push(coordinator);
    const [, url] = await waitFor(coordinator, /^fedpool coordinator listening on (http:\/\/\S+)$/, 'the coordinator', 'fedpool demo');
    say(`  coordinator  ${url}`);
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
    say(`scoring ${counts.items} candidate answers in ${counts.items / 4} groups and ${counts.pairs} preference pairs (weighted-majority selection)`);
    const score = await import('./score.js');
    await score.run({ url, token: clientToken, model: modelDir, input, output: path.join(dir, 'scores.jsonl'), shardSize: 64, redundancy: 1, select: 'weighted-majority' });
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
    await train.run({ url, token: clientToken, config: path.join(trainDir, 'train.json'), out: path.join(trainDir, 'out') });
    say(`dashboard: ${url}/?token=${clientToken}`);
    if (keep) {
      say('the pool keeps running (--keep); press Ctrl-C to stop it');
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
