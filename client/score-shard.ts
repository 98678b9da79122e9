// The score-shard path: a score lease's items → its scores. Bundle leases run on the pool's threads; scorer tasks
// go to the worker's inference server; a bundle whose input is `embedding:DIM` gets its rows from the worker's
// embedding server first, then runs on the threads like any bundle (docs/scorers.md, "Embedding heads").
import { scorerWidth, type ScoreItem, type ScoreTask } from '../shared/protocol/index.js';
import { ModelError, embeddingText, packedEmbeddingInput, packedManifest, scoreWidth, type EmbeddingInputSpec } from '../shared/model/index.js';
import { embedForModel } from './embed.js';
import type { LeaseChannel, Scorer, ScorerItem, ServerScorer } from './lease-ports.js';
import { remember } from '../shared/lru.js';

/** Protocol items → scorer items. Features tensors already own their buffers (the codec copies once). */
export function toScorerItems(items: readonly ScoreItem[]): ScorerItem[] {
  return items.map((item) =>
    item.features !== undefined ? { features: item.features.data } : { prompt: item.prompt ?? '', response: item.response ?? '' },
  );
}

/** A score task's items for the scorer, from either form; rows of a matrix are views, not copies. */
export function taskScorerItems(task: ScoreTask): ScorerItem[] {
  if (task.matrix !== undefined) {
    const { ids, features } = task.matrix;
    const dim = features.shape[1] ?? 0;
    const data = features.data as Float32Array;
    return ids.map((_, i) => ({ features: data.subarray(i * dim, (i + 1) * dim) }));
  }
  return toScorerItems(task.items ?? []);
}

/** Number of items in a score task. */
export function taskSize(task: ScoreTask): number {
  return task.matrix?.ids.length ?? task.items?.length ?? 0;
}

export interface ScoreShardOptions {
  scorer: Scorer;
  /** The inference server scorer tasks and embeddings go to. */
  server?: ServerScorer | undefined;
}

/** A shard's scores, how many values the task should get, and when compute started (after the bundle arrived). */
export interface ShardScores {
  scores: Float32Array;
  expected: number;
  started: number;
}

export class ScoreShards {
  /** Per bundle hash: the embedding input its head reads (if any) and the values it scores per item. */
  private readonly bundles = new Map<string, { embedding: EmbeddingInputSpec | undefined; width: number }>();

  constructor(private readonly options: ScoreShardOptions) {}

  /** Scores one shard; the caller checks `scores.length` against `expected`. */
  async score(task: ScoreTask, channel: Pick<LeaseChannel, 'bundle'>): Promise<ShardScores> {
    const size = taskSize(task);
    if (task.scorer !== undefined) {
      const started = performance.now();
      const scores = await this.serverScores(task.items ?? [], task.scorer.output);
      return { scores, expected: size * scorerWidth(task.scorer.output), started };
    }
    const hash = task.modelHash ?? '';
    const bundle = await channel.bundle(hash);
    const { embedding, width } = this.bundleInfo(hash, bundle);
    const started = performance.now();
    const items = embedding === undefined ? taskScorerItems(task) : await this.embeddedItems(task, embedding);
    const scores = await this.options.scorer.score(hash, bundle, items, task.batchSize);
    return { scores, expected: size * width, started };
  }

  /** A scorer task's text items through the inference server (checked to match the task when the lease came). */
  private async serverScores(items: readonly ScoreItem[], output: 'reward' | 'logprobs'): Promise<Float32Array> {
    const server = this.options.server;
    if (server === undefined || server.output !== output) throw new Error(`this worker has no inference server for ${output}`);
    return server.score(items.map((item) => ({ prompt: item.prompt ?? '', response: item.response ?? '' })));
  }

  /**
   * The embedding input of a bundle's head (or undefined) and its values per item (scoreWidth), read once per hash from
   * its manifest. A bundle whose manifest cannot be read scores 1 value per item here; the scorer reports what is wrong.
   */
  private bundleInfo(hash: string, bundle: Uint8Array): { embedding: EmbeddingInputSpec | undefined; width: number } {
    let info = this.bundles.get(hash);
    if (info === undefined) {
      let width = 1;
      try {
        width = scoreWidth(packedManifest(bundle).output);
      } catch {
        // left to the scorer
      }
      info = { embedding: packedEmbeddingInput(bundle), width };
      remember(this.bundles, hash, info, 8);
    }
    return info;
  }

  /** A score task's text items as the embedding rows the head reads: embeddingText(prompt, response) through the server. */
  private async embeddedItems(task: ScoreTask, input: EmbeddingInputSpec): Promise<ScorerItem[]> {
    const items = task.items ?? [];
    const bad = task.matrix !== undefined ? 0 : items.findIndex((item) => item.features !== undefined);
    if (bad >= 0) throw new ModelError(`item ${bad}: this model reads embeddings of ${input.model}, computed here from prompt and response; the item has features`);
    const rows = await embedForModel(this.options.server, input, items.map((item) => embeddingText(item.prompt ?? '', item.response ?? '')));
    return items.map((_, i) => ({ features: rows.subarray(i * input.dim, (i + 1) * input.dim) }));
  }
}
