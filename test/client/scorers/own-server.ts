// A tiny node:http server of the test's own, for the answers the fake inference server does not give (nonsense,
// hanging, scripted statuses). Closed in t.teardown.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ExecutionContext } from 'ava';

export interface SeenRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
}

export async function ownServer(
  t: ExecutionContext,
  handler: (req: SeenRequest, res: ServerResponse) => void,
): Promise<{ url: string; seen: SeenRequest[] }> {
  const seen: SeenRequest[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const request = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') };
      seen.push(request);
      handler(request, res);
    });
  });
  return { url: await listen(t, server), seen };
}

/** Listens on a free loopback port, closed (with its connections) by the test's teardown; the base URL. */
async function listen(t: ExecutionContext, server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** A port nothing listens on: bound on port 0, then closed. */
export async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

/**
 * A pass-through proxy to `target` that counts the requests it holds open at once (from arrival to the end of the
 * answer) and records each request's headers: how a test sees the client's concurrency and its Authorization.
 */
export async function countingProxy(
  t: ExecutionContext,
  target: string,
): Promise<{ url: string; maxInFlight: () => number; headers: IncomingMessage['headers'][] }> {
  const to = new URL(target);
  let inFlight = 0;
  let most = 0;
  const headers: IncomingMessage['headers'][] = [];
  const server = createServer((req, res) => {
    inFlight++;
    most = Math.max(most, inFlight);
    headers.push(req.headers);
    let done = false;
    const finish = (): void => {
      if (!done) inFlight--;
      done = true;
    };
    res.on('close', finish);
    const upstream = request({ host: to.hostname, port: to.port, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  return { url: await listen(t, server), maxInFlight: () => most, headers };
}
