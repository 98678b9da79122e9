// fedpool train (issue 4): validate train.json, the model and the data locally, upload the model once, submit a
// training job, follow its metrics per server step, then write DIR/model/, DIR/metrics.jsonl and DIR/config.json.
// Central data is read with the workers' dataset parser (same line forms, same featurizer) and sent as columns;
// worker-held data is not read here at all. A coordinator restart mid-job is waited out: the job resumes there from
// its last checkpoint and the metrics are followed again.
import { SingleBar } from 'cli-progress';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { readBundleDir, writeBundleDir } from '../../client/scoring/bundle-fs.js';
import { ConfigError, parseTrainConfig, type TrainConfig } from '../../shared/config/train.js';
import { bundleHash, packBundle, unpackBundle, validateBundle } from '../../shared/model/bundle.js';
import { ModelError } from '../../shared/model/errors.js';
import { DatasetError, parseDataset, toTrainData } from '../../client/training/datasets.js';
import type { Manifest } from '../../shared/model/manifest.js';
import { CoordinatorApi, coordinatorApi } from '../api.js';
import { followJob } from '../follow.js';
import { UserError } from '../errors.js';
import { INTERRUPTED_EXIT, Interrupt } from '../interrupt.js';
import { checkEmptyDir } from '../out-dir.js';
import { reportWaits } from '../waiting.js';

interface TrainOptions {
  url: string;
  token?: string;
  config?: string;
  out?: string;
  detach?: boolean;
  resume?: string;
}

type Columns = { dim: number; n: number; rows: string; labels: string } | { dim: number; n: number; chosen: string; rejected: string };

interface MetricLine {
  step: number;
  loss: number | null;
  accuracy: number | null;
  eval_loss?: number | null;
}

export async function run(options: Record<string, unknown>): Promise<void> {
  const o = options as unknown as TrainOptions;
  if (o.resume !== undefined) {
    if (o.config !== undefined) throw new UserError('fedpool train: --resume takes --out, not --config (the job already has its train.json)');
    return resume(coordinatorApi(options, 'train'), o.resume, o);
  }
  if (o.config === undefined) throw new UserError('fedpool train: --config train.json is required (or --resume ID to follow a job already submitted)');
  const config = await readConfig(o.config);
  const model = await readModel(config.model, config.task);
  refuseCentralEmbedding(config, model.manifest);
  const data = config.data.source === 'central' ? await readData(config.data.path, model.manifest, config.task) : undefined;
  const evalData = config.eval === undefined ? undefined : await readData(config.eval.path, model.manifest, config.task);

  // DIR/model/ is written only after training: refuse an occupied one now, not after the job has run.
  if (o.out !== undefined) await checkEmptyModelDir(path.resolve(o.out, 'model'));

  const api = coordinatorApi(options, 'train');
  await api.ensureBlob(model.hash, model.bytes);
  const started = Date.now();
  const interrupt = new Interrupt('train', o.detach === true);
  try {
    const { id } = await api.createJob({ kind: 'train', model: model.hash, config, ...(data === undefined ? {} : { data }), ...(evalData === undefined ? {} : { eval: evalData }) });
    interrupt.submitted(api, id);
    process.stderr.write(`fedpool job ${id} submitted\n`);
    await follow(api, id, o, config, started, interrupt);
  } finally {
    interrupt.dispose();
  }
}

/**
 * `--resume ID`: follows a training job submitted earlier (by a `fedpool train` that was interrupted or detached) and
 * writes DIR as that command would have: config.json (the job's train.json as the coordinator parsed it),
 * metrics.jsonl, model/. Ctrl-C leaves the job running (this command did not submit it).
 */
