// A small, real HTTP server (node:http only) that speaks the request, response and error shapes of the inference
// servers a worker can front — vLLM, SGLang, text-embeddings-inference, OpenRLHF's reward server, OpenAI-compatible
// completions/embeddings and Ollama — as docs/scorers.md describes them, with deterministic
// fake models, so that a test can compute every value the server answers (rewardOf, rewardOfText, tokenize,
// tokenLogprobs, embeddingOf) and can inject the faults a real deployment shows (429 with Retry-After, a server that
// goes away and comes back on the same port, an input the model refuses).
//
// Where the spec is silent, the shapes follow the servers' own sources: unknown routes answer as each server's
// framework does (FastAPI `{"detail":"Not Found"}` for vLLM, SGLang and OpenRLHF; an empty 404 from TEI's axum; gin's
// plain "404 page not found" from Ollama; OpenAI's "Invalid URL"), TEI's axum rejects a body that is not JSON with a
// plain-text 400/422, OpenRLHF (no validation at all) answers any bad body with FastAPI's plain-text 500.
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type FakeApi = 'vllm' | 'sglang' | 'tei' | 'openrlhf' | 'openai' | 'ollama';
export const FAKE_APIS: readonly FakeApi[] = ['vllm', 'sglang', 'tei', 'openrlhf', 'openai', 'ollama'];

export interface FakeServerOptions {
  api: FakeApi;
  /** The model name the server serves (GET /v1/models, TEI's GET /info, Ollama's GET /api/tags). */
  model: string;
  /** Default 0 (any free port). The server listens on 127.0.0.1 only. */
  port?: number;
  /** vllm only: false → POST /classify answers 404 (as an older/other build would), so clients must fall back to POST /pooling. Default true. */
  classifyRoute?: boolean;
  /**
   * vllm/openai/sglang error body: 'nested' {"error":{"message","type","param","code"}} or 'flat'
   * {"object":"error","message","type","param":null,"code"}. Default 'nested' for vllm and openai, 'flat' for sglang
   * (SGLang's own ErrorResponse is the flat one).
   */
  errorStyle?: 'nested' | 'flat';
  /** tei: --max-client-batch-size (default 32): bigger batches get a Validation error "batch size N > maximum allowed batch size M". */
  maxBatch?: number;
  /**
   * tei: the status of a Validation error (batch over maxBatch, badText). Default 422, as the spec says. TEI's own
   * source (router/src/lib.rs, `ErrorType::Validation => StatusCode::PAYLOAD_TOO_LARGE`) answers 413: a client must
   * recognise the batch-size error by its body, not its status; 413 lets a test prove it does.
   */
  teiValidationStatus?: 413 | 422;
  /** tei: false → GET /info omits max_client_batch_size (a proxy in front, or a build that does not report it), so a client learns the cap only from a refused batch. Default true. */
  reportBatch?: boolean;
  /**
   * sglang: 'spec' (default) serves POST /v1/classify exactly like vLLM's /classify (messages or input, use_activation),
   * as the spec describes. 'real' serves what SGLang's source does: POST /v1/classify takes `input` only and answers a
   * softmax over the labels (always [1] for a one-label reward model), and the reward route is the native
   * POST /classify {"text": str | [str]} → {"embedding":[reward],"meta_info":{…}} (a list for a list).
   */
  sglangRoutes?: 'spec' | 'real';
  /** openai/vllm completions: --max-logprobs (default 20): logprobs > this → 400 with the server's message. */
  maxLogprobs?: number;
  /** Vocabulary size of the fake tokenizer/LM (default 1000). */
  vocab?: number;
  /** Embedding dimension for /embed, /v1/embeddings, /api/embed (default 16). */
  embedDim?: number;
  /** Added latency per request (every request, GETs and refusals included), ms (default 0) — for benchmarks. */
  delayMs?: number;
  faults?: {
    /** The scoring/embedding POST whose 1-based sequence number n has n % every429 === 0 answers 429 in the API's error shape, with `Retry-After: <retryAfterS>`. */
    every429?: number;
    /** Default 0. */
    retryAfterS?: number;
    /** After this many scoring/embedding POSTs have been answered (any status), the server closes its listener and destroys every open socket, then listens again on the SAME port after `downMs`. Only once. */
    dieAfter?: number;
    /** Default 300. */
    downMs?: number;
    /** A scoring/embedding request with this substring in any of its texts is refused: 400 in the API's error shape (TEI: its Validation error; OpenRLHF: FastAPI's plain-text 500). */
    badText?: string;
    /** Default "This model's maximum context length is 32 tokens. However, you requested 99 tokens." */
    badTextMessage?: string;
  };
}

export interface RequestRecord {
  method: string;
  /** The path without its query string. */
  path: string;
  /** The parsed JSON body; the raw text when it is not JSON; undefined when there is none. */
  body: unknown;
  /** The status answered; 0 while unanswered (and for ever, when the connection was destroyed first). */
  status: number;
}

export interface FakeServer {
  /** http://127.0.0.1:PORT (no trailing slash). */
  readonly url: string;
  readonly port: number;
  /** Every request, in arrival order. */
  readonly requests: RequestRecord[];
  /** Closes the listener and every socket (also while down after dieAfter); idempotent. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------------------------
// The deterministic fake models. Everything derives from FNV-1a (32-bit, over UTF-8) of the NUL-joined parts,
// finished with murmur3's fmix32 so that similar texts land far apart.

const encoder = new TextEncoder();

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (const byte of encoder.encode(text)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

function fmix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A deterministic number in [0, 1) for these parts. */
function unit(...parts: string[]): number {
  return fmix32(fnv1a(parts.join('\u0000'))) / 2 ** 32;
}

/**
 * The BOS token vLLM's fake tokenizer adds when `add_special_tokens` is not false (the default of /classify's
 * `input` form, of /v1/completions and of /tokenize): a client that forgets `add_special_tokens: false` gets the
 * reward of FAKE_BOS + text, and log-probs with one more token and every offset shifted by its length.
 */
export const FAKE_BOS = '<s>';
const BOS_LENGTH = Array.from(FAKE_BOS).length;

/** vLLM's max_model_len as GET /v1/models and POST /tokenize report it. */
export const FAKE_MAX_MODEL_LEN = 32768;

/** The reward the server gives one (prompt, response) conversation (vLLM/SGLang `messages`, TEI pairs): in [-5, 5). */
export function rewardOf(model: string, prompt: string, response: string): number {
  return -5 + 10 * unit(model, 'conversation', prompt, response);
}

/** The reward for one already-built text (OpenRLHF `query`, vLLM `input` strings, TEI single strings, SGLang's native `text`): in [-5, 5). */
export function rewardOfText(model: string, text: string): number {
  return -5 + 10 * unit(model, 'text', text);
}

/** The activation a one-label classifier applies unless asked for raw scores. */
export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}

