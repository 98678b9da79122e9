// The coordinator serves its own npm package (`GET /fedpool.tgz`), so a machine with only Node.js joins the pool with
// one command: `npx -y --package http://COORD:7447/fedpool.tgz fedpool worker --url http://COORD:7447 --token-file F`.
// The tarball is what `npm pack` makes of the package this process runs from (a checkout or an installed copy), made
// once, on the first request, without running the package's build (it ships the compiled dist/ it has).
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder of the package this file belongs to (its package.json names fedpool), from source or from dist/. */
export function packageRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = path.join(dir, 'package.json');
    if (existsSync(manifest)) {
      const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: unknown };
      if (pkg.name === 'fedpool') return dir;
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the fedpool package folder');
    dir = up;
  }
}

/** How long `npm pack` may take before the request gets an error instead. */
const PACK_TIMEOUT_MS = 120_000;

/** Runs `npm pack` on the package and returns the tarball's bytes (rejects with npm's own message when it fails). */
export function packPackage(root = packageRoot()): Promise<Uint8Array> {
  const out = mkdtempSync(path.join(tmpdir(), 'fedpool-pack-'));
  return new Promise<Uint8Array>((resolve, reject) => {
    // --ignore-scripts: not `prepare` (a TypeScript build the package's users do not have); dist/ is shipped as built.
    execFile('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', out], { cwd: root, timeout: PACK_TIMEOUT_MS, maxBuffer: 16 << 20 }, (error, stdout, stderr) => {
      try {
        if (error !== null) throw new Error(`npm pack failed: ${(stderr || error.message).trim().split('\n').at(-1) ?? ''}`);
        const [packed] = JSON.parse(stdout) as Array<{ filename?: unknown }>;
        if (typeof packed?.filename !== 'string') throw new Error('npm pack printed no file name');
        resolve(new Uint8Array(readFileSync(path.join(out, path.basename(packed.filename)))));
      } catch (e) {
        reject(e instanceof Error ? e : new Error(String(e)));
      } finally {
        rmSync(out, { recursive: true, force: true });
      }
    });
  });
}

/** packPackage, once per process: concurrent and later requests share the first result (a failure is retried). */
export function ownPackage(): () => Promise<Uint8Array> {
  let pending: Promise<Uint8Array> | undefined;
  return () => {
    pending ??= packPackage().catch((e: unknown) => {
      pending = undefined;
      throw e;
    });
    return pending;
  };
}
