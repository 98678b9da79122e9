import * as z from 'zod';
import { atItems, chunks, finiteAt, notA, parseShape, runPool, type Adapter, type ScorerContext } from './common.js';
import { ScorerError } from './errors.js';
import type { RetryPolicy } from './http.js';
import { routeMissing } from './models.js';

/**
 * tei: text-embeddings-inference's POST /predict with pairs (docs/scorers.md, "tei"). `inputs` is always an array of
 * [prompt, response] arrays (a bare ["Q","A"] would be ONE pair); `raw_scores: true` for the raw reward; no
 * `truncate` (a silently truncated input gets a wrong reward: let the server refuse it). Batches are at most the
 * server's cap: --max-client-batch-size from GET /info when it reports one, else 32, or --scorer-batch if smaller;
 * a 422 "batch size N > maximum allowed batch size M" lowers the cap to M for good and re-sends the same items.
 */

export const TEI_DEFAULT_BATCH = 32;
const BATCH_REFUSED = /batch size (\d+) > maximum allowed batch size (\d+)/;

const Info = z.object({ model_id: z.string().min(1).optional(), max_client_batch_size: z.number().int().positive().optional() });
const Predictions = z.array(z.array(z.object({ score: z.unknown(), label: z.string().optional() })));

interface Item {
  prompt: string;
  response: string;
}

export function teiAdapter(ctx: ScorerContext): Adapter {
  let serverCap = TEI_DEFAULT_BATCH;
  const cap = (): number => Math.min(serverCap, ctx.batch ?? serverCap);

  const learn = (limit: number, why: string): void => {
    if (limit >= serverCap) return;
    serverCap = limit;
    ctx.log(`${ctx.http.where}: learned TEI batch cap ${limit} (${why})`);
  };

  const info = async (retry?: RetryPolicy): Promise<void> => {
    let json: unknown;
    try {
      json = await ctx.http.request('GET', '/info', undefined, retry);
    } catch (err) {
      if (err instanceof ScorerError && err.status === 404 && ctx.model !== undefined) return;
      throw routeMissing(ctx, err, 'GET /info');
    }
    const answer = parseShape(ctx, Info, json, 'GET /info');
    if (answer.max_client_batch_size !== undefined) learn(answer.max_client_batch_size, 'GET /info');
    if (ctx.model !== undefined) return;
    if (answer.model_id === undefined) throw notA(ctx, 'GET /info: model_id: missing');
    ctx.model = answer.model_id;
  };

  /** Scores items[start, end) into out[start, end), splitting as the cap requires. */
  const predict = async (items: readonly Item[], start: number, end: number, out: Float32Array, retry?: RetryPolicy): Promise<void> => {
    const size = end - start;
    if (size > cap()) {
      const parts = chunks(size, cap());
      await runPool(parts.length, ctx.concurrency, async (k) => {
        const [from, to] = parts[k] as [number, number];
        await predict(items, start + from, start + to, out, retry);
      });
      return;
    }
    const inputs = items.slice(start, end).map((item) => [item.prompt, item.response]);
    let json: unknown;
    try {
      json = await ctx.http.request('POST', '/predict', { inputs, raw_scores: true }, retry);
    } catch (err) {
      // Real TEI answers its Validation errors with 413 (the spec says 422): the body tells a refused batch size.
      if (err instanceof ScorerError && (err.status === 422 || err.status === 413)) {
        const limit = BATCH_REFUSED.exec(err.serverMessage ?? '');
        if (limit !== null && Number(limit[2]) >= 1 && Number(limit[2]) < size) {
          learn(Number(limit[2]), `the server refused a batch of ${size}`);
          return predict(items, start, end, out, retry);
        }
      }
      if (err instanceof ScorerError && err.status === 413 && size > 1) {
        // Any other 413 (over --payload-limit, or a Validation error of one input): halve this batch, not
        // remembered (it depends on the texts); a bad input ends as a batch of one, named in the error.
        const middle = start + Math.ceil(size / 2);
        await Promise.all([predict(items, start, middle, out, retry), predict(items, middle, end, out, retry)]);
        return;
      }
      throw atItems(err, start, end);
    }
    const rows = parseShape(ctx, Predictions, json, 'POST /predict');
    if (rows.length !== size) throw notA(ctx, `POST /predict answered ${rows.length} results for ${size} pairs`);
    rows.forEach((row, i) => {
      // Each list is sorted by score; a reward model has one label, so its entry is the first.
      out[start + i] = finiteAt(ctx, row[0]?.score, start + i, 'a reward');
    });
  };

  return {
    async prepare() {
      if (ctx.model === undefined) await info();
    },
    async check() {
      await info(ctx.checkRetry);
      try {
        await predict([{ prompt: 'Hi', response: 'Hello' }], 0, 1, new Float32Array(1), ctx.checkRetry);
      } catch (err) {
        throw routeMissing(ctx, err, 'POST /predict');
      }
    },
    async score(items) {
      const out = new Float32Array(items.length);
      const parts = chunks(items.length, cap());
      await runPool(parts.length, ctx.concurrency, async (k) => {
        const [start, end] = parts[k] as [number, number];
        await predict(items, start, end, out);
      });
      return out;
    },
  };
}
