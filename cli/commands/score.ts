// fedpool score: validate everything locally, upload the model once (content-addressed), submit, then stream the
// results back in input order into the output file.
import { SingleBar } from 'cli-progress';
import { createWriteStream, type WriteStream } from 'node:fs';
import { CoordinatorApi } from '../api.js';
import { UserError } from '../errors.js';
import { readScoreInput, type ScoreLine } from '../score/input.js';
import { OutputAssembler, planItems, type LineMeta, type OutputLine } from '../score/plan.js';
import { loadModelForSubmit, type ModelInputSpec } from '../score/model.js';
import type { SelectMode } from '../../shared/scoring/selection.js';

interface ScoreOptions {
  url: string;
  token?: string;
  model?: string;
  input?: string;
  output?: string;
  shardSize: number;
  redundancy: number;
  select: 'none' | SelectMode;
  resume?: string;
}

/** Items per forward pass on a worker (TF.js defaults to 32, which is several times slower). */
const BATCH_SIZE = 1024;

export async function run(options: Record<string, unknown>): Promise<void> {
  const o = options as unknown as ScoreOptions;
  if (o.output === undefined) throw new UserError('fedpool score: --output FILE is required');
  const api = new CoordinatorApi(o.url, o.token || undefined);
  if (o.resume !== undefined) {
    if (o.model !== undefined || o.input !== undefined) throw new UserError('fedpool score: --resume takes only --output (the job already has its model and input)');
    return resume(api, o.resume, o.output, o.select);
  }
  if (o.model === undefined) throw new UserError('fedpool score: --model DIR is required');
  if (o.input === undefined) throw new UserError('fedpool score: --input FILE is required');

  // Everything that can be wrong locally is found before anything is sent.
  const lines = await readScoreInput(o.input);
  const model = await loadModelForSubmit(o.model);
  checkCompatible(o.input, lines, model.input);
  checkSelectable(lines, o.select);
  const { columns, meta, scored } = planItems(lines);

  await api.ensureBlob(model.hash, model.bytes);
  const started = Date.now();
  const { id } = await api.createJob({ kind: 'score', model: model.hash, columns, shardSize: o.shardSize, redundancy: o.redundancy, batchSize: BATCH_SIZE, meta: { format: 'fedpool-score/1', lines: meta } });
  process.stderr.write(`fedpool job ${id} submitted\n`);
  await collect(api, id, meta, scored, o.output, o.select, started);
}

async function resume(api: CoordinatorApi, id: string, output: string, select: 'none' | SelectMode): Promise<void> {
  const job = await api.job(id);
  const m = (await api.meta(id)) as { format?: unknown; lines?: unknown } | null;
  if (job.kind !== 'score' || m?.format !== 'fedpool-score/1' || !Array.isArray(m.lines)) {
    throw new UserError(`fedpool score: job ${id} is not a scoring job submitted by fedpool score`);
  }
  const meta = m.lines as LineMeta[];
  const scored = meta.reduce((s, l) => s + (l.pair ? 2 : 1), 0);
  await collect(api, id, meta, scored, output, select, Date.now());
}

async function collect(api: CoordinatorApi, id: string, meta: LineMeta[], scored: number, output: string, select: 'none' | SelectMode, started: number): Promise<void> {
  const out = await openOutput(output);
  const bar = process.stderr.isTTY ? new SingleBar({ format: 'scoring [{bar}] {value}/{total} items | {speed} items/s | ETA {eta_formatted}', stream: process.stderr, etaBuffer: 50 }) : null;
  bar?.start(scored, 0, { speed: '0' });
  const assembler = new OutputAssembler(meta, (line: OutputLine) => out.write(`${JSON.stringify(line)}\n`));
  let received = 0;
  try {
    await api.followResults(id, (value) => {
      const score = (value as { score?: unknown }).score;
      if (typeof score !== 'number') throw new UserError(`coordinator sent a malformed result line: ${JSON.stringify(value).slice(0, 200)}`);
      assembler.push(score);
      received++;
      if (bar !== null && (received % 256 === 0 || received === scored)) {
        bar.update(received, { speed: Math.round(received / Math.max(1e-3, (Date.now() - started) / 1000)).toString() });
      }
    });
  } finally {
    bar?.stop();
    await new Promise<void>((resolve) => out.end(resolve));
  }
  const job = await api.job(id);
  if (job.state !== 'done' || assembler.linesDone !== meta.length) {
    const why = job.error ? `: ${job.error}` : '';
    throw new UserError(`fedpool score: job ${id} ended ${job.state}${why} after ${assembler.linesDone} of ${meta.length} lines (partial output kept in ${output})`);
  }
  const seconds = (Date.now() - started) / 1000;
  const summary = { job: id, items: meta.length, scored, seconds: +seconds.toFixed(3), items_per_second: +(scored / Math.max(seconds, 1e-9)).toFixed(1), ...assembler.summary(select) };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

async function openOutput(file: string): Promise<WriteStream> {
  const out = createWriteStream(file);
  await new Promise<void>((resolve, reject) => {
    out.once('open', () => resolve());
    out.once('error', (e: NodeJS.ErrnoException) => reject(new UserError(`fedpool score: cannot write ${file}: ${e.code ?? e.message}`)));
  });
  return out;
}

/** The model's input form must match every line, found before any work is dispatched. */
function checkCompatible(file: string, lines: readonly ScoreLine[], input: ModelInputSpec): void {
  for (const l of lines) {
    if (input.kind === 'features') {
      if (l.kind !== 'features') throw new UserError(`${file}:${l.line}: the model takes features:${input.dim}, but this line has text`);
      if (l.features.length !== input.dim) throw new UserError(`${file}:${l.line}: "features" has ${l.features.length} values, the model takes ${input.dim}`);
    } else if (l.kind === 'features') {
      throw new UserError(`${file}:${l.line}: the model takes text:${input.dim} (prompt and response), but this line has features`);
    }
  }
}

function checkSelectable(lines: readonly ScoreLine[], select: 'none' | SelectMode): void {
  if (select === 'none') return;
  const grouped = lines.filter((l) => l.group !== undefined && l.kind !== 'pair');
  if (grouped.length === 0) throw new UserError(`fedpool score: --select ${select} needs item lines with a "group"`);
  if (select !== 'best-of-n') {
    const missing = grouped.find((l) => l.answer === undefined);
    if (missing) throw new UserError(`fedpool score: --select ${select} needs an "answer" on every grouped line (line ${missing.line} has none)`);
  }
}
