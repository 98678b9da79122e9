// fedpool train (issue 4): validate train.json, the model and the data locally, upload the model once, submit a
// training job, follow its metrics per server step, then write DIR/model/, DIR/metrics.jsonl and DIR/config.json.
// So far the coordinator runs the classify task on central data; other configs are refused there with one line.
import { SingleBar } from 'cli-progress';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { readBundleDir, writeBundleDir } from '../../client/scoring/bundle-fs.js';
import { ConfigError, parseTrainConfig, type TrainConfig } from '../../shared/config/train.js';
import { bundleHash, packBundle, unpackBundle, validateBundle } from '../../shared/model/bundle.js';
import { ModelError } from '../../shared/model/errors.js';
import { featurizeText } from '../../shared/model/featurizer.js';
import type { Manifest } from '../../shared/model/manifest.js';
import { CoordinatorApi } from '../api.js';
import { UserError } from '../errors.js';

interface TrainOptions {
  url: string;
  token?: string;
  config: string;
  out?: string;
}

interface Columns {
  dim: number;
  n: number;
  rows: string;
  labels: string;
}

interface MetricLine {
  step: number;
  loss: number | null;
  accuracy: number | null;
  eval_loss?: number | null;
}

export async function run(options: Record<string, unknown>): Promise<void> {
  const o = options as unknown as TrainOptions;
  const config = await readConfig(o.config);
  if (config.task !== 'classify') throw new UserError(`fedpool train: task '${config.task}' is not supported yet (only 'classify')`);
  if (config.data.source !== 'central') throw new UserError("fedpool train: data.source 'worker' is not supported yet (only 'central')");

  const model = await readModel(config.model);
  const data = await readClassifyData(config.data.path, model.manifest);
  const evalData = config.eval === undefined ? undefined : await readClassifyData(config.eval.path, model.manifest);

  const api = new CoordinatorApi(o.url, o.token || undefined);
  await api.ensureBlob(model.hash, model.bytes);
  const started = Date.now();
  const { id } = await api.createJob({ kind: 'train', model: model.hash, config, data, ...(evalData === undefined ? {} : { eval: evalData }) });
  process.stderr.write(`fedpool job ${id} submitted\n`);

  const out = path.resolve(o.out ?? `fedpool-train-${id}`);
  await mkdir(out, { recursive: true });
  await writeFile(path.join(out, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);

  const total = config.mode === 'sync' ? config.rounds : config.steps;
  const bar = process.stderr.isTTY ? new SingleBar({ format: 'training [{bar}] {value}/{total} steps | loss {loss} | acc {acc}', stream: process.stderr }) : null;
  bar?.start(total, 0, { loss: '-', acc: '-' });
  const lines: MetricLine[] = [];
  let text = '';
  try {
    await api.followLines(`/api/jobs/${encodeURIComponent(id)}/metrics?follow=1`, (value) => {
      const m = value as MetricLine;
      lines.push(m);
      text += `${JSON.stringify(value)}\n`;
      const loss = m.loss === null ? '-' : m.loss.toFixed(4);
      const acc = m.accuracy === null ? '-' : m.accuracy.toFixed(4);
      if (bar !== null) bar.update(m.step, { loss, acc });
      else process.stderr.write(`step ${m.step}/${total} loss ${loss} accuracy ${acc}\n`);
    });
  } finally {
    bar?.stop();
    await writeFile(path.join(out, 'metrics.jsonl'), text);
  }
  const job = await api.job(id);
  if (job.state !== 'done') {
    throw new UserError(`fedpool train: job ${id} ended ${job.state}${job.error ? `: ${job.error}` : ''} after ${lines.length} of ${total} steps (metrics kept in ${out})`);
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

async function readModel(dir: string): Promise<{ hash: string; bytes: Uint8Array; manifest: Manifest }> {
  try {
    const files = await readBundleDir(dir);
    const { manifest } = validateBundle(files, dir);
    if (manifest.output.kind !== 'classes') throw new UserError(`${dir}: the classify task needs a classifier model (this one is a ${manifest.output.kind} model)`);
    const bytes = packBundle(files);
    return { hash: await bundleHash(bytes), bytes, manifest };
  } catch (e) {
    if (e instanceof ModelError) throw new UserError(e.message);
    throw e;
  }
}

/** `{"features":[…],"label":k}` or `{"text":"…","label":k}` lines → base64 columns; every line checked. */
async function readClassifyData(file: string, manifest: Manifest): Promise<Columns> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new UserError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
  const dim = manifest.input.dim;
  const classes = manifest.output.kind === 'classes' ? manifest.output.classes : 0;
  const rows: Float32Array[] = [];
  const labels: number[] = [];
  const src = text.split('\n');
  for (let i = 0; i < src.length; i++) {
    const raw = src[i]!.trim();
    if (raw === '') continue;
    const where = `${file}:${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch {
      throw new UserError(`${where}: not valid JSON`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UserError(`${where}: expected an object {"features"|"text", "label"}`);
    const label: unknown = Reflect.get(v, 'label');
    if (typeof label !== 'number' || !Number.isInteger(label) || label < 0 || label >= classes) {
      throw new UserError(`${where}: "label" must be an integer class id in [0, ${classes})`);
    }
    const features: unknown = Reflect.get(v, 'features');
    const t: unknown = Reflect.get(v, 'text');
    let row: Float32Array;
    if (features !== undefined) {
      if (manifest.input.kind !== 'features') throw new UserError(`${where}: the model takes text:${dim}, but this line has features`);
      if (!Array.isArray(features) || features.length !== dim) throw new UserError(`${where}: "features" must be an array of ${dim} numbers`);
      row = new Float32Array(dim);
      for (let j = 0; j < dim; j++) {
        const x: unknown = features[j];
        if (typeof x !== 'number' || !Number.isFinite(x) || !Number.isFinite(Math.fround(x))) throw new UserError(`${where}: features[${j}] is not a finite float32 number`);
        row[j] = x;
      }
    } else if (typeof t === 'string') {
      if (manifest.input.kind !== 'text') throw new UserError(`${where}: the model takes features:${dim}, but this line has text`);
      row = featurizeText({ prompt: '', response: t }, dim);
    } else {
      throw new UserError(`${where}: needs "features" (an array) or "text" (a string)`);
    }
    rows.push(row);
    labels.push(label);
  }
  if (rows.length === 0) throw new UserError(`${file}: no data lines`);
  const flat = new Float32Array(rows.length * dim);
  rows.forEach((r, i) => flat.set(r, i * dim));
  const ints = Int32Array.from(labels);
  return {
    dim,
    n: rows.length,
    rows: Buffer.from(flat.buffer, flat.byteOffset, flat.byteLength).toString('base64'),
    labels: Buffer.from(ints.buffer, ints.byteOffset, ints.byteLength).toString('base64'),
  };
}
