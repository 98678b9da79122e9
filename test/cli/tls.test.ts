// TLS and token files through the real CLI (issue 13): `fedpool coordinator --tls-cert --tls-key` serves https and
// wss, `fedpool worker --ca --token-file` joins it, `fedpool score --ca --token-file` gets a job scored; without --ca
// the certificate problem is one line, and every flag mistake is one line naming the flag and its file.
import test from 'ava';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { tlsOptions } from '../../cli/commands/coordinator.js';
import { credentials } from '../../cli/credentials.js';
import { UserError } from '../../cli/errors.js';
import { cleanEnv, runFedpool, startFedpool } from '../helpers/processes.js';

let dir = '';
const file = (name: string): string => path.join(dir, name);

test.before(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'fedpool-tls-cli-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-days', '2', '-keyout', file('key.pem'), '-out', file('cert.pem')], { stdio: 'ignore' });
  writeFileSync(file('worker.token'), 'w-secret\n');
  writeFileSync(file('client.token'), '  c-secret \n');
  writeFileSync(file('empty.token'), '\n');
  const lines = Array.from({ length: 6 }, (_, i) => JSON.stringify({ id: `i${i}`, features: [i, 1, 2, 3] }));
  writeFileSync(file('in.jsonl'), `${lines.join('\n')}\n`);
});
test.after.always(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

/** The one line a failed command printed, and that it failed with exit 1 and nothing on stdout. */
function oneLine(t: { is: (a: unknown, b: unknown, m?: string) => void }, r: { status: number | null; stdout: string; stderr: string }, what: string): string {
  t.is(r.status, 1, `${what}: ${r.stderr}`);
  t.is(r.stdout, '', what);
  t.is(r.stderr.split('\n').length, 2, `${what}: one line: ${r.stderr}`);
  return r.stderr.trim();
}

test('an https coordinator, a worker with --ca --token-file, fedpool score --ca --token-file; without --ca, one line', async (t) => {
  const init = runFedpool(['model', 'init', '--out', file('model'), '--input', 'features:4', '--output', 'reward', '--hidden', '4']);
  const coordinator = startFedpool(t, ['coordinator', '--port', '0', '--state', ':memory:', '--tls-cert', file('cert.pem'), '--tls-key', file('key.pem')], {
    env: cleanEnv({ FEDPOOL_WORKER_TOKEN: 'w-secret', FEDPOOL_CLIENT_TOKEN: 'c-secret' }),
  });
  const [, url] = await coordinator.line(/^fedpool coordinator listening on (https:\/\/127\.0\.0\.1:\d+)$/m, { stream: 'stdout', what: 'coordinator start' });
  const worker = startFedpool(t, ['worker', '--url', url!, '--token-file', file('worker.token'), '--ca', file('cert.pem'), '--name', 'w-tls', '--threads', '1', '--backend', 'wasm'], {
    env: cleanEnv({ FEDPOOL_CACHE_DIR: file('cache') }),
  });
  const score = (extra: string[]) => runFedpool(['score', '--url', url!, '--token-file', file('client.token'), '--model', file('model'), '--input', file('in.jsonl'), ...extra]);
  t.is((await init).status, 0);

  // Without --ca: the self-signed certificate is refused before anything is sent, in one line.
  const untrusted = await score(['--output', file('never.jsonl')]);
  t.is(oneLine(t, untrusted, 'score without --ca'), `the coordinator at ${url} presented a certificate that is not trusted (self-signed certificate): give the CA that signed it with --ca FILE`);

  await worker.line(/^fedpool worker w-tls connected to https:/m, { stream: 'stdout', what: 'worker connecting over wss' });
  const scored = await score(['--ca', file('cert.pem'), '--output', file('out.jsonl')]);
  t.is(scored.status, 0, scored.stderr);
  const out = readFileSync(file('out.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; score: number });
  t.deepEqual(out.map((l) => l.id), ['i0', 'i1', 'i2', 'i3', 'i4', 'i5']);
  t.true(out.every((l) => Number.isFinite(l.score)));
});

test('flag mistakes are one line naming the flag and its file', async (t) => {
  // Two through the CLI (exit 1, one line), the rest through the functions the commands call.
  const [half, both] = await Promise.all([
    runFedpool(['coordinator', '--port', '0', '--state', ':memory:', '--tls-cert', file('cert.pem')]),
    runFedpool(['workers', 'unquarantine', 'x', '--url', 'https://127.0.0.1:9', '--token', 'c', '--token-file', file('client.token')]),
  ]);
  t.is(oneLine(t, half, 'only --tls-cert'), 'fedpool coordinator: --tls-cert and --tls-key go together: give both, or neither');
  t.is(oneLine(t, both, '--token and --token-file'), 'fedpool workers unquarantine: give --token (or FEDPOOL_TOKEN) or --token-file, not both');

  const missing = file('missing.pem');
  t.throws(() => tlsOptions({ tlsCert: missing, tlsKey: file('key.pem') }), { instanceOf: UserError, message: `fedpool coordinator: --tls-cert ${missing}: cannot read (ENOENT)` });
  t.throws(() => tlsOptions({ tlsCert: file('key.pem'), tlsKey: file('key.pem') }), { instanceOf: UserError, message: `fedpool coordinator: --tls-cert ${file('key.pem')}: not a PEM certificate` });
  t.throws(() => tlsOptions({ tlsCert: file('cert.pem'), tlsKey: file('cert.pem') }), {
    instanceOf: UserError, message: `fedpool coordinator: --tls-key ${file('cert.pem')}: not a PEM private key (or one that needs a passphrase)`,
  });
  t.deepEqual(tlsOptions({ tlsCert: file('cert.pem'), tlsKey: file('key.pem') }), { cert: readFileSync(file('cert.pem'), 'utf8'), key: readFileSync(file('key.pem'), 'utf8') });
  t.is(tlsOptions({}), undefined);

  t.throws(() => credentials({ tokenFile: file('empty.token') }, 'score'), { instanceOf: UserError, message: `fedpool score: --token-file ${file('empty.token')} is empty` });
  t.throws(() => credentials({ tokenFile: missing }, 'train'), { instanceOf: UserError, message: `fedpool train: --token-file ${missing}: cannot read (ENOENT)` });
  t.throws(() => credentials({ ca: file('key.pem') }, 'worker'), { instanceOf: UserError, message: `fedpool worker: --ca ${file('key.pem')}: not a PEM certificate` });
  t.deepEqual(credentials({ tokenFile: file('client.token'), ca: file('cert.pem') }, 'score'), { token: 'c-secret', ca: readFileSync(file('cert.pem'), 'utf8') });
  t.deepEqual(credentials({ token: 't' }, 'score'), { token: 't', ca: undefined });
});
