import { SCORER_APIS, scorerOutputOf, type ScorerApi, type ScorerOutput } from '../../shared/protocol/index.js';
import { classifyAdapter } from './classify.js';
import type { Adapter, ScorerContext } from './common.js';
import { embeddingsAdapter } from './embeddings.js';
import { ScorerError } from './errors.js';
import { HttpClient, defaultSleep, type RequestStats, type RetryPolicy } from './http.js';
import { Limiter } from './limiter.js';
import { DEFAULT_LOGPROBS, DEFAULT_VOCAB, logprobsAdapter } from './logprobs.js';
import { openrlhfAdapter } from './openrlhf.js';
import { teiAdapter } from './tei.js';
import { DEFAULT_TEMPLATE, parseTemplate } from './template.js';

/**
 * Scoring through a reward-model inference server's HTTP API (vLLM, SGLang, TEI, OpenRLHF, OpenAI-compatible
 * completions and embeddings, Ollama). What each API sends and reads, the batching, retries and errors are described
 * in docs/scorers.md.
 */

export { ScorerError } from './errors.js';

// One list of APIs for the whole project: the protocol's (a worker's hello names its API from it).
export { SCORER_APIS, type ScorerApi, type ScorerOutput };

/** The output of each API (the protocol's scorerOutputOf). */
export { scorerOutputOf as outputOf };

export interface TextItem {
  prompt: string;
  response: string;
}

export interface ServerScorerOptions {
  url: string;
  api: ScorerApi;
  model?: string;
  key?: string;
  concurrency?: number;
  batch?: number;
  timeoutMs?: number;
  template?: string;
  logprobs?: number;
  vocab?: number;
  retry?: { tries?: number; maxWaitMs?: number; baseMs?: number; sleep?: (ms: number) => Promise<void>; random?: () => number };
  /** one-line notes (e.g. "learned TEI batch cap 8", "falling back to /pooling", retries) */
  log?: (line: string) => void;
}

export interface ServerScorer {
  readonly api: ScorerApi;
  readonly output: ScorerOutput;
  readonly url: string;
  /** The model it serves: --scorer-model, else what check() learned (throws if read before check() when not given). */
  readonly model: string;
  check(): Promise<void>;
  /** reward: n floats; logprobs: 3n floats (mean log-prob, perplexity, self-certainty per item, interleaved). Throws ScorerError. */
  score(items: readonly TextItem[]): Promise<Float32Array>;
  /** embedding APIs only: { dim, data: n × dim row-major }. */
  embed(texts: readonly string[]): Promise<{ dim: number; data: Float32Array }>;
  /** Stats for benchmarks/logs: requests sent, retries, total request ms. */
  readonly stats: { requests: number; retries: number; requestMs: number };
  close(): Promise<void>;
}

export const DEFAULT_CONCURRENCY = 4;
export const DEFAULT_TIMEOUT_MS = 60_000;
export const DEFAULT_RETRY = { tries: 5, maxWaitMs: 60_000, baseMs: 200, capMs: 10_000 } as const;
/** check(): at most 3 tries, short waits. */
export const CHECK_RETRY = { tries: 3, maxWaitMs: 10_000, baseMs: 100, capMs: 1_000 } as const;

function configError(message: string): ScorerError {
  return new ScorerError(message, { retryable: false });
}

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v < 1) throw configError(`${name} must be a positive integer, got ${String(value)}`);
  return v;
}

