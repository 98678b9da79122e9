import { createPrivateKey, X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { startCoordinator } from '../../server/coordinator.js';
import { tokenList } from '../../server/auth.js';
import { readFlagFile } from '../credentials.js';
import { UserError } from '../errors.js';
import { startKernelThreads } from '../kernel-threads.js';
import { ownPackage } from '../package-tarball.js';
import { setSharedTensorDecoding } from '../../shared/protocol/codec.js';

/** Decoded float32 tensors from this size on go to shared memory: training updates, not score batches. */
const SHARED_TENSOR_BYTES = 64 * 1024;

function stringOption(options: Record<string, unknown>, key: string, fallback: string): string {
  const v = options[key];
  return typeof v === 'string' ? v : fallback;
}

function numberOption(options: Record<string, unknown>, key: string, fallback: number): number {
  const v = options[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : fallback;
}

/** `--tls-cert FILE --tls-key FILE`: both or neither; each read and checked, so an error names its file. */
export function tlsOptions(options: Record<string, unknown>): { cert: string; key: string } | undefined {
  const certFile = typeof options['tlsCert'] === 'string' ? options['tlsCert'] : undefined;
  const keyFile = typeof options['tlsKey'] === 'string' ? options['tlsKey'] : undefined;
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) throw new UserError('fedpool coordinator: --tls-cert and --tls-key go together: give both, or neither');
  const cert = readFlagFile('coordinator', '--tls-cert', certFile);
  try {
    new X509Certificate(cert);
  } catch {
    throw new UserError(`fedpool coordinator: --tls-cert ${certFile}: not a PEM certificate`);
  }
  const key = readFlagFile('coordinator', '--tls-key', keyFile);
  try {
    createPrivateKey(key);
  } catch {
    throw new UserError(`fedpool coordinator: --tls-key ${keyFile}: not a PEM private key (or one that needs a passphrase)`);
  }
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    throw new UserError(`fedpool coordinator: --tls-key ${keyFile} does not fit --tls-cert ${certFile} (${e instanceof Error ? e.message : String(e)})`);
  }
  return { cert, key };
}

/**
 * `fedpool coordinator`: runs until SIGTERM/SIGINT, then stops accepting work, persists state,
 * closes every connection and returns (exit 0). A second signal exits at once.
 */
export async function run(options: Record<string, unknown>): Promise<void> {
  const tls = tlsOptions(options);
  // Training updates are decoded into shared memory so the helpers read them in place (docs/kernels.md, "Threads").
  // Off unless asked for: on a 2-core machine shared with workers the helper cost more than it saved (docs/kernels.md).
  const helpers = typeof options['aggregationThreads'] === 'number' ? options['aggregationThreads'] : 0;
  try {
    if ((await startKernelThreads(helpers)) !== null) setSharedTensorDecoding(SHARED_TENSOR_BYTES);
  } catch (e) {
    throw new UserError(`fedpool coordinator: cannot start ${helpers} aggregation thread(s): ${e instanceof Error ? e.message : String(e)}`);
  }
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
      ...(typeof options['maxConnections'] === 'number' ? { maxConnections: options['maxConnections'] } : {}),
      ...(typeof options['maxConnectionsPerIp'] === 'number' ? { maxConnectionsPerIp: options['maxConnectionsPerIp'] } : {}),
      ...(tls === undefined ? {} : { tls }),
      ...(options['workerIdentity'] === 'token' ? { workerIdentity: 'token' as const } : {}),
      // --retain-jobs DAYS; absent: keep every job forever.
      ...(typeof options['retainJobs'] === 'number' ? { retainJobsMs: options['retainJobs'] * 86_400_000 } : {}),
      packageTarball: ownPackage(),
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
