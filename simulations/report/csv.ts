// metrics.csv (contract: header `experiment,algorithm,seed,step,time,loss,accuracy`).
//
// Decisions:
// - Fields are quoted per RFC 4180 only where needed (a comma, a double quote, CR or LF inside; quotes doubled).
//   Lines end with LF (not RFC 4180's CRLF), and the file ends with a newline.
// - null → empty field. Non-finite numbers (NaN, ±Infinity: a diverged run) → empty field as well, so every
//   non-empty numeric field parses as a finite number in any reader; a run whose loss is missing from some step on
//   has diverged (the engine already writes null there).
// - Integers (seed, step, integral times) are written exactly; other numbers are rounded to 9 significant digits
//   and written in JavaScript's shortest form (`0.3`, not `0.30000000000000004`; exponent form only below 1e-6 or
//   from 1e21 on, which every CSV reader parses). -0 is written as 0.
import type { MetricRow } from '../types.js';

export const METRICS_HEADER = 'experiment,algorithm,seed,step,time,loss,accuracy';

/** A CSV field for a string: quoted (quotes doubled) when it holds a comma, a quote, CR or LF. */
export function csvString(s: string): string {
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** A CSV field for a number: '' for null or non-finite, integers exactly, others to 9 significant digits. */
export function csvNumber(x: number | null): string {
  if (x === null || !Number.isFinite(x)) return '';
  if (Number.isInteger(x)) return String(x === 0 ? 0 : x);
  const r = Number(x.toPrecision(9));
  return String(r === 0 ? 0 : r);
}

/** One data line (no line terminator). */
export function metricsCsvLine(r: MetricRow): string {
  return [csvString(r.experiment), csvString(r.algorithm), csvNumber(r.seed), csvNumber(r.step), csvNumber(r.time), csvNumber(r.loss), csvNumber(r.accuracy)].join(',');
}

/**
 * The streaming form: yields the header line, then one line per row, each ending in '\n'
 * (e.g. `stream.pipeline(Readable.from(metricsCsvLines(rows)), createWriteStream(file))`).
 */
export function* metricsCsvLines(rows: Iterable<MetricRow>): Generator<string, void, undefined> {
  yield `${METRICS_HEADER}\n`;
  for (const r of rows) yield `${metricsCsvLine(r)}\n`;
}

/** The whole metrics.csv text: header, one line per row in the order given, trailing newline. */
export function metricsCsv(rows: Iterable<MetricRow>): string {
  const parts: string[] = [];
  for (const line of metricsCsvLines(rows)) parts.push(line);
  return parts.join('');
}
