// Output folders are checked before anything is submitted: a command never finds out after a job has run that it
// cannot write its results, and never writes over an earlier run's files.
import { constants } from 'node:fs';
import { access, readdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { UserError } from './errors.js';

/**
 * Resolves when `dir` is missing (it will be created) or an empty directory; otherwise one line naming it. `role` says
 * what the folder is for, `hint` what an occupied one probably holds, `advice` what to do about it.
 */
export async function checkEmptyDir(dir: string, role: string, hint = 'an earlier run\'s files?', advice = 'choose another --out'): Promise<void> {
  let entries: string[];
  try {
    entries = await readdir(dir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    throw new UserError(`${dir}: cannot use as ${role} (${code ?? String(e)})`);
  }
  if (entries.length > 0) throw new UserError(`${dir}: not empty (${hint}); ${advice}`);
}

/**
 * Resolves when `file` can be written: its folder exists and is writable, and the file is missing or writable — and
 * it is not `input` (which the command reads). Checked before a job is submitted; nothing is created or truncated.
 */
export async function checkWritableFile(file: string, flag: string, input?: string): Promise<void> {
  const target = path.resolve(file);
  if (input !== undefined && (await sameFile(target, path.resolve(input)))) throw new UserError(`${flag} ${file} is the input file; write the output somewhere else`);
  try {
    const s = await stat(target);
    if (s.isDirectory()) throw new UserError(`${flag} ${file} is a directory; give a file name`);
    await access(target, constants.W_OK);
    return;
  } catch (e) {
    if (e instanceof UserError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') throw new UserError(`${flag} ${file}: cannot write (${code ?? String(e)})`);
  }
  const dir = path.dirname(target);
  try {
    await access(dir, constants.W_OK);
  } catch (e) {
    throw new UserError(`${flag} ${file}: cannot write in ${dir} (${(e as NodeJS.ErrnoException).code ?? String(e)})`);
  }
}

/** Whether two paths name the same file (the same inode, or the same path when one does not exist). */
async function sameFile(a: string, b: string): Promise<boolean> {
  if (a === b) return true;
  try {
    const [sa, sb] = await Promise.all([stat(a), stat(b)]);
    return sa.dev === sb.dev && sa.ino === sb.ino;
  } catch {
    return false;
  }
}
