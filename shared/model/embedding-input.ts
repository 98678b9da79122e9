import { packedManifest } from './bundle.js';
import type { EmbeddingInputSpec, InputSpec } from './manifest.js';

/**
 * Bundles whose input is `{kind: "embedding", dim, model}` (docs/scorers.md, "Embedding heads"): the TF.js head
 * scores the embedding of the item's text that an inference server serving `model` computes. Only a worker fronting
 * such a server can build the input, so the coordinator routes these jobs by the embedding model, and the text is
 * embedded the same way wherever it comes from (a score item, a preference pair, a labelled row).
 */

/**
 * The one text embedded for an item: `prompt + "\n" + response`, or the response alone when the prompt is empty (a
 * labelled row `{"text"}` reads as prompt "" and response text, as the text featurizer reads it). Preference pairs
 * embed `embeddingText(prompt, chosen)` and `embeddingText(prompt, rejected)`.
 */
export function embeddingText(prompt: string, response: string): string {
  return prompt === '' ? response : `${prompt}\n${response}`;
}

export function isEmbeddingInput(input: InputSpec): input is EmbeddingInputSpec {
  return input.kind === 'embedding';
}

/**
 * The embedding input of a packed bundle, or undefined when its input is something else — or when the bytes are not
 * a readable bundle at all: routing then treats it as an ordinary bundle and whoever loads it reports what is wrong.
 */
export function packedEmbeddingInput(bytes: Uint8Array): EmbeddingInputSpec | undefined {
  try {
    const { input } = packedManifest(bytes);
    return isEmbeddingInput(input) ? input : undefined;
  } catch {
    return undefined;
  }
}
