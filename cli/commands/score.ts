// fedpool score: validate everything locally, upload the model once (content-addressed), submit, then stream the
// results back in input order into the output file.
import { SingleBar } from 'cli-progress';
import { createWriteStream, type WriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { CoordinatorApi, coordinatorApi } from '../api.js';
import { UserError } from '../errors.js';
import { INTERRUPTED_EXIT, Interrupt } from '../interrupt.js';
import { followJob } from '../follow.js';
import { checkWritableFile } from '../out-dir.js';
import { reportWaits } from '../waiting.js';
import { readScoreInput, type ScoreLine } from '../score/input.js';
import { OutputAssembler, planItems, scoredItems, type LineMeta, type OutputLine } from '../score/plan.js';
import { loadModelForSubmit, type ModelInputSpec } from '../score/model.js';
import type { OutputSpec } from '../../shared/model/manifest.js';
import { DEFAULT_BORDA_P, SELECT_MODES, type SelectMode } from '../../shared/scoring/selection.js';

interface ScoreOptions {
  url: string;
  token?: string;
  model?: string;
  scorer?: string;
  logprobs?: boolean;
  input?: string;
  output?: string;
  shardSize: number;
  redundancy: number | 'adaptive';
  agreeTol: number;
  select: 'none' | SelectMode;
  /** certainty-vote's Borda exponent (`--borda-p`). */
  bordaP?: number;
  resume?: string;
  detach?: boolean;
  /** Where --select's choice per group goes (JSONL); default: beside --output. */
  selected?: string;
}

/** What --select chooses per group, and the file it goes to. */
interface Selection {
  mode: 'none' | SelectMode;
  bordaP: number;
  file: string;
}

/** The per-group choices' file: --selected, else the output's name with `.selected.jsonl` (out.jsonl → out.selected.jsonl). */
function selectedFile(output: string, given: string | undefined): string {
  return given ?? `${output.endsWith('.jsonl') ? output.slice(0, -'.jsonl'.length) : output}.selected.jsonl`;
}

/** Items per forward pass on a worker (TF.js defaults to 32, which is several times slower). */
const BATCH_SIZE = 1024;

export async function run(options: Record<string, unknown>): Promise<void> {
  const o = options as unknown as ScoreOptions;
  if (o.output === undefined) throw new UserError('fedpool score: --output FILE is required');
  const api = coordinatorApi(options, 'score');
  if (o.resume !== undefined) {
    if (o.model !== undefined || o.scorer !== undefined || o.input !== undefined) {
      throw new UserError('fedpool score: --resume takes only --output (the job already has its model and input)');
    }
    await checkWritableFile(o.output, 'fedpool score: --output');
    return resume(api, o.resume, o.output, o);
  }
  if (o.model !== undefined && o.scorer !== undefined) throw new UserError('fedpool score: give --model DIR or --scorer NAME, not both');
  if (o.model === undefined && o.scorer === undefined) throw new UserError('fedpool score: --model DIR (a bundle) or --scorer NAME (workers\' inference servers) is required');
  if (o.logprobs === true && o.scorer === undefined) throw new UserError('fedpool score: --logprobs needs --scorer NAME (log-probs come from openai-logprobs workers)');
  if (o.input === undefined) throw new UserError('fedpool score: --input FILE is required');
  await checkWritableFile(o.output, 'fedpool score: --output', o.input);
  const selection: Selection = { mode: o.select, bordaP: o.bordaP ?? DEFAULT_BORDA_P, file: selectedFile(o.output, o.selected) };
  if (selection.mode !== 'none') await checkWritableFile(selection.file, 'fedpool score: --selected', o.input);

  // Everything that can be wrong locally is found before anything is sent.
  const lines = await readScoreInput(o.input);
  let target: { model: string } | { scorer: { model: string; output: 'reward' | 'logprobs' } };
  if (o.scorer !== undefined) {
    const output = o.logprobs === true || LOGPROB_SELECTIONS.has(o.select) ? 'logprobs' : 'reward';
    if (output === 'reward' && LOGPROB_SELECTIONS.has(o.select)) throw new UserError(`fedpool score: --select ${o.select} needs log-probs`);
    const features = lines.find((l) => l.kind === 'features');
    if (features !== undefined) throw new UserError(`${o.input}:${features.line}: --scorer sends text to inference servers, but this line has features`);
    const labelled = lines.find((l) => (l.kind === 'text' || l.kind === 'features') && l.label !== undefined);
    if (labelled !== undefined) throw new UserError(`${o.input}:${labelled.line}: "label" needs a classifier bundle (--model DIR), not a scorer`);
    target = { scorer: { model: o.scorer, output } };
  } else {
    if (LOGPROB_SELECTIONS.has(o.select)) throw new UserError(`fedpool score: --select ${o.select} needs log-probs: use --scorer NAME with openai-logprobs workers`);
    const model = await loadModelForSubmit(o.model ?? '');
    checkCompatible(o.input, lines, model.input);
    checkOutputs(o.input, lines, model.output, o.select);
    await api.ensureBlob(model.hash, model.bytes);
    target = { model: model.hash };
  }
  checkSelectable(lines, o.select);
  const { items, meta, scored } = planItems(lines);

  const started = Date.now();
  const interrupt = new Interrupt('score', o.detach === true);
  try {
    const columns = await api.columnsBody(items);
    // The selection goes with the meta, so --resume makes the same one.
    const select = selection.mode === 'none' ? {} : { select: selection.mode, bordaP: selection.bordaP };
    const { id } = await api.createJob({ kind: 'score', ...target, columns, shardSize: o.shardSize, redundancy: o.redundancy, agreeTol: o.agreeTol, batchSize: BATCH_SIZE, meta: { format: 'fedpool-score/1', lines: meta, ...select } });
    interrupt.submitted(api, id, `fedpool score --resume ${id} --output ${o.output}`);
    process.stderr.write(`fedpool job ${id} submitted\n`);
    await collect(api, id, meta, scored, o.output, selection, started, interrupt);
  } finally {
    interrupt.dispose();
  }
}

/** Selections that rank by log-prob statistics, which only log-prob scorers produce. */
const LOGPROB_SELECTIONS: ReadonlySet<string> = new Set(['mean-logprob', 'self-certainty', 'certainty-vote']);

async function resume(api: CoordinatorApi, id: string, output: string, o: ScoreOptions): Promise<void> {
  const job = await api.job(id);
  const m = (await api.meta(id)) as { format?: unknown; lines?: unknown; select?: unknown; bordaP?: unknown } | null;
  if (job.kind !== 'score' || m?.format !== 'fedpool-score/1' || !Array.isArray(m.lines)) {
    throw new UserError(`fedpool score: job ${id} is not a scoring job submitted by fedpool score`);
  }
  const meta = m.lines as LineMeta[];
  const scored = scoredItems(meta);
  // The selection the job was submitted with, unless this command asks for another.
  const stored = typeof m.select === 'string' && (SELECT_MODES as readonly string[]).includes(m.select) ? (m.select as SelectMode) : 'none';
  const mode = o.select !== 'none' ? o.select : stored;
  const bordaP = o.bordaP ?? (typeof m.bordaP === 'number' && m.bordaP > 0 ? m.bordaP : DEFAULT_BORDA_P);
  const selection: Selection = { mode, bordaP, file: selectedFile(output, o.selected) };
  if (mode !== 'none') await checkWritableFile(selection.file, 'fedpool score: --selected');
  // Ctrl-C leaves a job this command did not submit running, and says how to come back to it.
  const interrupt = new Interrupt('score', true);
  interrupt.submitted(api, id, `fedpool score --resume ${id} --output ${output}`);
  try {
    // Rates count from the job's submission, not from this command's start.
    await collect(api, id, meta, scored, output, selection, Date.parse(job.createdAt), interrupt);
  } finally {
    interrupt.dispose();
  }
}

async function collect(api: CoordinatorApi, id: string, meta: LineMeta[], scored: number, output: string, selection: Selection, started: number, interrupt: Interrupt): Promise<void> {
  const out = await openOutput(output);
  // The bar counts input lines (a pair is one line of two scored items), as the summary's `items` does.
  const bar = process.stderr.isTTY ? new SingleBar({ format: 'scoring [{bar}] {value}/{total} lines | {speed} lines/s | ETA {eta_formatted}', stream: process.stderr, etaBuffer: 50 }) : null;
  bar?.start(meta.length, 0, { speed: '0' });
  const assembler = new OutputAssembler(meta, (line: OutputLine) => out.write(`${JSON.stringify(line)}\n`));
  let received = 0;
  const onResult = (value: unknown): void => {
    const line = value as { score?: unknown; probs?: unknown; logprob_mean?: unknown; perplexity?: unknown; self_certainty?: unknown; disputed?: unknown };
    const malformed = (): UserError => new UserError(`coordinator sent a malformed result line: ${JSON.stringify(value).slice(0, 200)}`);
    if (Array.isArray(line.probs)) {
      // A classifier of C ≥ 3 classes: its C probabilities.
      if (!line.probs.every((p): p is number => typeof p === 'number')) throw malformed();
      assembler.pushClasses(line.probs, line.disputed === true);
      progressed();
      return;
    }
    if (typeof line.score !== 'number') throw malformed();
    // Log-prob jobs carry three statistics per item (docs/scorers.md); reward jobs only the score.
    const { logprob_mean, perplexity, self_certainty } = line;
    const extra = typeof logprob_mean === 'number' && typeof perplexity === 'number' && typeof self_certainty === 'number' ? { logprob_mean, perplexity, self_certainty } : undefined;
    assembler.push(line.score, extra, line.disputed === true);
    progressed();
  };
  const progressed = (): void => {
    received++;
    if (bar !== null && (received % 256 === 0 || received === scored)) {
      const lines = assembler.linesDone;
      bar.update(lines, { speed: Math.round(lines / Math.max(1e-3, (Date.now() - started) / 1000)).toString() });
    }
  };
  const stopReporting = reportWaits(api, id, 'score');
  try {
    // Each pass over the stream (a coordinator restart starts a new one) begins at its first line: skip what arrived.
    const pass = (): ((value: unknown) => void) => {
      let skip = received;
      return (value) => (skip > 0 ? void skip-- : onResult(value));
    };
    await followJob(api, id, 'score', `/api/jobs/${encodeURIComponent(id)}/results?follow=1`, pass, `fedpool score --resume ${id} --output FILE`);
  } finally {
    stopReporting();
    bar?.stop();
    await new Promise<void>((resolve) => out.end(resolve));
  }
  const job = await api.job(id);
  if (job.state !== 'done' || assembler.linesDone !== meta.length) {
    const why = interrupt.cancelled ? ' (Ctrl-C)' : job.error ? `: ${job.error}` : '';
    throw new UserError(`fedpool score: job ${id} ended ${job.state}${why} after ${assembler.linesDone} of ${meta.length} lines (partial output kept in ${output})`, interrupt.cancelled ? INTERRUPTED_EXIT : 1);
  }
  const seconds = (Date.now() - started) / 1000;
  const { selected, ...report } = assembler.summary(selection.mode, { bordaP: selection.bordaP });
  // The choice per group can be tens of thousands of entries: it goes to its own file, the summary says where.
  if (selected !== undefined) await writeFile(selection.file, Object.entries(selected).map(([group, choice]) => `${JSON.stringify({ group, selected: choice })}\n`).join(''));
  const summary = {
    job: id, items: meta.length, scored, seconds: +seconds.toFixed(3), items_per_second: +(meta.length / Math.max(seconds, 1e-9)).toFixed(1),
    ...redundancySummary(job), ...report,
    ...(selected === undefined ? {} : { selected: { mode: selection.mode, groups: Object.keys(selected).length, file: selection.file } }),
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
  if (assembler.disputedLines > 0) {
    throw new UserError(
      `fedpool score: ${assembler.disputedLines} of ${meta.length} lines are disputed: no quorum of workers agreed on their scores (marked "disputed": true in ${output})`,
      DISPUTED_EXIT,
    );
  }
}

/** Exit status of `fedpool score` when the job finished with disputed items (its output and summary are written). */
const DISPUTED_EXIT = 3;

/** With redundancy: replicas run, shards whose replicas disagreed, items no quorum settled (docs/security.md). */
function redundancySummary(job: Record<string, unknown>): { redundancy?: { mode: number | string; replicas: number; disagreements: number; disputed: number } } {
  const mode = job['redundancy'];
  if (mode === 1 || mode === undefined) return {};
  const count = (key: string): number => (typeof job[key] === 'number' ? (job[key] as number) : 0);
  return { redundancy: { mode: typeof mode === 'number' || typeof mode === 'string' ? mode : String(mode), replicas: count('replicas'), disagreements: count('disagreements'), disputed: count('disputed') } };
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
    } else if (l.kind === 'features' && input.kind === 'embedding') {
      // The job goes as text; the workers serving that embedding model embed it (docs/scorers.md, "Embedding heads").
      throw new UserError(`${file}:${l.line}: the model reads embeddings of ${input.model} (embedding:${input.dim}), which its workers compute from prompt and response, but this line has features`);
    } else if (l.kind === 'features') {
      throw new UserError(`${file}:${l.line}: the model takes text:${input.dim} (prompt and response), but this line has features`);
    }
  }
}