function isSpace(ch: string): boolean {
  return /^\s$/u.test(ch);
}

const PIECE = 6;

/**
 * The fake tokenizer. A token is a run of non-whitespace characters together with the ONE whitespace character just
 * before it, if any (GPT-style " word"); a run longer than 6 characters is cut into pieces of 6 (the whitespace goes
 * with the first piece); any other whitespace character is a token of its own. The tokens concatenate to the text.
 * Offsets count Unicode code points, as vLLM's text_offset does (Python's len), not UTF-16 units: they differ from
 * JavaScript string indices after any character outside the BMP.
 */
export function tokenize(text: string): { token: string; offset: number }[] {
  const cps = Array.from(text);
  const out: { token: string; offset: number }[] = [];
  let i = 0;
  while (i < cps.length) {
    const start = i;
    let lead = '';
    if (isSpace(cps[i] as string)) {
      if (i + 1 >= cps.length || isSpace(cps[i + 1] as string)) {
        out.push({ token: cps[i] as string, offset: i });
        i++;
        continue;
      }
      lead = cps[i] as string;
      i++;
    }
    let end = i;
    while (end < cps.length && !isSpace(cps[end] as string)) end++;
    let first = true;
    for (let p = i; p < end; p += PIECE) {
      const piece = cps.slice(p, Math.min(end, p + PIECE)).join('');
      out.push(first ? { token: lead + piece, offset: start } : { token: piece, offset: p });
      first = false;
    }
    i = end;
  }
  return out;
}

/** The log-prob the fake LM gives token `tok` after `prev`: in [-8, -0.01], skewed towards likely (u²), as a real text's tokens are. */
function chosenLogprob(model: string, prev: string, tok: string): number {
  const u = unit(model, 'logprob', prev, tok);
  return -0.01 - 7.99 * u * u;
}

/**
 * The top-k after `prev` when the text's token there is `tok` with log-prob `lp`: fake tokens `tok<n>` (n < vocab,
 * distinct, never `tok` itself) whose probabilities fall geometrically and sum to less than 0.9 (1 − e^lp), merged
 * with `tok` by log-prob, highest first; k entries, plus `tok` when it is not among them (as vLLM does). The fake
 * tokens depend on (model, prev) only, so the top-k for a smaller k is a prefix of the one for a larger k.
 */
function topLogprobs(model: string, prev: string, tok: string, lp: number, k: number, vocab: number): Record<string, number> {
  const rest = -Math.expm1(lp); // 1 − p(tok) > 0
  const decay = 0.3 + 0.5 * unit(model, 'decay', prev);
  const head = Math.log(0.9 * rest * (1 - decay));
  const fakes: [string, number][] = [];
  const used = new Set<number>();
  for (let j = 0; fakes.length < k && used.size < vocab; j++) {
    let n = Math.floor(unit(model, 'candidate', prev, String(j)) * vocab);
    while (used.has(n)) n = (n + 1) % vocab;
    used.add(n);
    const name = `tok${n}`;
    if (name !== tok) fakes.push([name, head + fakes.length * Math.log(decay)]);
  }
  const merged: [string, number][] = [...fakes, [tok, lp] as [string, number]].sort((a, b) => b[1] - a[1]);
  const top = merged.slice(0, k);
  if (!top.some(([name]) => name === tok)) top.push([tok, lp]);
  return Object.fromEntries(top);
}

/**
 * Per-token log-probs the fake LM assigns to the whole text, as an echo completion reports them: the first token
 * has null (and null top-k); `top` has k entries plus the actual token when it is not among them. `bos`: a FAKE_BOS
 * token first (vLLM with add_special_tokens not false), every offset after it shifted by its length.
 * Numeric-looking tokens ("42") are integer-like keys: a JavaScript object lists them first, whatever their rank.
 */
export function tokenLogprobs(
  model: string,
  text: string,
  k: number,
  vocab: number,
  options: { bos?: boolean } = {},
): { tokens: string[]; tokenLogprobs: (number | null)[]; top: (Record<string, number> | null)[]; offsets: number[] } {
  if (!Number.isInteger(k) || k < 0) throw new RangeError(`tokenLogprobs: k must be an integer >= 0, got ${k}`);
  if (!Number.isInteger(vocab) || vocab < 1) throw new RangeError(`tokenLogprobs: vocab must be an integer >= 1, got ${vocab}`);
  const toks = tokenize(text);
  const tokens = toks.map((t) => t.token);
  let offsets = toks.map((t) => t.offset);
  if (options.bos === true) {
    tokens.unshift(FAKE_BOS);
    offsets = [0, ...offsets.map((o) => o + BOS_LENGTH)];
  }
  const lps: (number | null)[] = [];
  const top: (Record<string, number> | null)[] = [];
  tokens.forEach((tok, i) => {
    if (i === 0) {
      lps.push(null);
      top.push(null);
      return;
    }
    const prev = tokens[i - 1] as string;
    const lp = chosenLogprob(model, prev, tok);
    lps.push(lp);
    top.push(topLogprobs(model, prev, tok, lp, k, vocab));
  });
  return { tokens, tokenLogprobs: lps, top, offsets };
}

/** Signed buckets each word of a text adds to in embeddingOf. */
const EMBED_BUCKETS_PER_WORD = 4;

/**
 * The embedding of one text: `dim` numbers, unit L2 norm (every route answers it normalised). A hashed bag of words,
 * so that it carries meaning a linear head can learn (which words mark a good answer): the text's lower-cased words
 * (runs of letters and digits) each add ±1 to EMBED_BUCKETS_PER_WORD buckets, bucket and sign hashed from (model,
 * word, j) — another model name hashes differently, so two models' embeddings of one text disagree, as real models'
 * do. A text without words is one "word": the text itself (a real model embeds the empty string too).
 */
export function embeddingOf(model: string, text: string, dim: number): number[] {
  if (!Number.isInteger(dim) || dim < 1) throw new RangeError(`embeddingOf: dim must be an integer >= 1, got ${dim}`);
  const words = text.toLowerCase().match(/[\p{L}\p{N}]+/gu) ?? [text];
  const v = new Array<number>(dim).fill(0);
  for (const word of words) {
    for (let j = 0; j < EMBED_BUCKETS_PER_WORD; j++) {
      const h = fmix32(fnv1a(`${model}\u0000embedding\u0000${word}\u0000${j}`));
      v[h % dim] = (v[h % dim] as number) + (h >>> 31 === 1 ? -1 : 1);
    }
  }
  const norm = Math.hypot(...v) || 1;
  return v.map((x) => x / norm);
}

