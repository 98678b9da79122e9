import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BundleError } from '../../shared/model/errors.js';
import { MANIFEST_FILE, MODEL_FILE, isSafeBundleName, validateBundle, type BundleFiles } from '../../shared/model/bundle.js';

/**
 * Model bundles on disk. A model directory may hold other files (a README, checkpoints); only fedpool.json,
 * model.json and the weight files model.json names belong to the bundle, so only those are read and hashed.
 */

function isMissing(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

async function readIfPresent(file: string): Promise<Uint8Array | undefined> {
  try {
    return new Uint8Array(await readFile(file));
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

/** The weight file names model.json lists, as far as they are plain names (validateBundle reports the rest). */
function weightPaths(modelJson: Uint8Array | undefined): string[] {
  if (modelJson === undefined) return [];
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(modelJson)) as unknown;
  } catch {
    return [];
  }
  const groups = (json as { weightsManifest?: unknown } | null)?.weightsManifest;
  if (!Array.isArray(groups)) return [];
  return groups.flatMap((g: unknown) => {
    const paths = (g as { paths?: unknown } | null)?.paths;
    return Array.isArray(paths) ? paths.filter((p): p is string => typeof p === 'string' && isSafeBundleName(p)) : [];
  });
}

/** Reads and validates the model bundle in `dir`. Errors are one line starting `model bundle DIR:`. */
export async function readBundleDir(dir: string): Promise<Map<string, Uint8Array>> {
  const where = `model bundle ${dir}`;
  try {
    if (!(await stat(dir)).isDirectory()) throw new BundleError(`${where}: not a directory`);
  } catch (err) {
    if (isMissing(err)) throw new BundleError(`${where}: no such directory`);
    throw err;
  }
  const files = new Map<string, Uint8Array>();
  for (const name of [MANIFEST_FILE, MODEL_FILE]) {
    const bytes = await readIfPresent(path.join(dir, name));
    if (bytes !== undefined) files.set(name, bytes);
  }
  for (const name of weightPaths(files.get(MODEL_FILE))) {
    if (files.has(name)) continue;
    const bytes = await readIfPresent(path.join(dir, ...name.split('/')));
    if (bytes !== undefined) files.set(name, bytes);
  }
  validateBundle(files, where);
  return files;
}

/**
 * Writes bundle files into `dir`, creating it. Refuses a directory that already has entries, so a model is never
 * silently mixed with or written over another one.
 */
export async function writeBundleDir(dir: string, files: BundleFiles): Promise<void> {
  let entries: string[] | undefined;
  try {
    entries = await readdir(dir);
  } catch (err) {
    const code = (err as { code?: unknown } | null)?.code;
    if (code === 'ENOTDIR') throw new BundleError(`${dir}: exists and is not a directory`);
    if (code !== 'ENOENT') throw err;
  }
  if (entries !== undefined && entries.length > 0) {
    throw new BundleError(`${dir}: directory is not empty; choose a new or empty directory`);
  }
  await mkdir(dir, { recursive: true });
  for (const [name, bytes] of files) {
    if (!isSafeBundleName(name)) throw new BundleError(`model bundle: file name ${JSON.stringify(name)} is not a plain relative file name`);
    const file = path.join(dir, ...name.split('/'));
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, bytes, { flag: 'wx' });
  }
}