/**
 * What the model's output allows: labels need a classifier and must be its classes; a classifier of C ≥ 3 classes
 * gives C probabilities per item, so it scores items only (no pairs or best-of rows) and --select has no score to rank.
 */
function checkOutputs(file: string, lines: readonly ScoreLine[], output: OutputSpec, select: 'none' | SelectMode): void {
  const classes = output.kind === 'classes' ? output.classes : 0;
  for (const l of lines) {
    if ((l.kind === 'pair' || l.kind === 'bestof') && classes > 2) {
      throw new UserError(`${file}:${l.line}: a classifier of ${classes} classes scores items, not pairs (pairs need a reward model or a binary classifier)`);
    }
    if ((l.kind !== 'text' && l.kind !== 'features') || l.label === undefined) continue;
    if (classes === 0) throw new UserError(`${file}:${l.line}: "label" needs a classifier model (this one is a reward model)`);
    if (l.label >= classes) throw new UserError(`${file}:${l.line}: "label" ${l.label} is not a class of this model (0 to ${classes - 1})`);
  }
  if (classes > 2 && select !== 'none') throw new UserError(`fedpool score: --select ${select} ranks one score per item; a classifier of ${classes} classes gives ${classes} probabilities`);
}

/** Selection modes that vote over answers (docs/scoring-reports.md). */
const VOTING_SELECTIONS: ReadonlySet<string> = new Set(['majority', 'weighted-majority', 'certainty-vote']);

function checkSelectable(lines: readonly ScoreLine[], select: 'none' | SelectMode): void {
  if (select === 'none') return;
  // Pairs and best-of-k rows are not group members; every mode selects among grouped item lines.
  const grouped = lines.filter((l) => l.group !== undefined && (l.kind === 'text' || l.kind === 'features'));
  if (grouped.length === 0) throw new UserError(`fedpool score: --select ${select} needs item lines with a "group"`);
  if (VOTING_SELECTIONS.has(select)) {
    const missing = grouped.find((l) => l.answer === undefined);
    if (missing) throw new UserError(`fedpool score: --select ${select} needs an "answer" on every grouped line (line ${missing.line} has none)`);
  }
}