/** Token count of one text as the fake tokenizer sees it (plus the BOS when added). */
function tokenCount(text: string, bos = false): number {
  return tokenize(text).length + (bos ? 1 : 0);
}

/** The id /tokenize reports for a token. */
function tokenId(token: string, vocab: number): number {
  if (token === FAKE_BOS) return 1;
  return vocab > 2 ? 2 + (fnv1a(token) % (vocab - 2)) : 0;
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP plumbing.

/** Request bodies past this are refused (413) and not kept. */
export const MAX_REQUEST_BYTES = 8 * 1024 * 1024;
const DEFAULT_BAD_TEXT_MESSAGE = "This model's maximum context length is 32 tokens. However, you requested 99 tokens.";

interface Reply {
  status: number;
  json?: unknown;
  /** A text body (content-type text/plain unless `contentType`); neither json nor text: an empty body. */
  text?: string;
  contentType?: string;
  headers?: Record<string, string>;
}

/** Thrown by a handler to answer `reply` at once (a refused request). */
class Refusal {
  constructor(readonly reply: Reply) {}
}

function refuse(reply: Reply): never {
  throw new Refusal(reply);
}

type Parsed = { ok: true; value: unknown } | { ok: false; error: string };

interface Input {
  method: string;
  path: string;
  raw: string;
  parsed: Parsed;
  /** The media type of content-type, lower case; '' when absent. */
  mediaType: string;
  /** 1-based number of this scoring/embedding POST. */
  n: number;
}

type Handler = (input: Input) => Reply;

interface Route {
  get?: Handler;
  post?: Handler;
  /** A scoring/embedding route: its POSTs count for every429 and dieAfter. */
  scoring: boolean;
}

/** How one API words its errors. */
interface Dialect {
  error(status: number, message: string, extra?: { type?: string; param?: string | null; code?: string | number | null }): Reply;
  /** A body that is not JSON. */
  badJson(detail: string): Reply;
  /** JSON of the wrong shape (request validation). */
  badShape(detail: string): Reply;
  noRoute(method: string, path: string): Reply;
  noMethod(method: string, path: string): Reply;
  overloaded(path: string): Reply;
  tooLarge(): Reply;
  /** A scoring request whose text the model refuses (faults.badText). */
  badText(message: string, path: string): Reply;
}

const PHRASES: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  405: 'Method Not Allowed',
  413: 'Request Entity Too Large',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Entity',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

const phrase = (status: number): string => PHRASES[status] ?? `HTTP ${status}`;

/** vLLM, SGLang (FastAPI: unknown routes get {"detail": …}) and OpenAI (its own "Invalid URL"). */
function openAiDialect(flavor: 'vllm' | 'sglang' | 'openai', style: 'nested' | 'flat'): Dialect {
  const error: Dialect['error'] = (status, message, extra = {}) => {
    const type =
      extra.type ??
      (flavor === 'openai'
        ? status === 429
          ? 'requests'
          : status >= 500
            ? 'server_error'
            : 'invalid_request_error'
        : status === 400
          ? 'BadRequestError'
          : status === 404
            ? 'NotFoundError'
            : status >= 500
              ? 'InternalServerError'
              : phrase(status));
    const param = extra.param ?? null;
    const code = extra.code !== undefined ? extra.code : flavor === 'openai' ? null : status;
    const json = style === 'nested' ? { error: { message, type, param, code } } : { object: 'error', message, type, param, code };
    return { status, json };
  };
  const fastApi = flavor !== 'openai';
  return {
    error,
    badJson: (detail) =>
      flavor === 'openai'
        ? error(400, `We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.) ${detail}`)
        : error(400, `[{'type': 'json_invalid', 'loc': ('body', 0), 'msg': 'JSON decode error', 'ctx': {'error': '${detail}'}}]`, { type: phrase(400) }),
    badShape: (detail) => error(400, detail, fastApi ? { type: phrase(400) } : {}),
    noRoute: (method, path) => (fastApi ? { status: 404, json: { detail: 'Not Found' } } : error(404, `Invalid URL (${method} ${path})`)),
    noMethod: (method, path) => (fastApi ? { status: 405, json: { detail: 'Method Not Allowed' } } : error(404, `Invalid URL (${method} ${path})`)),
    overloaded: () =>
      flavor === 'openai'
        ? error(429, 'Rate limit reached for requests. Please try again later.', { type: 'requests', code: 'rate_limit_exceeded' })
        : error(429, 'Too Many Requests', { type: phrase(429) }),
    tooLarge: () => error(413, `Request body larger than ${MAX_REQUEST_BYTES} bytes`, fastApi ? { type: phrase(413) } : {}),
    badText: (message) => error(400, message),
  };
}

/** text-embeddings-inference: {"error","error_type"}; axum's own rejections are plain text. */
function teiDialect(validationStatus: 413 | 422): Dialect {
  const compat = (path: string): boolean => path === '/v1/embeddings';
  const error: Dialect['error'] = (status, message, extra = {}) => ({ status, json: { error: message, error_type: extra.type ?? 'Validation' } });
  return {
    error,
    badJson: (detail) => ({ status: 400, text: `Failed to parse the request body as JSON: ${detail}` }),
    badShape: (detail) => ({ status: 422, text: `Failed to deserialize the JSON body into the target type: ${detail}` }),
    noRoute: () => ({ status: 404 }),
    noMethod: () => ({ status: 405 }),
    overloaded: (path) =>
      compat(path)
        ? { status: 429, json: { message: 'Model is overloaded', code: 429, type: 'Overloaded' } }
        : { status: 429, json: { error: 'Model is overloaded', error_type: 'Overloaded' } },
    tooLarge: () => ({ status: 413, text: 'Failed to buffer the request body: length limit exceeded' }),
    badText: (message, path) =>
      compat(path)
        ? { status: validationStatus, json: { message, code: validationStatus, type: 'Validation' } }
        : error(validationStatus, message, { type: 'Validation' }),
  };
}

const INTERNAL_ERROR: Reply = { status: 500, text: 'Internal Server Error' };

/** OpenRLHF's serve_rm: FastAPI with no validation — any failure is the plain-text 500. */
function openRlhfDialect(): Dialect {
  return {
    error: (status, message) => (status >= 500 ? INTERNAL_ERROR : { status, json: { detail: message } }),
    badJson: () => INTERNAL_ERROR,
    badShape: () => INTERNAL_ERROR,
    noRoute: () => ({ status: 404, json: { detail: 'Not Found' } }),
    noMethod: () => ({ status: 405, json: { detail: 'Method Not Allowed' } }),
    overloaded: () => ({ status: 429, json: { detail: 'Too Many Requests' } }),
    tooLarge: () => ({ status: 413, json: { detail: 'Request Entity Too Large' } }),
    badText: () => INTERNAL_ERROR,
  };
}

/** Ollama (gin): {"error": "…"}; unknown routes and methods are gin's plain 404. */
function ollamaDialect(): Dialect {
  const error: Dialect['error'] = (status, message) => ({ status, json: { error: message } });
  const notFound: Reply = { status: 404, text: '404 page not found' };
  return {
    error,
    badJson: (detail) => error(400, detail),
    badShape: (detail) => error(400, detail),
    noRoute: () => notFound,
    noMethod: () => notFound,
    overloaded: () => error(429, 'server busy, please try again.  maximum pending requests exceeded'),
    tooLarge: () => error(413, 'http: request body too large'),
    badText: (message) => error(400, message),
  };
}

// ---------------------------------------------------------------------------------------------------------------
// Small validators (a failed one refuses with the dialect's badShape).

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isStringArray(value: unknown): value is string[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

function present(body: Record<string, unknown>, key: string): boolean {
  return body[key] !== undefined && body[key] !== null;
}

interface Settings {
  api: FakeApi;
  model: string;
  port: number;
  classifyRoute: boolean;
  errorStyle: 'nested' | 'flat';
  maxBatch: number;
  teiValidationStatus: 413 | 422;
  reportBatch: boolean;
  sglangRoutes: 'spec' | 'real';
  maxLogprobs: number;
  vocab: number;
  embedDim: number;
  delayMs: number;
  every429: number | undefined;
  retryAfterS: number;
  dieAfter: number | undefined;
  downMs: number;
  badText: string | undefined;
  badTextMessage: string;
}

function positiveInt(value: number | undefined, fallback: number, what: string, min = 1): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < min) throw new RangeError(`startInferenceServer: ${what} must be an integer >= ${min}, got ${value}`);
  return value;
}