async function resume(api: CoordinatorApi, id: string, o: TrainOptions): Promise<void> {
  const job = await api.requireJob(id, 'train');
  if (job.kind !== 'train' || typeof job['config'] !== 'object' || job['config'] === null) throw new UserError(`fedpool train: job ${id} is a ${job.kind} job, not a training job`);
  let config: TrainConfig;
  try {
    config = parseTrainConfig(job['config'], process.cwd(), (base, p) => path.resolve(base, p));
  } catch (e) {
    throw new UserError(`fedpool train: the coordinator's train.json of job ${id} does not parse here (${e instanceof Error ? e.message : String(e)}); is this fedpool older than the coordinator?`);
  }
  if (o.out !== undefined) await checkEmptyModelDir(path.resolve(o.out, 'model'));
  const interrupt = new Interrupt('train', true);
  interrupt.submitted(api, id, `fedpool train --resume ${id}${o.out === undefined ? '' : ` --out ${o.out}`}`);
  process.stderr.write(`fedpool train: following job ${id} (${job.state}, ${job.progress.done}/${job.progress.total} steps)\n`);
  try {
    await follow(api, id, o, config, Date.parse(job.createdAt), interrupt);
  } finally {
    interrupt.dispose();
  }
}

/** Follows the submitted job's metrics, then writes DIR/metrics.jsonl, DIR/model/ and the summary. */
async function follow(api: CoordinatorApi, id: string, o: TrainOptions, config: TrainConfig, started: number, interrupt: Interrupt): Promise<void> {

  const out = path.resolve(o.out ?? `fedpool-train-${id}`);
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);

  const total = config.mode === 'sync' ? config.rounds : config.steps;
  const bar = process.stderr.isTTY ? new SingleBar({ format: 'training [{bar}] {value}/{total} steps | loss {loss} | acc {acc}', stream: process.stderr }) : null;
  bar?.start(total, 0, { loss: '-', acc: '-' });
  // By step: after a coordinator restart the job resumes from its last checkpoint and repeats the later steps.
  const byStep = new Map<number, { line: MetricLine; text: string }>();
  const show = (m: MetricLine): void => {
    const loss = m.loss === null ? '-' : m.loss.toFixed(4);
    const acc = m.accuracy === null ? '-' : m.accuracy.toFixed(4);
    if (bar !== null) bar.update(m.step, { loss, acc });
    else process.stderr.write(`step ${m.step}/${total} loss ${loss} accuracy ${acc}\n`);
  };
  const stopReporting = reportWaits(api, id, 'train');
  try {
    // Every pass over the stream starts at its first line; lines are keyed by step, so a repeat changes nothing.
    const again = `fedpool train --resume ${id}${o.out === undefined ? '' : ` --out ${o.out}`}`;
    await followJob(api, id, 'train', `/api/jobs/${encodeURIComponent(id)}/metrics?follow=1`, () => (value) => {
      const m = value as MetricLine;
      const seen = byStep.get(m.step);
      const text = JSON.stringify(value);
      byStep.set(m.step, { line: m, text });
      if (seen?.text !== text) show(m);
    }, again);
  } finally {
    stopReporting();
    bar?.stop();
    const sorted = [...byStep.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v);
    await writeFile(path.join(out, 'metrics.jsonl'), sorted.map((v) => `${v.text}\n`).join(''));
  }
  const lines = [...byStep.entries()].sort((a, b) => a[0] - b[0]).map(([, v]) => v.line);
  const job = await api.job(id);
  if (job.state !== 'done') {
    const why = interrupt.cancelled ? ' (Ctrl-C)' : job.error ? `: ${job.error}` : '';
    throw new UserError(`fedpool train: job ${id} ended ${job.state}${why} after ${lines.length} of ${total} steps (metrics kept in ${out})`, interrupt.cancelled ? INTERRUPTED_EXIT : 1);
  }
  const bundle = await api.bytes(`/api/jobs/${encodeURIComponent(id)}/model`);
  await writeBundleDir(path.join(out, 'model'), unpackBundle(bundle, `model of job ${id}`).files);

  const last = lines.at(-1);
  const lastEval = [...lines].reverse().find((l) => l.accuracy !== null);
  const summary = {
    job: id,
    steps: lines.length,
    seconds: +((Date.now() - started) / 1000).toFixed(3),
    final_loss: last?.loss ?? null,
    final_accuracy: lastEval?.accuracy ?? null,
    out,
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

async function readConfig(file: string): Promise<TrainConfig> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new UserError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file}: not valid JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  try {
    return parseTrainConfig(json, path.dirname(path.resolve(file)), (base, p) => path.resolve(base, p));
  } catch (e) {
    if (e instanceof ConfigError) throw new UserError(e.message);
    throw e;
  }
}

