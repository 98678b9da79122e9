import * as z from 'zod';
import { atItems, finiteAt, notA, parseShape, runPool, type Adapter, type ScorerContext } from './common.js';
import { ScorerError } from './errors.js';
import type { RetryPolicy } from './http.js';
import { isModelNotFound, resolveOpenAiModel } from './models.js';

/**
 * vllm-classify: one conversation per POST, `use_activation: false` for the raw reward (docs/scorers.md,
 * "vllm-classify"). The route is found once: /classify (vLLM), else /v1/classify (SGLang), else /pooling with
 * `task: "classify"` (vLLM releases without /classify); after that every request goes to the route that answered.
 */

const ROUTES = ['/classify', '/v1/classify', '/pooling'] as const;
type Route = (typeof ROUTES)[number];

const ClassifyAnswer = z.object({
  data: z.array(z.object({ probs: z.array(z.unknown()).min(1, 'no label') })).length(1, 'expected one result for one conversation'),
});
const PoolingAnswer = z.object({
  data: z.array(z.object({ data: z.union([z.unknown().array(), z.unknown()]) })).length(1, 'expected one result for one conversation'),
});

interface Item {
  prompt: string;
  response: string;
}

/** A 404 that means "no such route" (not vLLM's 404 for an unknown model name). */
function isNoRoute(err: unknown): boolean {
  return err instanceof ScorerError && err.status === 404 && !isModelNotFound(err);
}

export function classifyAdapter(ctx: ScorerContext): Adapter {
  let route: Route | undefined;
  let discovery: Promise<unknown> | undefined;

  const body = (item: Item, to: Route): Record<string, unknown> => ({
    ...(ctx.model === undefined ? {} : { model: ctx.model }),
    messages: [
      { role: 'user', content: item.prompt },
      { role: 'assistant', content: item.response },
    ],
    use_activation: false,
    ...(to === '/pooling' ? { task: 'classify' } : {}),
  });

  const reward = (json: unknown, to: Route, index: number): number => {
    if (to === '/pooling') {
      const value = parseShape(ctx, PoolingAnswer, json, `POST ${to}`).data[0]?.data;
      if (Array.isArray(value) && value.length !== 1) throw labels(value.length);
      return finiteAt(ctx, Array.isArray(value) ? value[0] : value, index, 'a reward');
    }
    const probs = parseShape(ctx, ClassifyAnswer, json, `POST ${to}`).data[0]?.probs ?? [];
    if (probs.length !== 1) throw labels(probs.length);
    return finiteAt(ctx, probs[0], index, 'a reward');
  };

  const labels = (n: number): ScorerError =>
    new ScorerError(`${ctx.http.where}: the model has ${n} output labels; a reward model has one`, { retryable: false });

  /** Tries the routes in order with this item's request; remembers the first that is served. */
  const discover = async (item: Item, index: number, retry?: RetryPolicy): Promise<number> => {
    for (const to of ROUTES) {
      try {
        const json = await ctx.http.request('POST', to, body(item, to), retry);
        const value = reward(json, to, index);
        if (route === undefined) {
          route = to;
          if (to !== ROUTES[0]) ctx.log(`${ctx.http.where}: /classify is not served (404); using ${to} from now on`);
        }
        return value;
      } catch (err) {
        if (!isNoRoute(err)) throw err;
      }
    }
    throw notA(ctx, `none of POST ${ROUTES.join(', ')} is served (404)`);
  };

  const classifyOne = async (item: Item, index: number, retry?: RetryPolicy): Promise<number> => {
    // While one request finds the route, the others wait for it; if it fails (its item may be the problem), the
    // next one tries with its own item.
    while (route === undefined) {
      if (discovery === undefined) {
        const mine = discover(item, index, retry);
        discovery = mine;
        try {
          return await mine;
        } finally {
          if (discovery === mine) discovery = undefined;
        }
      }
      await discovery.catch(() => undefined);
    }
    const to = route;
    return reward(await ctx.http.request('POST', to, body(item, to), retry), to, index);
  };

  return {
    async prepare() {
      await resolveOpenAiModel(ctx);
    },
    async check() {
      await resolveOpenAiModel(ctx, ctx.checkRetry);
      await classifyOne({ prompt: 'Hi', response: 'Hello' }, 0, ctx.checkRetry);
    },
    async score(items) {
      const out = new Float32Array(items.length);
      await runPool(items.length, ctx.concurrency, async (i) => {
        try {
          out[i] = await classifyOne(items[i] as Item, i);
        } catch (err) {
          throw atItems(err, i, i + 1);
        }
      });
      return out;
    },
  };
}
