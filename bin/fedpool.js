#!/usr/bin/env node
// Thin launcher: the CLI is compiled to dist/ by `npm install` (the prepare script).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const entry = new URL('../dist/cli/main.js', import.meta.url);
if (!existsSync(fileURLToPath(entry))) {
  console.error('fedpool: the CLI is not built; run `npm install` (or `npm run build`) in the fedpool folder');
  process.exit(2);
}
const { main } = await import(entry.href);
process.exitCode = await main(process.argv);