/** DIR/model/ is written only after training: an occupied one is refused before the job is submitted. */
function checkEmptyModelDir(dir: string): Promise<void> {
  return checkEmptyDir(dir, 'the output model directory', "an earlier run's model?");
}

/**
 * A head over embeddings trains only on workers' own data: the text is embedded by the workers' embedding servers,
 * which this command cannot reach (docs/scorers.md, "Embedding heads"). Central data and eval data are refused.
 */
function refuseCentralEmbedding(config: TrainConfig, manifest: Manifest): void {
  const input = manifest.input;
  if (input.kind !== 'embedding') return;
  const why = `${config.model}: this model reads embeddings of ${input.model}, which only workers fronting that embedding server compute`;
  if (config.data.source === 'central') throw new UserError(`${why}: train it on their own data ("data": {"source": "worker", "name": NAME})`);
  if (config.eval !== undefined) throw new UserError(`${why}: "eval" data cannot be embedded here; leave it out and measure with fedpool score`);
}

async function readModel(dir: string, task: TrainConfig['task']): Promise<{ hash: string; bytes: Uint8Array; manifest: Manifest }> {
  try {
    const files = await readBundleDir(dir);
    const { manifest } = validateBundle(files, dir);
    if (task === 'classify' && manifest.output.kind !== 'classes') throw new UserError(`${dir}: the classify task needs a classifier model (this one is a ${manifest.output.kind} model)`);
    if (task === 'reward-pairs' && manifest.output.kind !== 'reward') throw new UserError(`${dir}: the reward-pairs task needs a reward model (this one is a classifier)`);
    const bytes = packBundle(files);
    return { hash: await bundleHash(bytes), bytes, manifest };
  } catch (e) {
    if (e instanceof ModelError) throw new UserError(e.message);
    throw e;
  }
}

const base64 = (a: Float32Array | Int32Array): string => Buffer.from(a.buffer, a.byteOffset, a.byteLength).toString('base64');

/**
 * A central data file as the columns the coordinator takes: `{"features"|"text", "label"}` lines for classify,
 * `{"prompt", "chosen", "rejected"}` lines for reward-pairs — the line forms of a worker's `--data` file, parsed and
 * featurized by the same code. Every line is checked; the first problem is one line naming file:line.
 */
async function readData(file: string, manifest: Manifest, task: TrainConfig['task']): Promise<Columns> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new UserError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  try {
    const dataset = parseDataset('', file, text);
    const want = task === 'classify' ? 'labelled examples ({"features"|"text", "label"})' : 'preference pairs ({"prompt", "chosen", "rejected"})';
    if ((dataset.kind === 'pairs') !== (task === 'reward-pairs')) throw new UserError(`${file}: task '${task}' needs ${want}`);
    const data = toTrainData(dataset, manifest);
    const dim = manifest.input.dim;
    if (data.kind === 'pairs') return { dim, n: data.chosen.length / dim, chosen: base64(data.chosen), rejected: base64(data.rejected) };
    const classes = manifest.output.kind === 'classes' ? manifest.output.classes : 0;
    const bad = data.labels.findIndex((l) => l >= classes);
    if (bad >= 0) throw new UserError(`${file}: example ${bad + 1} has label ${data.labels[bad]}; the model has ${classes} classes`);
    for (let j = 0; j < data.x.length; j++) {
      if (!Number.isFinite(data.x[j])) throw new UserError(`${file}: example ${Math.floor(j / dim) + 1}: feature ${j % dim} is not a finite float32 number`);
    }
    return { dim, n: data.labels.length, rows: base64(data.x), labels: base64(data.labels) };
  } catch (e) {
    if (e instanceof DatasetError) throw new UserError(e.message);
    throw e;
  }
}
