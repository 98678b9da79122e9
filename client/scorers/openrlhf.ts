import * as z from 'zod';
import { atItems, chunks, finiteAt, notA, parseShape, runPool, type Adapter, type ScorerContext } from './common.js';
import type { RetryPolicy } from './http.js';
import { routeMissing } from './models.js';
import type { Template } from './template.js';

/**
 * openrlhf: OpenRLHF's remote reward model, POST /get_reward {"query": [text, …]} → {"rewards": […]} (docs/scorers.md,
 * "openrlhf"). Each query is the template applied to the item; batches of --scorer-batch (default 32). The server
 * does not report its model, so --scorer-model is required (checked when the scorer is created).
 */

export const OPENRLHF_DEFAULT_BATCH = 32;
const Rewards = z.object({ rewards: z.array(z.unknown()) });

export function openrlhfAdapter(ctx: ScorerContext, template: Template): Adapter {
  const size = ctx.batch ?? OPENRLHF_DEFAULT_BATCH;

  const rewards = async (queries: string[], first: number, out: Float32Array, retry?: RetryPolicy): Promise<void> => {
    let json: unknown;
    try {
      json = await ctx.http.request('POST', '/get_reward', { query: queries }, retry);
    } catch (err) {
      throw atItems(err, first, first + queries.length);
    }
    const answer = parseShape(ctx, Rewards, json, 'POST /get_reward');
    if (answer.rewards.length !== queries.length) throw notA(ctx, `POST /get_reward answered ${answer.rewards.length} rewards for ${queries.length} queries`);
    answer.rewards.forEach((value, i) => {
      out[first + i] = finiteAt(ctx, value, first + i, 'a reward');
    });
  };

  return {
    async prepare() {},
    async check() {
      try {
        await rewards([template.apply('Hi', 'Hello')], 0, new Float32Array(1), ctx.checkRetry);
      } catch (err) {
        throw routeMissing(ctx, err, 'POST /get_reward');
      }
    },
    async score(items) {
      const out = new Float32Array(items.length);
      const parts = chunks(items.length, size);
      await runPool(parts.length, ctx.concurrency, async (k) => {
        const [start, end] = parts[k] as [number, number];
        await rewards(items.slice(start, end).map((item) => template.apply(item.prompt, item.response)), start, out);
      });
      return out;
    },
  };
}
