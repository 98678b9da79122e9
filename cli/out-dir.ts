// Output folders are checked before anything is submitted: a command never finds out after a job has run that it
// cannot write its results, and never writes over an earlier run's files.
import { readdir } from 'node:fs/promises';
import { UserError } from './errors.js';

/**
 * Resolves when `dir` is missing (it will be created) or an empty directory; otherwise one line naming it. `role` says
 * what the folder is for, `hint` what an occupied one probably holds.
 */
export async function checkEmptyDir(dir: string, role: string, hint = 'an earlier run\'s files?'): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    throw new UserError(`${dir}: cannot use as ${role} (${code ?? String(e)})`);
  }
  if (entries.length > 0) throw new UserError(`${dir}: not empty (${hint}); choose another --out`);
}