function settingsOf(options: FakeServerOptions): Settings {
  if (!FAKE_APIS.includes(options.api)) throw new RangeError(`startInferenceServer: unknown api ${JSON.stringify(options.api)}`);
  if (typeof options.model !== 'string' || options.model === '') throw new RangeError('startInferenceServer: model must be a non-empty string');
  const faults = options.faults ?? {};
  return {
    api: options.api,
    model: options.model,
    port: positiveInt(options.port, 0, 'port', 0),
    classifyRoute: options.classifyRoute ?? true,
    errorStyle: options.errorStyle ?? (options.api === 'sglang' ? 'flat' : 'nested'),
    maxBatch: positiveInt(options.maxBatch, 32, 'maxBatch'),
    teiValidationStatus: options.teiValidationStatus ?? 422,
    reportBatch: options.reportBatch ?? true,
    sglangRoutes: options.sglangRoutes ?? 'spec',
    maxLogprobs: positiveInt(options.maxLogprobs, 20, 'maxLogprobs', 0),
    vocab: positiveInt(options.vocab, 1000, 'vocab'),
    embedDim: positiveInt(options.embedDim, 16, 'embedDim'),
    delayMs: positiveInt(options.delayMs, 0, 'delayMs', 0),
    every429: faults.every429 === undefined ? undefined : positiveInt(faults.every429, 1, 'faults.every429'),
    retryAfterS: positiveInt(faults.retryAfterS, 0, 'faults.retryAfterS', 0),
    dieAfter: faults.dieAfter === undefined ? undefined : positiveInt(faults.dieAfter, 1, 'faults.dieAfter'),
    downMs: positiveInt(faults.downMs, 300, 'faults.downMs', 0),
    badText: faults.badText === undefined || faults.badText === '' ? undefined : faults.badText,
    badTextMessage: faults.badTextMessage ?? DEFAULT_BAD_TEXT_MESSAGE,
  };
}

function dialectOf(s: Settings): Dialect {
  switch (s.api) {
    case 'vllm':
    case 'sglang':
    case 'openai':
      return openAiDialect(s.api, s.errorStyle);
    case 'tei':
      return teiDialect(s.teiValidationStatus);
    case 'openrlhf':
      return openRlhfDialect();
    case 'ollama':
      return ollamaDialect();
  }
}

const now = (): number => Math.floor(Date.now() / 1000);

const usage = (tokens: number): Record<string, unknown> => ({ prompt_tokens: tokens, total_tokens: tokens, completion_tokens: 0, prompt_tokens_details: null });

