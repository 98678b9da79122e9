import * as z from 'zod';
import { atItems, finiteAt, notA, parseShape, runPool, type Adapter, type ScorerContext } from './common.js';
import { ScorerError } from './errors.js';
import type { RetryPolicy } from './http.js';
import { resolveOpenAiModel, routeMissing } from './models.js';
import type { Template } from './template.js';

/**
 * openai-logprobs: the log-probs a generator gives an existing response, from POST /v1/completions with `echo: true`
 * and `max_tokens: 0` (docs/scorers.md, "openai-logprobs"). Per item: mean log-prob of the response's tokens,
 * perplexity exp(−mean), and an approximate self-certainty (mean KL(uniform ‖ p) from the top-k log-probs).
 */

export const DEFAULT_LOGPROBS = 5;
export const DEFAULT_VOCAB = 32000;
/** The floor of the probability mass outside the top-k (docs/scorers.md, "Self-certainty"). */
const MIN_REST_MASS = 1e-12;
const FLOAT32_MAX = 3.4028234663852886e38;

const Completion = z.object({
  choices: z
    .array(
      z.object({
        logprobs: z.object({
          tokens: z.array(z.string()),
          token_logprobs: z.array(z.unknown()),
          top_logprobs: z.array(z.record(z.string(), z.unknown()).nullable()),
          text_offset: z.array(z.number()),
        }),
      }),
    )
    .min(1, 'no choices'),
});
type Logprobs = z.infer<typeof Completion>['choices'][number]['logprobs'];

export interface LogprobOptions {
  template: Template;
  /** Top log-probs asked per token (k). */
  logprobs: number;
  /** Vocabulary size V for self-certainty. */
  vocab: number;
}

/** KL(U ‖ p) at one position from its top-k log-probs, the rest of the mass spread evenly over the other tokens. */
export function selfCertaintyAt(topLogprobs: readonly number[], vocab: number): number {
  let sum = 0;
  let mass = 0;
  for (const lp of topLogprobs) {
    sum += lp;
    mass += Math.exp(lp);
  }
  const others = vocab - topLogprobs.length;
  const rest = Math.max(MIN_REST_MASS, 1 - mass);
  const restTerm = others > 0 ? others * Math.log(rest / others) : 0;
  return -Math.log(vocab) - (sum + restTerm) / vocab;
}

/**
 * Length of `text` in Unicode code points: how vLLM counts `text_offset` (Python's len), which differs from
 * JavaScript's length (UTF-16 units) after a character outside the BMP (docs/scorers.md, "openai-logprobs").
 */
export function codePoints(text: string): number {
  let n = text.length;
  for (let i = 0; i < text.length - 1; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n--;
        i++;
      }
    }
  }
  return n;
}

/**
 * Mean log-prob, perplexity and self-certainty over the tokens that start inside the response
 * ([promptLength, promptLength + responseLength) in code points of the text sent).
 */
export function responseStats(
  ctx: ScorerContext,
  lp: Logprobs,
  promptLength: number,
  responseLength: number,
  vocab: number,
  item: number,
): [number, number, number] {
  const n = lp.tokens.length;
  if (lp.token_logprobs.length !== n || lp.top_logprobs.length !== n || lp.text_offset.length !== n) {
    throw notA(ctx, `POST /v1/completions: item ${item}: logprobs lists of different lengths (tokens ${n}, token_logprobs ${lp.token_logprobs.length}, top_logprobs ${lp.top_logprobs.length}, text_offset ${lp.text_offset.length})`);
  }
  let count = 0;
  let sum = 0;
  let certainty = 0;
  for (let i = 0; i < n; i++) {
    const offset = lp.text_offset[i] as number;
    if (offset < promptLength || offset >= promptLength + responseLength) continue;
    // The first token of the whole text has no log-prob (nothing precedes it): only an empty prompt part gets here.
    if (i === 0 && lp.token_logprobs[0] === null) continue;
    sum += finiteAt(ctx, lp.token_logprobs[i], item, `the log-prob of token ${i}`);
    const top = lp.top_logprobs[i];
    if (top === null || top === undefined || Object.keys(top).length === 0) {
      throw new ScorerError(`${ctx.http.where}: item ${item}: token ${i} has no top_logprobs`, { retryable: false });
    }
    certainty += selfCertaintyAt(Object.values(top).map((v) => finiteAt(ctx, v, item, `a top log-prob of token ${i}`)), vocab);
    count++;
  }
  if (count === 0) {
    throw new ScorerError(`${ctx.http.where}: item ${item}: the response has no tokens of its own (it is empty, or merged into the prompt's last token)`, { retryable: false });
  }
  const mean = sum / count;
  return [mean, Math.min(FLOAT32_MAX, Math.exp(-mean)), certainty / count];
}

export function logprobsAdapter(ctx: ScorerContext, options: LogprobOptions): Adapter {
  const { template, logprobs, vocab } = options;

  const complete = async (text: string, retry?: RetryPolicy): Promise<Logprobs> => {
    const json = await ctx.http.request(
      'POST',
      '/v1/completions',
      {
        ...(ctx.model === undefined ? {} : { model: ctx.model }),
        prompt: text,
        max_tokens: 0,
        echo: true,
        logprobs,
        temperature: 0,
        add_special_tokens: false,
      },
      retry,
    );
    return (parseShape(ctx, Completion, json, 'POST /v1/completions').choices[0] as { logprobs: Logprobs }).logprobs;
  };

  return {
    async prepare() {
      await resolveOpenAiModel(ctx);
    },
    async check() {
      await resolveOpenAiModel(ctx, ctx.checkRetry);
      // Only the shape is checked: how a tokenizer splits this tiny text is not our business here.
      try {
        const lp = await complete(template.apply('Hi', ' there.'), ctx.checkRetry);
        if (lp.tokens.length === 0) throw notA(ctx, 'POST /v1/completions echoed no tokens');
      } catch (err) {
        throw routeMissing(ctx, err, 'POST /v1/completions');
      }
    },
    async score(items) {
      const out = new Float32Array(3 * items.length);
      await runPool(items.length, ctx.concurrency, async (i) => {
        const item = items[i] as { prompt: string; response: string };
        try {
          const lp = await complete(template.apply(item.prompt, item.response));
          out.set(responseStats(ctx, lp, codePoints(template.promptPart(item.prompt)), codePoints(item.response), vocab, i), 3 * i);
        } catch (err) {
          throw atItems(err, i, i + 1);
        }
      });
      return out;
    },
  };
}