/** The base URL as requests use it: no trailing slash; no credentials, query or fragment. */
function baseUrl(raw: string, api: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw configError(`--scorer-url ${JSON.stringify(raw)} is not a URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw configError(`--scorer-url must be http:// or https://, got ${url.protocol}`);
  if (url.username !== '' || url.password !== '') throw configError(`--scorer-url must not hold credentials; give ${api} the key through --scorer-key-env`);
  if (url.search !== '' || url.hash !== '') throw configError(`--scorer-url must not have a query or fragment`);
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

export function createServerScorer(options: ServerScorerOptions): ServerScorer {
  const api = options.api;
  if (!(SCORER_APIS as readonly string[]).includes(api)) throw configError(`unknown --scorer-api ${JSON.stringify(api)} (one of ${SCORER_APIS.join(', ')})`);
  const url = baseUrl(options.url, api);
  const model = options.model === '' ? undefined : options.model;
  if (model === undefined && (api === 'openrlhf' || api === 'ollama-embed')) {
    throw configError(`--scorer-api ${api} needs --scorer-model NAME (the server does not report its model)`);
  }
  if (options.template !== undefined && api !== 'openrlhf' && api !== 'openai-logprobs') {
    throw configError(`--scorer-template applies to openrlhf and openai-logprobs only (${api} servers apply the model's chat template)`);
  }
  const concurrency = positiveInteger('--scorer-concurrency', options.concurrency, DEFAULT_CONCURRENCY);
  const batch = options.batch === undefined ? undefined : positiveInteger('--scorer-batch', options.batch, 1);
  const timeoutMs = positiveInteger('--scorer-timeout-ms', options.timeoutMs, DEFAULT_TIMEOUT_MS);
  const sleep = options.retry?.sleep ?? defaultSleep;
  const random = options.retry?.random ?? Math.random;
  const retry: RetryPolicy = {
    tries: positiveInteger('retry.tries', options.retry?.tries, DEFAULT_RETRY.tries),
    maxWaitMs: Math.max(0, options.retry?.maxWaitMs ?? DEFAULT_RETRY.maxWaitMs),
    baseMs: Math.max(0, options.retry?.baseMs ?? DEFAULT_RETRY.baseMs),
    capMs: DEFAULT_RETRY.capMs,
    sleep,
    random,
  };
  const checkRetry: RetryPolicy = { ...CHECK_RETRY, tries: Math.min(CHECK_RETRY.tries, retry.tries), sleep, random };
  const log = options.log ?? (() => undefined);
  const stats: RequestStats = { requests: 0, retries: 0, requestMs: 0 };
  const http = new HttpClient({
    api,
    url,
    ...(options.key === undefined ? {} : { key: options.key }),
    timeoutMs,
    limiter: new Limiter(concurrency),
    retry,
    log,
    stats,
  });
  const ctx: ScorerContext = { api, http, checkRetry, concurrency, batch, log, model };

  let adapter: Adapter;
  switch (api) {
    case 'vllm-classify':
      adapter = classifyAdapter(ctx);
      break;
    case 'tei':
      adapter = teiAdapter(ctx);
      break;
    case 'openrlhf':
      adapter = openrlhfAdapter(ctx, parseTemplate(options.template ?? DEFAULT_TEMPLATE, api));
      break;
    case 'openai-logprobs': {
      const logprobs = positiveInteger('--scorer-logprobs', options.logprobs, DEFAULT_LOGPROBS);
      const vocab = positiveInteger('--scorer-vocab', options.vocab, DEFAULT_VOCAB);
      if (vocab <= logprobs) throw configError(`--scorer-vocab (${vocab}) must be larger than --scorer-logprobs (${logprobs})`);
      adapter = logprobsAdapter(ctx, { template: parseTemplate(options.template ?? DEFAULT_TEMPLATE, api), logprobs, vocab });
      break;
    }
    case 'openai-embeddings':
      adapter = embeddingsAdapter(ctx, 'openai');
      break;
    case 'ollama-embed':
      adapter = embeddingsAdapter(ctx, 'ollama');
      break;
  }

  let prepared: Promise<void> | undefined;
  const prepare = async (): Promise<void> => {
    prepared ??= adapter.prepare().catch((err: unknown) => {
      prepared = undefined;
      throw err;
    });
    await prepared;
  };
  const open = (): void => {
    if (http.closed) throw http.closedError();
  };
  const output = scorerOutputOf(api);

  return {
    api,
    output,
    url,
    get model(): string {
      if (ctx.model === undefined) throw configError(`${http.where}: the model is not known before check(); call check() or pass --scorer-model`);
      return ctx.model;
    },
    async check() {
      open();
      await adapter.check();
    },
    async score(items) {
      open();
      if (adapter.score === undefined) throw configError(`${http.where}: ${api} gives embeddings; use embed(), not score()`);
      if (items.length === 0) return new Float32Array(0);
      await prepare();
      return adapter.score(items);
    },
    async embed(texts) {
      open();
      if (adapter.embed === undefined) throw configError(`${http.where}: ${api} gives ${output}s; embed() is for the embedding APIs`);
      await prepare();
      return adapter.embed(texts);
    },
    get stats() {
      return { ...stats };
    },
    async close() {
      http.close();
      adapter.close?.();
    },
  };
}