/** The route table of one server. */
function routesOf(s: Settings, d: Dialect): Map<string, Route> {
  const routes = new Map<string, Route>();

  /** The JSON body, or the dialect's refusal. */
  const json = (input: Input): unknown => (input.parsed.ok ? input.parsed.value : refuse(d.badJson(input.parsed.error)));
  const record = (input: Input, what: string): Record<string, unknown> => {
    const body = json(input);
    return isRecord(body) ? body : refuse(d.badShape(`${what}: Input should be a valid dictionary or object to extract fields from`));
  };
  const refuseBadText = (texts: readonly string[], path: string): void => {
    if (s.badText !== undefined && texts.some((t) => t.includes(s.badText as string))) refuse(d.badText(s.badTextMessage, path));
  };
  /** vLLM-style model check: an absent model is the served one; another name is a 404. */
  const checkModel = (body: Record<string, unknown>): void => {
    const model = body.model;
    if (model === undefined || model === null) return;
    if (typeof model !== 'string') refuse(d.badShape('model: Input should be a valid string'));
    if (model === s.model) return;
    if (s.api === 'openai') refuse(d.error(404, `The model \`${model}\` does not exist or you do not have access to it.`, { param: 'model', code: 'model_not_found' }));
    refuse(d.error(404, `The model \`${model}\` does not exist.`, { param: 'model' }));
  };
  /** vLLM's validate_json_request on every POST route. */
  const jsonOnly = (input: Input): void => {
    if (s.api === 'vllm' && input.mediaType !== 'application/json') refuse(d.badShape("Unsupported Media Type: Only 'application/json' is allowed"));
  };
  const optionalBool = (body: Record<string, unknown>, key: string): boolean | undefined => {
    const v = body[key];
    if (v === undefined || v === null) return undefined;
    return typeof v === 'boolean' ? v : refuse(d.badShape(`${key}: Input should be a valid boolean`));
  };

  const models = (owner: string): Handler => () => ({
    status: 200,
    json: {
      object: 'list',
      data: [{ id: s.model, object: 'model', created: now(), owned_by: owner, root: s.model, parent: null, max_model_len: FAKE_MAX_MODEL_LEN, permission: [] }],
    },
  });
  const emptyOk: Handler = () => ({ status: 200 });

  /** One classifier result per text or conversation: its raw reward, its texts (for badText), its token count. */
  interface Scored {
    raw: number;
    texts: string[];
    tokens: number;
  }

  const conversation = (messages: unknown): Scored => {
    if (!Array.isArray(messages) || !messages.every((m) => isRecord(m) && typeof m.role === 'string' && typeof m.content === 'string')) {
      refuse(d.badShape('messages: each message must be an object with a string `role` and a string `content`'));
    }
    const list = messages as { role: string; content: string }[];
    const [user, assistant] = list;
    if (list.length !== 2 || user?.role !== 'user' || assistant?.role !== 'assistant') {
      refuse(d.error(400, `this fake server scores one conversation per request: [{"role":"user",…},{"role":"assistant",…}], got roles ${JSON.stringify(list.map((m) => m.role))}`));
    }
    return { raw: rewardOf(s.model, user.content, assistant.content), texts: [user.content, assistant.content], tokens: tokenCount(user.content) + tokenCount(assistant.content) + 4 };
  };

  const strings = (value: unknown, key: string): string[] => {
    if (typeof value === 'string') return [value];
    if (isStringArray(value)) {
      if (value.length === 0) refuse(d.error(400, 'Input cannot be empty'));
      return value;
    }
    return refuse(d.badShape(`${key}: this fake server takes a string or a list of strings`));
  };

  /** vLLM's /classify and /pooling (and SGLang's /v1/classify in 'spec' mode). */
  const classify = (kind: 'classify' | 'pooling'): Handler => (input) => {
    jsonOnly(input);
    const body = record(input, kind === 'pooling' ? 'PoolingRequest' : 'ClassificationRequest');
    checkModel(body);
    if (kind === 'pooling' && present(body, 'task') && body.task !== 'classify') {
      refuse(d.error(400, `Unsupported task: ${JSON.stringify(body.task)}. Supported tasks: ['classify']`));
    }
    const activation = optionalBool(body, 'use_activation') !== false;
    const addSpecial = optionalBool(body, 'add_special_tokens');
    let items: Scored[];
    if (present(body, 'messages') && present(body, 'input')) refuse(d.badShape('give either `messages` or `input`, not both'));
    if (present(body, 'messages')) items = [conversation(body.messages)];
    else if (present(body, 'input')) {
      const bos = addSpecial !== false; // the `input` form's add_special_tokens defaults to true
      items = strings(body.input, 'input').map((text) => ({ raw: rewardOfText(s.model, bos ? FAKE_BOS + text : text), texts: [text], tokens: tokenCount(text, bos) }));
    } else refuse(d.badShape('Field required: `messages` (one conversation) or `input` (a list of texts)'));
    refuseBadText(items.flatMap((i) => i.texts), input.path);
    const value = (raw: number): number => (activation ? sigmoid(raw) : raw);
    const tokens = items.reduce((sum, i) => sum + i.tokens, 0);
    const data =
      kind === 'pooling'
        ? items.map((item, index) => ({ index, object: 'pooling', data: [value(item.raw)] }))
        : items.map((item, index) => ({ index, label: 'LABEL_0', probs: [value(item.raw)], num_classes: 1 }));
    return { status: 200, json: { id: `${kind === 'pooling' ? 'pool' : 'classify'}-${input.n}`, object: 'list', created: now(), model: s.model, data, usage: usage(tokens) } };
  };

  /** SGLang's real /v1/classify: `input` only, a softmax over the labels (one label: always 1). */
  const sglangV1Classify: Handler = (input) => {
    const body = record(input, 'ClassifyRequest');
    if (!present(body, 'input')) refuse(d.badShape("1 validation error for ClassifyRequest\ninput\n  Field required [type=missing, input_value=" + JSON.stringify(body).slice(0, 80) + ', input_type=dict]'));
    const texts = typeof body.input === 'string' ? [body.input] : isStringArray(body.input) ? body.input : refuse(d.error(400, 'this fake server takes `input` as a string or a list of strings'));
    if (texts.length === 0) refuse(d.error(400, 'Input cannot be empty'));
    const blank = texts.findIndex((t) => t.trim() === '');
    if (blank >= 0) refuse(d.error(400, typeof body.input === 'string' ? 'Input cannot be empty or whitespace only' : `Input at index ${blank} cannot be empty or whitespace only`));
    refuseBadText(texts, input.path);
    const data = texts.map((_text, index) => ({ index, label: 'LABEL_0', probs: [1], num_classes: 1 }));
    const tokens = texts.reduce((sum, t) => sum + tokenCount(t), 0);
    return { status: 200, json: { id: `classify-${input.n}`, object: 'list', created: now(), model: s.model, data, usage: usage(tokens) } };
  };

  /** SGLang's native /classify (EmbeddingReqInput): the raw reward as a one-number "embedding". */
  const sglangNativeClassify: Handler = (input) => {
    const body = record(input, 'EmbeddingReqInput');
    const native = (status: number, message: string): Reply => ({ status, json: { error: { message } } });
    if (!present(body, 'text')) refuse(native(400, 'Either text, input_ids or input_embeds should be provided.'));
    const single = typeof body.text === 'string';
    const texts = single ? [body.text as string] : isStringArray(body.text) ? body.text : refuse(native(400, 'this fake server takes `text` as a string or a list of strings'));
    if (texts.length === 0) refuse(native(400, 'text cannot be empty'));
    if (s.badText !== undefined && texts.some((t) => t.includes(s.badText as string))) refuse(native(400, s.badTextMessage));
    const results = texts.map((t, i) => ({
      embedding: [rewardOfText(s.model, t)],
      meta_info: { id: `${input.n.toString(16).padStart(8, '0')}${i.toString(16).padStart(4, '0')}`, finish_reason: { type: 'length', length: 0 }, prompt_tokens: tokenCount(t), e2e_latency: 0 },
    }));
    return { status: 200, json: single ? results[0] : results };
  };

  /** POST /v1/completions: echo + max_tokens 0 scoring only. */
  const completions: Handler = (input) => {
    jsonOnly(input);
    const body = record(input, 'CompletionRequest');
    checkModel(body);
    if (!present(body, 'prompt')) refuse(d.badShape('prompt: Field required'));
    const prompts = typeof body.prompt === 'string' ? [body.prompt] : isStringArray(body.prompt) && body.prompt.length > 0 ? body.prompt : refuse(d.error(400, 'this fake server takes `prompt` as a string or a non-empty list of strings'));
    if (body.stream === true) refuse(d.error(400, 'this fake server does not stream'));
    if (body.echo !== true || body.max_tokens !== 0) {
      refuse(d.error(400, `this fake server only scores prompts: send "echo": true and "max_tokens": 0 (got echo ${JSON.stringify(body.echo)}, max_tokens ${JSON.stringify(body.max_tokens)})`));
    }
    let k: number | null = null;
    if (present(body, 'logprobs')) {
      const asked = body.logprobs;
      if (typeof asked !== 'number' || !Number.isInteger(asked)) refuse(d.badShape('logprobs: Input should be a valid integer'));
      if (asked < -1) refuse(d.error(400, '`logprobs` must be a positive value.', { param: 'logprobs' }));
      const wanted = asked === -1 ? s.vocab : asked;
      if (wanted > s.maxLogprobs) {
        refuse(
          s.api === 'openai'
            ? d.error(400, `Invalid value for 'logprobs': must be less than or equal to ${s.maxLogprobs}.`, { param: 'logprobs', code: 'invalid_value' })
            : d.error(400, `Requested sample logprobs of ${wanted}, which is greater than max allowed: ${s.maxLogprobs}`),
        );
      }
      k = wanted;
    }
    // vLLM's completions add special tokens unless told not to; OpenAI's echo has no BOS.
    const bos = s.api === 'vllm' && optionalBool(body, 'add_special_tokens') !== false;
    refuseBadText(prompts, input.path);
    let tokens = 0;
    const choices = prompts.map((prompt, index) => {
      const lp = tokenLogprobs(s.model, prompt, k ?? 0, s.vocab, { bos });
      if (lp.tokens.length === 0) refuse(d.error(400, 'The decoder prompt cannot be empty'));
      tokens += lp.tokens.length;
      const logprobs = k === null ? null : { text_offset: lp.offsets, token_logprobs: lp.tokenLogprobs, tokens: lp.tokens, top_logprobs: lp.top };
      return s.api === 'vllm'
        ? { index, text: prompt, logprobs, finish_reason: 'length', stop_reason: null, prompt_logprobs: null }
        : { index, text: prompt, logprobs, finish_reason: 'length' };
    });
    return { status: 200, json: { id: `cmpl-${input.n}`, object: 'text_completion', created: now(), model: s.model, choices, usage: usage(tokens) } };
  };

  /** POST /tokenize (vLLM). */
  const tokenizeRoute: Handler = (input) => {
    jsonOnly(input);
    const body = record(input, 'TokenizeRequest');
    checkModel(body);
    if (typeof body.prompt !== 'string') refuse(d.badShape('prompt: Field required (this fake server tokenizes a string prompt)'));
    const bos = optionalBool(body, 'add_special_tokens') !== false;
    const toks = [...(bos ? [FAKE_BOS] : []), ...tokenize(body.prompt).map((t) => t.token)];
    return { status: 200, json: { count: toks.length, max_model_len: FAKE_MAX_MODEL_LEN, tokens: toks.map((t) => tokenId(t, s.vocab)), token_strs: null } };
  };

  const encode = (vector: number[], format: string): number[] | string =>
    format === 'base64' ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector;

  /** POST /v1/embeddings: OpenAI's shape (vLLM, OpenAI) or TEI's OpenAI-compatible one (flat errors). */
  const embeddings = (flavor: 'openai' | 'tei'): Handler => (input) => {
    jsonOnly(input);
    const tei = flavor === 'tei';
    const compatError = (status: number, message: string, type: string): Reply => ({ status, json: { message, code: status, type } });
    const body = record(input, 'EmbeddingRequest');
    if (!tei) checkModel(body);
    if (!present(body, 'input')) refuse(tei ? d.badShape('missing field `input`') : d.badShape('input: Field required'));
    const texts =
      typeof body.input === 'string' ? [body.input] : isStringArray(body.input) ? body.input : refuse(tei ? d.badShape('input: data did not match any variant of untagged enum Input') : d.error(400, 'this fake server takes `input` as a string or a list of strings'));
    if (texts.length === 0) refuse(tei ? compatError(400, 'Input cannot be empty', 'Empty') : d.error(400, 'Input cannot be empty'));
    if (tei && texts.length > s.maxBatch) refuse(compatError(s.teiValidationStatus, `batch size ${texts.length} > maximum allowed batch size ${s.maxBatch}`, 'Validation'));
    const format = body.encoding_format ?? 'float';
    if (format !== 'float' && format !== 'base64') refuse(tei ? d.badShape('encoding_format: unknown variant') : d.error(400, `encoding_format: ${JSON.stringify(format)} is not one of 'float', 'base64'`));
    refuseBadText(texts, input.path);
    const data = texts.map((t, index) => ({ object: 'embedding', embedding: encode(embeddingOf(s.model, t, s.embedDim), format), index }));
    const tokens = texts.reduce((sum, t) => sum + tokenCount(t), 0);
    return {
      status: 200,
      json: tei
        ? { object: 'list', data, model: s.model, usage: { prompt_tokens: tokens, total_tokens: tokens } }
        : { id: `embd-${input.n}`, object: 'list', created: now(), model: s.model, data, usage: usage(tokens) },
    };
  };

  /** TEI's `inputs` of /predict: one sequence (a string, or a pair [a, b]) or a batch of them. */
  type Sequence = string | [string, string];
  const isPair = (v: unknown): v is [string, string] => Array.isArray(v) && v.length === 2 && typeof v[0] === 'string' && typeof v[1] === 'string';
  const teiBatch = (n: number): void => {
    if (n === 0) refuse(d.error(400, 'Input cannot be empty', { type: 'Empty' }));
    if (n > s.maxBatch) refuse(d.error(s.teiValidationStatus, `batch size ${n} > maximum allowed batch size ${s.maxBatch}`, { type: 'Validation' }));
  };

  const predict: Handler = (input) => {
    if (input.mediaType !== 'application/json') refuse({ status: 415, text: 'Expected request with `Content-Type: application/json`' });
    const body = record(input, 'PredictRequest');
    if (!('inputs' in body)) refuse(d.badShape('missing field `inputs`'));
    const inputs = body.inputs;
    const raw = body.raw_scores ?? false;
    if (typeof raw !== 'boolean') refuse(d.badShape('raw_scores: invalid type, expected a boolean'));
    let single: boolean;
    let sequences: Sequence[];
    if (typeof inputs === 'string') [single, sequences] = [true, [inputs]];
    else if (isPair(inputs)) [single, sequences] = [true, [inputs]]; // ["Q", "A"] is ONE pair, not a batch of two
    else if (Array.isArray(inputs) && inputs.every((x) => typeof x === 'string' || isPair(x))) [single, sequences] = [false, inputs as Sequence[]];
    else return refuse(d.badShape('inputs: data did not match any variant of untagged enum PredictInput'));
    if (!single) teiBatch(sequences.length);
    refuseBadText(sequences.flatMap((q) => (typeof q === 'string' ? [q] : q)), input.path);
    const predictions = sequences.map((q) => {
      const r = typeof q === 'string' ? rewardOfText(s.model, q) : rewardOf(s.model, q[0], q[1]);
      return [{ score: raw ? r : sigmoid(r), label: 'LABEL_0' }];
    });
    return { status: 200, json: single ? predictions[0] : predictions };
  };

  const teiEmbed: Handler = (input) => {
    if (input.mediaType !== 'application/json') refuse({ status: 415, text: 'Expected request with `Content-Type: application/json`' });
    const body = record(input, 'EmbedRequest');
    if (!('inputs' in body)) refuse(d.badShape('missing field `inputs`'));
    const texts = typeof body.inputs === 'string' ? [body.inputs] : isStringArray(body.inputs) ? body.inputs : refuse(d.badShape('inputs: data did not match any variant of untagged enum Input'));
    if (Array.isArray(body.inputs)) teiBatch(texts.length);
    refuseBadText(texts, input.path);
    return { status: 200, json: texts.map((t) => embeddingOf(s.model, t, s.embedDim)) };
  };

  const teiInfo: Handler = () => ({
    status: 200,
    json: {
      model_id: s.model,
      model_sha: null,
      model_dtype: 'float16',
      // TEI reports a one-label classifier as a "reranker".
      model_type: { reranker: { id2label: { '0': 'LABEL_0' }, label2id: { LABEL_0: 0 } } },
      max_concurrent_requests: 512,
      max_input_length: 512,
      max_batch_tokens: 16384,
      max_batch_requests: null,
      ...(s.reportBatch ? { max_client_batch_size: s.maxBatch } : {}),
      auto_truncate: false,
      tokenization_workers: 4,
      version: '1.8.0',
      sha: null,
      docker_label: null,
    },
  });

  /** OpenRLHF's /get_reward: no validation; whatever goes wrong is FastAPI's plain-text 500. */
  const getReward: Handler = (input) => {
    if (!input.parsed.ok) return INTERNAL_ERROR;
    const body = input.parsed.value;
    if (!isRecord(body) || !isStringArray(body.query)) return INTERNAL_ERROR;
    // serve_rm.py: batch_size = len(queries) → range(0, 0, 0) raises for an empty list.
    if (body.query.length === 0) return INTERNAL_ERROR;
    refuseBadText(body.query, input.path);
    const rewards = body.query.map((q) => rewardOfText(s.model, q));
    return { status: 200, json: { rewards, scores: rewards, extra_logs: { dummy_scores: rewards } } };
  };

  const ollamaName = (name: string): string => (name.includes(':') ? name : `${name}:latest`);
  const ollamaEmbed: Handler = (input) => {
    const body = input.parsed.ok ? input.parsed.value : refuse(d.error(400, input.raw.trim() === '' ? 'missing request body' : input.parsed.error));
    if (!isRecord(body)) refuse(d.error(400, 'json: cannot unmarshal into Go value of type api.EmbedRequest'));
    if (typeof body.model !== 'string' || body.model === '') refuse(d.error(400, 'model is required'));
    if (ollamaName(body.model) !== ollamaName(s.model)) refuse(d.error(404, `model ${JSON.stringify(body.model)} not found, try pulling it first`));
    const given = body.input;
    const texts = given === undefined || given === null ? [] : typeof given === 'string' ? [given] : isStringArray(given) ? given : refuse(d.error(400, 'invalid input type'));
    refuseBadText(texts, input.path);
    const tokens = texts.reduce((sum, t) => sum + tokenCount(t), 0);
    return { status: 200, json: { model: body.model, embeddings: texts.map((t) => embeddingOf(s.model, t, s.embedDim)), total_duration: 0, load_duration: 0, prompt_eval_count: tokens } };
  };

  const scoring = (post: Handler): Route => ({ post, scoring: true });
  switch (s.api) {
    case 'vllm':
      routes.set('/health', { get: emptyOk, scoring: false });
      routes.set('/version', { get: () => ({ status: 200, json: { version: '0.11.0' } }), scoring: false });
      routes.set('/v1/models', { get: models('vllm'), scoring: false });
      if (s.classifyRoute) routes.set('/classify', scoring(classify('classify')));
      routes.set('/pooling', scoring(classify('pooling')));
      routes.set('/v1/completions', scoring(completions));
      routes.set('/v1/embeddings', scoring(embeddings('openai')));
      routes.set('/tokenize', { post: tokenizeRoute, scoring: false });
      break;
    case 'sglang':
      routes.set('/health', { get: emptyOk, scoring: false });
      routes.set('/v1/models', { get: models('sglang'), scoring: false });
      routes.set('/get_model_info', { get: () => ({ status: 200, json: { model_path: s.model, tokenizer_path: s.model, is_generation: false } }), scoring: false });
      if (s.sglangRoutes === 'spec') routes.set('/v1/classify', scoring(classify('classify')));
      else {
        routes.set('/v1/classify', scoring(sglangV1Classify));
        routes.set('/classify', scoring(sglangNativeClassify));
      }
      break;
    case 'tei':
      routes.set('/health', { get: emptyOk, scoring: false });
      routes.set('/info', { get: teiInfo, scoring: false });
      routes.set('/predict', scoring(predict));
      routes.set('/embed', scoring(teiEmbed));
      routes.set('/v1/embeddings', scoring(embeddings('tei')));
      break;
    case 'openrlhf':
      routes.set('/get_reward', scoring(getReward));
      break;
    case 'openai':
      routes.set('/v1/models', { get: models('openai'), scoring: false });
      routes.set('/v1/completions', scoring(completions));
      routes.set('/v1/embeddings', scoring(embeddings('openai')));
      break;
    case 'ollama':
      routes.set('/', { get: () => ({ status: 200, text: 'Ollama is running' }), scoring: false });
      routes.set('/api/version', { get: () => ({ status: 200, json: { version: '0.12.0' } }), scoring: false });
      routes.set('/api/tags', {
        get: () => ({ status: 200, json: { models: [{ name: ollamaName(s.model), model: ollamaName(s.model), modified_at: '2026-01-01T00:00:00Z', size: 0, digest: '0'.repeat(64), details: {} }] } }),
        scoring: false,
      });
      routes.set('/api/embed', scoring(ollamaEmbed));
      break;
  }
  return routes;
}

