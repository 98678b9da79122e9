// A worker's own dataset as training data for a head over embeddings (docs/scorers.md, "Embedding heads"): its texts
// go through the worker's embedding server, never anywhere else, and the head trains on the embeddings as it would
// on features (labelled rows) or on pairs of feature rows (preference pairs).
import { embeddingText } from '../../shared/model/embedding-input.js';
import type { EmbeddingInputSpec, Manifest } from '../../shared/model/manifest.js';
import { DatasetError, checkDatasetOutput, datasetWhere, type Dataset } from './datasets.js';
import type { LocalTrainData } from './local-train.js';

/** Embeds texts into `texts.length × dim` rows (client/embed.ts `embedForModel` with the worker's server). */
export type EmbedTexts = (texts: readonly string[]) => Promise<Float32Array>;

/**
 * Labelled text rows → classify data over the embeddings of `embeddingText(prompt, response)` (a `{"text"}` row is
 * prompt "" and response text); preference pairs → pairs data over the embeddings of (prompt, chosen) and (prompt,
 * rejected), embedded in one call so the server's batching and cache see every text once. Feature rows are refused:
 * the head reads one embedding model's vectors, which only the text can be turned into here.
 */
export async function embedTrainData(d: Dataset, manifest: Manifest & { input: EmbeddingInputSpec }, embed: EmbedTexts): Promise<LocalTrainData> {
  checkDatasetOutput(d, manifest);
  if (d.kind === 'features') {
    throw new DatasetError(`${datasetWhere(d)} holds features; this model reads embeddings of ${manifest.input.model}, which the worker computes from text`);
  }
  if (d.kind === 'text') {
    return { kind: 'classify', x: await embed(d.items.map((item) => embeddingText(item.prompt, item.response))), labels: d.labels };
  }
  const n = d.pairs.length;
  const rows = await embed([...d.pairs.map((p) => embeddingText(p.prompt, p.chosen)), ...d.pairs.map((p) => embeddingText(p.prompt, p.rejected))]);
  const dim = manifest.input.dim;
  return { kind: 'pairs', chosen: rows.subarray(0, n * dim), rejected: rows.subarray(n * dim, 2 * n * dim) };
}
