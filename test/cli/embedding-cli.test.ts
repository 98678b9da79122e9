// The CLI with a head over embeddings: what `fedpool score` and `fedpool train` refuse before contacting anyone —
// features lines (the workers embed text), central training data and eval data (only workers can embed).
import test from 'ava';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { cleanEnv, runFedpool } from '../helpers/processes.js';

const dir = mkdtempSync(path.join(tmpdir(), 'fedpool-embedding-cli-'));
test.after.always(() => rmSync(dir, { recursive: true, force: true }));
const cli = (...args: string[]) => runFedpool(args, { env: cleanEnv() });
// Nothing listens here: every refusal below comes before any request.
const url = 'http://127.0.0.1:9';
const model = path.join(dir, 'model');

test.before(async () => {
  const r = await cli('model', 'init', '--out', model, '--input', 'embedding:8', '--embedding-model', 'emb', '--output', 'reward', '--hidden', '');
  if (r.status !== 0) throw new Error(r.stderr);
});

test('fedpool score --model with a head over embeddings: text lines only, one FILE:LINE line for a features line', async (t) => {
  const input = path.join(dir, 'in.jsonl');
  writeFileSync(input, `${JSON.stringify({ id: 'a', prompt: 'p', response: 'r' })}\n${JSON.stringify({ id: 'b', features: [1, 2, 3, 4, 5, 6, 7, 8] })}\n`);
  const r = await cli('score', '--url', url, '--model', model, '--input', input, '--output', path.join(dir, 'out.jsonl'));
  t.is(r.status, 1);
  t.is(r.stderr, `${input}:2: the model reads embeddings of emb (embedding:8), which its workers compute from prompt and response, but this line has features\n`);
});

test('fedpool train with a head over embeddings: central data and eval data are refused in one line, before submitting', async (t) => {
  writeFileSync(path.join(dir, 'pairs.jsonl'), `${JSON.stringify({ prompt: 'p', chosen: 'a', rejected: 'b' })}\n`);
  const base = { model: 'model', task: 'reward-pairs', mode: 'sync', rounds: 1, clientsPerRound: 1, local: { steps: 1, batchSize: 1, lr: 0.1 } };
  const why = `${model}: this model reads embeddings of emb, which only workers fronting that embedding server compute`;
  const cases: [object, string][] = [
    [{ ...base, data: { source: 'central', path: 'pairs.jsonl', partition: { clients: 1, kind: 'iid' } } }, `${why}: train it on their own data ("data": {"source": "worker", "name": NAME})`],
    [{ ...base, data: { source: 'worker', name: 'd' }, eval: { path: 'pairs.jsonl', every: 1 } }, `${why}: "eval" data cannot be embedded here; leave it out and measure with fedpool score`],
  ];
  for (const [config, line] of cases) {
    const file = path.join(dir, 'train.json');
    writeFileSync(file, JSON.stringify(config));
    const r = await cli('train', '--url', url, '--config', file, '--out', path.join(dir, 'out'));
    t.is(r.status, 1, r.stderr);
    t.is(r.stderr, `${line}\n`);
  }
});