function parseJson(raw: string): Parsed {
  try {
    return { ok: true, value: JSON.parse(raw) as unknown };
  } catch (err) {
    return { ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

function pathOf(url: string | undefined): string {
  const u = url ?? '/';
  const q = u.indexOf('?');
  return q < 0 ? u : u.slice(0, q);
}

/** Starts one fake server on 127.0.0.1 (port 0 by default); resolves once it listens. */
export async function startInferenceServer(options: FakeServerOptions): Promise<FakeServer> {
  const s = settingsOf(options);
  const dialect = dialectOf(s);
  const routes = routesOf(s, dialect);
  const requests: RequestRecord[] = [];
  const sockets = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();
  let scoringSeq = 0;
  let answered = 0;
  let died = false;
  let closed = false;
  let server: http.Server | undefined;
  let relisten: NodeJS.Timeout | undefined;
  let relistening: Promise<void> | undefined;
  let port = s.port;

  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const method = req.method ?? 'GET';
    const path = pathOf(req.url);
    const entry: RequestRecord = { method, path, body: undefined, status: 0 };
    requests.push(entry);
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REQUEST_BYTES) chunks.push(chunk);
    });
    req.on('error', () => {}); // a destroyed connection: nothing to answer
    req.on('end', () => {
      const raw = size <= MAX_REQUEST_BYTES ? Buffer.concat(chunks).toString('utf8') : '';
      const parsed = parseJson(raw);
      entry.body = raw === '' ? undefined : parsed.ok ? parsed.value : raw;
      const mediaType = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
      const route = routes.get(path);
      const handler = method === 'GET' ? route?.get : method === 'POST' ? route?.post : undefined;
      const isScoring = route !== undefined && handler !== undefined && route.scoring && method === 'POST';
      let reply: Reply;
      if (route === undefined) reply = dialect.noRoute(method, path);
      else if (handler === undefined) reply = dialect.noMethod(method, path);
      else {
        const n = isScoring ? ++scoringSeq : 0;
        if (size > MAX_REQUEST_BYTES) reply = dialect.tooLarge();
        else if (isScoring && s.every429 !== undefined && n % s.every429 === 0) {
          const over = dialect.overloaded(path);
          reply = { ...over, headers: { ...over.headers, 'retry-after': String(s.retryAfterS) } };
        } else {
          try {
            reply = handler({ method, path, raw, parsed, mediaType, n });
          } catch (err) {
            // A refusal is an answer; anything else is a bug of this fake: a 500 naming it, not a crashed test process.
            reply = err instanceof Refusal ? err.reply : { status: 500, text: `fake ${s.api} server bug: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}` };
          }
        }
      }
      send(res, entry, reply, isScoring);
    });
  };

  const send = (res: http.ServerResponse, entry: RequestRecord, reply: Reply, isScoring: boolean): void => {
    const write = (): void => {
      if (res.destroyed || res.socket === null || res.socket.destroyed) return;
      entry.status = reply.status;
      const headers: Record<string, string> = { ...reply.headers };
      let payload = '';
      if (reply.json !== undefined) {
        payload = JSON.stringify(reply.json);
        headers['content-type'] = 'application/json';
      } else if (reply.text !== undefined) {
        payload = reply.text;
        headers['content-type'] = reply.contentType ?? 'text/plain; charset=utf-8';
      }
      headers['content-length'] = String(Buffer.byteLength(payload));
      res.writeHead(reply.status, headers);
      res.end(payload, () => {
        if (isScoring) afterScoringAnswer();
      });
    };
    if (s.delayMs > 0) {
      const timer = setTimeout(() => {
        timers.delete(timer);
        write();
      }, s.delayMs);
      timers.add(timer);
    } else write();
  };

  const afterScoringAnswer = (): void => {
    answered++;
    if (s.dieAfter !== undefined && !died && answered >= s.dieAfter) {
      died = true;
      setImmediate(die);
    }
  };

  const listen = (at: number): Promise<http.Server> =>
    new Promise((resolve, reject) => {
      const srv = http.createServer(handle);
      srv.on('connection', (socket: Socket) => {
        sockets.add(socket);
        socket.on('close', () => sockets.delete(socket));
      });
      srv.once('error', reject);
      srv.listen({ port: at, host: '127.0.0.1' }, () => {
        srv.off('error', reject);
        srv.on('error', () => {}); // after listening, errors are per connection
        resolve(srv);
      });
    });

  const destroySockets = (): void => {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
  };

  /** The dieAfter fault: listener closed, every socket destroyed, back on the same port after downMs. */
  const die = (): void => {
    if (closed) return;
    server?.close();
    server = undefined;
    destroySockets();
    relisten = setTimeout(() => {
      relisten = undefined;
      relistening = (async () => {
        for (let attempt = 1; !closed; attempt++) {
          try {
            const srv = await listen(port);
            if (closed) srv.close();
            else server = srv;
            return;
          } catch (err) {
            if (attempt >= 200) {
              process.stderr.write(`fake ${s.api} server: cannot listen again on port ${port}: ${String(err)}\n`);
              return;
            }
            await new Promise((r) => setTimeout(r, 50));
          }
        }
      })();
    }, s.downMs);
  };

  server = await listen(port);
  port = (server.address() as AddressInfo).port;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      closed = true;
      if (relisten !== undefined) clearTimeout(relisten);
      for (const timer of timers) clearTimeout(timer);
      timers.clear();
      if (relistening !== undefined) await relistening;
      const srv = server;
      server = undefined;
      if (srv !== undefined) {
        const done = new Promise<void>((resolve) => srv.close(() => resolve()));
        destroySockets();
        await done;
      } else destroySockets();
    })();
    return closing;
  };

  return { url: `http://127.0.0.1:${port}`, port, requests, close };
}
