import * as z from 'zod';
import { atItems, chunks, finiteAt, notA, parseShape, runPool, type Adapter, type ScorerContext } from './common.js';
import { ScorerError } from './errors.js';
import type { RetryPolicy } from './http.js';
import { ByteLru } from '../../shared/lru.js';
import { resolveOpenAiModel, routeMissing } from './models.js';

/**
 * openai-embeddings (POST /v1/embeddings, `encoding_format: "float"`) and ollama-embed (POST /api/embed): embed()
 * in batches of --scorer-batch (default 32), each distinct text sent once per call and cached per scorer instance
 * (docs/scorers.md, "Embeddings").
 */

export const EMBED_DEFAULT_BATCH = 32;
/** The cache's bound: 128 MiB of vectors and keys (e.g. ~8,000 texts of dim 4,096, ~85,000 of dim 384). */
export const EMBED_CACHE_BYTES = 128 * 1024 * 1024;

const OpenAiEmbeddings = z.object({
  data: z.array(z.object({ index: z.number().int().nonnegative(), embedding: z.array(z.unknown()) })),
});
const OllamaEmbeddings = z.object({ embeddings: z.array(z.array(z.unknown())) });

export type EmbedFlavour = 'openai' | 'ollama';

export function embeddingsAdapter(ctx: ScorerContext, flavour: EmbedFlavour, cacheBytes = EMBED_CACHE_BYTES): Adapter {
  const size = ctx.batch ?? EMBED_DEFAULT_BATCH;
  const path = flavour === 'openai' ? '/v1/embeddings' : '/api/embed';
  const cache = new ByteLru<Float32Array>(cacheBytes, (key, value) => 2 * key.length + value.byteLength + 64);
  let dim: number | undefined;

  /** The rows for `texts`, in order; `first[i]` is the item index texts[i] had in the caller's list (for messages). */
  const request = async (texts: readonly string[], first: readonly number[], retry?: RetryPolicy): Promise<Float32Array[]> => {
    const body =
      flavour === 'openai'
        ? { ...(ctx.model === undefined ? {} : { model: ctx.model }), input: texts, encoding_format: 'float' }
        : { model: ctx.model, input: texts };
    const json = await ctx.http.request('POST', path, body, retry);
    let rows: unknown[][];
    if (flavour === 'openai') {
      const data = parseShape(ctx, OpenAiEmbeddings, json, `POST ${path}`).data;
      rows = new Array<unknown[]>(texts.length);
      for (const entry of data) {
        if (entry.index >= texts.length || rows[entry.index] !== undefined) throw notA(ctx, `POST ${path}: index ${entry.index} is out of range or repeated`);
        rows[entry.index] = entry.embedding;
      }
    } else {
      rows = parseShape(ctx, OllamaEmbeddings, json, `POST ${path}`).embeddings;
    }
    if (rows.length !== texts.length || rows.some((row) => row === undefined)) {
      throw notA(ctx, `POST ${path} answered ${rows.filter((row) => row !== undefined).length} embeddings for ${texts.length} inputs`);
    }
    return rows.map((row, i) => {
      const item = first[i] as number;
      if (row.length === 0) throw new ScorerError(`${ctx.http.where}: item ${item}: the embedding is empty`, { retryable: false });
      dim ??= row.length;
      if (row.length !== dim) {
        throw new ScorerError(`${ctx.http.where}: item ${item}: an embedding of dimension ${row.length}, earlier ones had ${dim}`, { retryable: false });
      }
      return Float32Array.from(row, (v) => finiteAt(ctx, v, item, 'an embedding value'));
    });
  };

  return {
    async prepare() {
      if (flavour === 'openai') await resolveOpenAiModel(ctx);
    },
    async check() {
      if (flavour === 'openai') await resolveOpenAiModel(ctx, ctx.checkRetry);
      try {
        await request(['Hello'], [0], ctx.checkRetry);
      } catch (err) {
        throw routeMissing(ctx, err, `POST ${path}`);
      }
    },
    async embed(texts) {
      // Distinct texts the cache does not hold, with the index each first has in `texts`.
      const found = new Map<string, Float32Array>();
      const missing = new Map<string, number>();
      texts.forEach((text, i) => {
        if (found.has(text) || missing.has(text)) return;
        const hit = cache.get(text);
        if (hit !== undefined) found.set(text, hit);
        else missing.set(text, i);
      });
      const todo = [...missing];
      const parts = chunks(todo.length, size);
      await runPool(parts.length, ctx.concurrency, async (k) => {
        const [start, end] = parts[k] as [number, number];
        const batch = todo.slice(start, end);
        let rows: Float32Array[];
        try {
          rows = await request(
            batch.map(([text]) => text),
            batch.map(([, i]) => i),
          );
        } catch (err) {
          throw batch.length === 1 ? atItems(err, batch[0]?.[1] ?? 0, (batch[0]?.[1] ?? 0) + 1) : err;
        }
        rows.forEach((row, j) => {
          const text = (batch[j] as [string, number])[0];
          found.set(text, row);
          cache.set(text, row);
        });
      });
      const width = dim ?? 0;
      const data = new Float32Array(texts.length * width);
      texts.forEach((text, i) => data.set(found.get(text) as Float32Array, i * width));
      return { dim: width, data };
    },
    close() {
      cache.clear();
    },
  };
}
