// Runs the fedpool CLI from source (through tsx), for tests that spawn it: no build step needed, and a test can
// never exercise a stale dist/. Tests start it through test/helpers/processes.ts (startFedpool, runFedpool).
import { fileURLToPath } from 'node:url';
import { main } from '../../cli/main.js';

export const fedpoolEntry = fileURLToPath(import.meta.url);

if (process.argv[1] === fedpoolEntry) {
  process.exitCode = await main(process.argv);
}
