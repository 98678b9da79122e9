// fedpool compare A.jsonl B.jsonl [C.jsonl …] [--out DIR]: how much reward models agree on the same data, from
// their `fedpool score` outputs. A table on stdout; with --out, also DIR/compare.json (every number, with its
// counts) and DIR/compare.html (self-contained). The statistics: docs/scoring-reports.md.
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { readScoreFile, modelNames, type ScoreFile } from '../compare/read.js';
import { renderHtml, renderTable } from '../compare/render.js';
import { compareFiles } from '../compare/report.js';
import { UserError } from '../errors.js';

interface CompareOptions {
  files: string[];
  out?: string;
}

export async function run(options: Record<string, unknown>): Promise<void> {
  const o = options as unknown as CompareOptions;
  const given = o.files ?? [];
  if (given.length < 2) throw new UserError(`fedpool compare: give at least two fedpool score output files (got ${given.length})`);
  const names = modelNames(given);
  const files: ScoreFile[] = [];
  for (const [k, file] of given.entries()) files.push({ ...(await readScoreFile(file)), name: names[k] });
  const { report, records } = compareFiles(files);
  if (o.out !== undefined) {
    const dir = o.out;
    try {
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'compare.json'), `${JSON.stringify(report, null, 2)}\n`);
      await writeFile(path.join(dir, 'compare.html'), renderHtml(report, records));
    } catch (e) {
      throw new UserError(`fedpool compare: cannot write to ${dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
  }
  process.stdout.write(renderTable(report));
}
