// The CLI's coordinator client comes back when a busy coordinator says so (503 with Retry-After: its budget for
// request bodies in flight is spent, docs/security.md), and sends the same body again.
import test from 'ava';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CoordinatorApi } from '../../cli/api.js';

test('a 503 with Retry-After is retried with the same body; a 503 without it is an answer', async (t) => {
  const bodies: string[] = [];
  let busy = 1;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      bodies.push(body);
      if (req.url?.startsWith('/api/blobs/') === true) {
        if (busy-- > 0) res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' }).end('{"error":"busy, retry later"}');
        else res.writeHead(201, { 'content-type': 'application/json' }).end('{"hash":"h","size":3}');
      } else if (req.url === '/api/jobs' && busy-- > 0) {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' }).end('{"error":"busy, retry later"}');
      } else if (req.url === '/api/jobs') res.writeHead(201, { 'content-type': 'application/json' }).end('{"id":"j1"}');
      else res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":"shutting down"}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const api = new CoordinatorApi(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 'tok');
  t.deepEqual(await api.createJob({ kind: 'score', n: 1 }), { id: 'j1' });
  t.deepEqual(bodies, ['{"kind":"score","n":1}', '{"kind":"score","n":1}']);
  await t.throwsAsync(api.job('x'), { message: /failed \(503\): shutting down/ });
  // A blob upload (bytes, sent without fetch) comes back the same way.
  busy = 1;
  bodies.length = 0;
  await api.putBlob('a'.repeat(64), new TextEncoder().encode('abc'));
  t.deepEqual(bodies, ['abc', 'abc']);
});
