import { startCoordinator } from '../../server/coordinator.js';
import { tokenList } from '../../server/auth.js';
import { UserError } from '../errors.js';

function stringOption(options: Record<string, unknown>, key: string, fallback: string): string {
  const v = options[key];
  return typeof v === 'string' ? v : fallback;
}

function numberOption(options: Record<string, unknown>, key: string, fallback: number): number {
  const v = options[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

/**
 * `fedpool coordinator`: runs until SIGTERM/SIGINT, then stops accepting work, persists state,
 * closes every connection and returns (exit 0). A second signal exits at once.
 */
export async function run(options: Record<string, unknown>): Promise<void> {
  let coordinator;
  try {
    coordinator = await startCoordinator({
      host: stringOption(options, 'host', '127.0.0.1'),
      port: numberOption(options, 'port', 7447),
      // Repeated flags arrive as a list; the env vars as one string.
      workerTokens: tokenList(options['workerToken']),
      clientTokens: tokenList(options['clientToken']),
      adminTokens: tokenList(options['adminToken']),
      state: stringOption(options, 'state', './fedpool.db'),
      leaseMs: numberOption(options, 'leaseMs', 30_000),
      metricsPublic: options['metricsPublic'] === true,
    });
  } catch (e) {
    throw new UserError(`fedpool coordinator: ${e instanceof Error ? e.message : String(e)}`);
  }
  process.stdout.write(`fedpool coordinator listening on ${coordinator.url}\n`);

  await new Promise<NodeJS.Signals>((resolve) => {
    const onSignal = (s: NodeJS.Signals): void => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
      // A second signal while shutting down: give up on a clean stop.
      process.once('SIGTERM', () => process.exit(1));
      process.once('SIGINT', () => process.exit(130));
      resolve(s);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
  await coordinator.close();
  // Everything is closed; should a stray handle keep the loop alive, do not hang on exit.
  setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
}
