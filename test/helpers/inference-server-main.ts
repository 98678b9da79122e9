// One fake inference server in a process of its own (for benchmarks that want the server outside the process they
// measure):
//   node --import=tsx test/helpers/inference-server-main.ts --api vllm --model M [--port P] [--max-batch N]
//     [--delay-ms D] [--error-style nested|flat] [--no-classify-route] [--max-logprobs K] [--vocab V] [--embed-dim D]
// Prints exactly one line, `listening on http://127.0.0.1:PORT`, on stdout once it listens; closes on SIGTERM or
// SIGINT and exits 0. A bad argument: one line on stderr, exit 2.
import { parseArgs } from 'node:util';
import { FAKE_APIS, startInferenceServer, type FakeApi, type FakeServerOptions } from './inference-servers.js';

function fail(message: string): never {
  process.stderr.write(`inference-server-main: ${message}\n`);
  process.exit(2);
}

function int(value: string | undefined, name: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < min) fail(`--${name} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
  return n;
}

let values: ReturnType<typeof parse>['values'];
function parse() {
  return parseArgs({
    args: process.argv.slice(2),
    strict: true,
    allowPositionals: false,
    options: {
      api: { type: 'string' },
      model: { type: 'string' },
      port: { type: 'string' },
      'max-batch': { type: 'string' },
      'delay-ms': { type: 'string' },
      'error-style': { type: 'string' },
      'no-classify-route': { type: 'boolean' },
      'max-logprobs': { type: 'string' },
      vocab: { type: 'string' },
      'embed-dim': { type: 'string' },
    },
  });
}
try {
  values = parse().values;
} catch (err) {
  fail(err instanceof Error ? err.message : String(err));
}

const api = values.api;
if (api === undefined || !(FAKE_APIS as readonly string[]).includes(api)) fail(`--api must be one of ${FAKE_APIS.join(', ')}, got ${JSON.stringify(api)}`);
if (values.model === undefined || values.model === '') fail('--model NAME is required');
const style = values['error-style'];
if (style !== undefined && style !== 'nested' && style !== 'flat') fail(`--error-style must be nested or flat, got ${JSON.stringify(style)}`);

const options: FakeServerOptions = { api: api as FakeApi, model: values.model };
const port = int(values.port, 'port', 0);
if (port !== undefined) {
  if (port > 65535) fail(`--port must be at most 65535, got ${port}`);
  options.port = port;
}
const maxBatch = int(values['max-batch'], 'max-batch', 1);
if (maxBatch !== undefined) options.maxBatch = maxBatch;
const delayMs = int(values['delay-ms'], 'delay-ms', 0);
if (delayMs !== undefined) options.delayMs = delayMs;
if (style !== undefined) options.errorStyle = style;
if (values['no-classify-route'] === true) options.classifyRoute = false;
const maxLogprobs = int(values['max-logprobs'], 'max-logprobs', 0);
if (maxLogprobs !== undefined) options.maxLogprobs = maxLogprobs;
const vocab = int(values.vocab, 'vocab', 1);
if (vocab !== undefined) options.vocab = vocab;
const embedDim = int(values['embed-dim'], 'embed-dim', 1);
if (embedDim !== undefined) options.embedDim = embedDim;

let server;
try {
  server = await startInferenceServer(options);
} catch (err) {
  fail(`cannot start: ${err instanceof Error ? err.message : String(err)}`);
}
const running = server;
process.stdout.write(`listening on ${running.url}\n`);

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  void running.close().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`inference-server-main: close failed: ${String(err)}\n`);
      process.exit(1);
    },
  );
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
