// Texts → the rows a head over embeddings reads (`input: {kind: "embedding", dim, model}`), through the worker's
// inference server (docs/scorers.md, "Embedding heads"). Used for score leases and for training on the worker's own
// data; the server's scorer caches each text's embedding (client/scorers/embeddings.ts).
import type { EmbeddingInputSpec } from '../shared/model/manifest.js';
import type { ServerScorer } from './scorers/index.js';

/** What embedding needs of the worker's inference server. */
export type Embedder = Pick<ServerScorer, 'api' | 'output' | 'model' | 'embed'>;

/** A server that cannot feed the model: `retryable` when another worker may have the right one. One line. */
export class EmbeddingError extends Error {
  override name = 'EmbeddingError';
  constructor(
    message: string,
    readonly retryable: boolean,
  ) {
    super(message);
  }
}

/**
 * The embeddings of `texts` as the model's input rows: `texts.length × input.dim`, row-major. The server must serve
 * the model's embedding model and answer vectors of the model's width; otherwise a non-retryable error names both.
 * A worker without an embedding server fails retryably (the coordinator routes these leases to workers that have one).
 */
export async function embedForModel(server: Embedder | undefined, input: EmbeddingInputSpec, texts: readonly string[]): Promise<Float32Array> {
  if (server === undefined || server.output !== 'embedding') {
    const have = server === undefined ? 'no inference server' : `${server.api} serving ${server.model}`;
    throw new EmbeddingError(`this worker has ${have}; the model reads embeddings of ${input.model}`, true);
  }
  if (server.model !== input.model) {
    throw new EmbeddingError(`this worker's ${server.api} server serves embeddings of ${server.model}; the model reads embeddings of ${input.model}`, false);
  }
  if (texts.length === 0) return new Float32Array(0);
  const { dim, data } = await server.embed(texts);
  if (dim !== input.dim) {
    throw new EmbeddingError(`this worker's ${server.api} server answers embeddings of ${server.model} with ${dim} dimensions; the model reads embedding:${input.dim}`, false);
  }
  return data;
}
