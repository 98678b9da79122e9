// TLS in the coordinator (issue 13), in process: with a certificate and key it serves https and wss; a client that
// trusts the certificate's CA gets in, one that does not is refused with the certificate's problem, and a worker that
// does not trust it stops at once instead of retrying. Without TLS on a non-loopback address the coordinator warns
// that tokens travel in clear text. The CLI flags end to end: test/cli/tls.test.ts.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import pino from 'pino';
import { Agent, fetch as undiciFetch } from 'undici';
import { BlobCache } from '../../client/blob-cache.js';
import { CertificateRefusedError, Worker, type WorkerOptions } from '../../client/worker.js';
import { isLoopback, startCoordinator } from '../../server/coordinator.js';
import { certificateRefusal } from '../../shared/tls.js';
import { FakeScorer } from '../client/worker/fake-coordinator.js';
import { WORKER_TOKEN } from './helpers.js';

const quiet = pino({ level: 'silent' });

/** A self-signed certificate for localhost and 127.0.0.1 (its own CA), made with openssl into a fresh folder. */
function selfSigned(): { cert: string; key: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'fedpool-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-days', '2', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
    return { cert: readFileSync(join(dir, 'cert.pem'), 'utf8'), key: readFileSync(join(dir, 'key.pem'), 'utf8'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
}

/** A pino logger at warn whose lines are collected. */
function capturingLogger(): { logger: pino.Logger; lines: () => string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString('utf8').trim().split('\n').map((l) => (JSON.parse(l) as { msg: string }).msg));
      done();
    },
  });
  return { logger: pino({ level: 'warn' }, stream), lines: () => lines };
}

function worker(url: string, options: Partial<WorkerOptions> = {}): { worker: Worker; done: Promise<void>; connected: Promise<void> } {
  let connected!: () => void;
  const seen = new Promise<void>((resolve) => (connected = resolve));
  const w = new Worker({
    url, token: WORKER_TOKEN, name: 'tls-worker', threads: 1, backend: 'cpu', scorer: new FakeScorer(), blobs: new BlobCache(),
    log: { debug: () => {}, info: () => {}, warn: () => {}, error: () => {} },
    backoff: { initialMs: 20, maxMs: 200 },
    onConnected: () => connected(),
    ...options,
  });
  const done = w.start();
  done.catch(() => {}); // awaited by the test that expects a rejection
  return { worker: w, done, connected: seen };
}

test('with a certificate the coordinator serves https and wss: trusted with its CA, refused without', async (t) => {
  const { cert, key, cleanup } = selfSigned();
  t.teardown(cleanup);
  const { logger, lines } = capturingLogger();
  const c = await startCoordinator({ port: 0, state: ':memory:', logger, workerTokens: [WORKER_TOKEN], clientTokens: ['c'], tls: { cert, key } });
  t.teardown(() => c.close());
  t.is(c.url, `https://127.0.0.1:${c.port}`);
  t.false(lines().some((l) => /TLS/.test(l)), 'no clear-text warning');

  const agent = new Agent({ connect: { ca: cert } });
  t.teardown(() => agent.close());
  const res = await undiciFetch(`${c.url}/healthz`, { dispatcher: agent });
  t.is(res.status, 200);

  // The system's CAs do not include a self-signed certificate: the refusal names the problem.
  const error = await t.throwsAsync(fetch(`${c.url}/healthz`));
  t.is(certificateRefusal(error), 'self-signed certificate');
  const plain = await t.throwsAsync(fetch(`http://127.0.0.1:${c.port}/healthz`), undefined, 'plain http to an https port');
  t.is(certificateRefusal(plain), undefined);

  // A worker that trusts the CA connects over wss; one that does not stops at once with the certificate's problem.
  const trusting = worker(c.url, { ca: cert });
  t.teardown(() => trusting.worker.close());
  await trusting.connected;
  t.is(c.jobs.workers.size, 1);
  const untrusting = worker(c.url);
  t.teardown(() => untrusting.worker.close());
  const refused = await t.throwsAsync(untrusting.done, { instanceOf: CertificateRefusedError });
  t.is(refused?.message, `the coordinator at ${c.url} presented a certificate that is not trusted (self-signed certificate): give the CA that signed it with --ca FILE`);
});

test('without TLS on a non-loopback address the coordinator warns that tokens travel in clear text', async (t) => {
  const open = capturingLogger();
  const c = await startCoordinator({ host: '0.0.0.0', port: 0, state: ':memory:', logger: open.logger, workerTokens: [WORKER_TOKEN], clientTokens: ['c'] });
  await c.close();
  t.deepEqual(open.lines().filter((l) => /TLS/.test(l)), [
    'listening on 0.0.0.0 without TLS: tokens and data travel in clear text (use --tls-cert and --tls-key, or a TLS-terminating proxy)',
  ]);
  const local = capturingLogger();
  const l = await startCoordinator({ host: '127.0.0.1', port: 0, state: ':memory:', logger: local.logger, workerTokens: [WORKER_TOKEN], clientTokens: ['c'] });
  await l.close();
  t.deepEqual(local.lines(), [], 'loopback: no warning at all');

  for (const host of ['127.0.0.1', '127.3.2.1', '::1', '[::1]', 'localhost', 'LocalHost', '::ffff:127.0.0.1']) t.true(isLoopback(host), host);
  for (const host of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.5', 'example.com', '128.0.0.1', 'localhost.example.com']) t.false(isLoopback(host), host);
});
