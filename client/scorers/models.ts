import * as z from 'zod';
import { notA, parseShape, type ScorerContext } from './common.js';
import { ScorerError } from './errors.js';
import type { RetryPolicy } from './http.js';

const ModelList = z.object({ data: z.array(z.object({ id: z.string().min(1) })).min(1, 'no models listed') });

/** Sets ctx.model from GET /v1/models (data[0].id) unless --scorer-model gave it: vLLM, SGLang, OpenAI-compatible. */
export async function resolveOpenAiModel(ctx: ScorerContext, retry?: RetryPolicy): Promise<void> {
  if (ctx.model !== undefined) return;
  let json: unknown;
  try {
    json = await ctx.http.request('GET', '/v1/models', undefined, retry);
  } catch (err) {
    if (err instanceof ScorerError && err.status === 404) {
      throw new ScorerError(`${ctx.http.where} does not list its models (GET /v1/models answered 404): pass --scorer-model NAME`, { retryable: false, status: 404 });
    }
    throw err;
  }
  ctx.model = parseShape(ctx, ModelList, json, 'GET /v1/models').data[0]?.id;
}

/** A 404 whose message is about the model (vLLM's "The model `X` does not exist", Ollama's "model … not found"),
 * not about the route. */
export function isModelNotFound(err: unknown): boolean {
  return err instanceof ScorerError && err.status === 404 && /model/i.test(err.serverMessage ?? '');
}

/** A 404 (or 405) from check()'s request as the "not a <api> response" error: the URL serves something else. */
export function routeMissing(ctx: ScorerContext, err: unknown, what: string): unknown {
  if (err instanceof ScorerError && (err.status === 404 || err.status === 405) && !isModelNotFound(err)) return notA(ctx, `${what} answered ${err.status} ${err.serverMessage ?? ''}`.trim());
  return err;
}
