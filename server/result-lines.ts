// A score job's results as the JSONL lines GET /api/jobs/:id/results streams (README, "The evaluation pool"): one line
// per item in input order, `{"id","score"}`, the log-prob statistics for log-prob jobs (docs/scorers.md), and
// `"disputed": true` for an item no quorum of redundant workers settled (docs/security.md).
import type { StoredShardResult } from './store.js';

/** A float32 score as the shortest decimal that reads back to the same float32 (9 significant digits suffice). */
export function scoreText(v: number): string {
  return JSON.stringify(Number(v.toPrecision(9)));
}

/** The lines of one stored shard's results. */
export function resultLines(shard: StoredShardResult): string {
  // Log-prob jobs store three values per item; the score is the mean log-prob.
  const logprobs = shard.scores.length === 3 * shard.ids.length;
  const disputed = new Set(shard.disputed);
  let text = '';
  for (let i = 0; i < shard.ids.length; i++) {
    const id = JSON.stringify(shard.ids[i]);
    const flag = disputed.has(i) ? ',"disputed":true' : '';
    if (!logprobs) text += `{"id":${id},"score":${scoreText(shard.scores[i] as number)}${flag}}\n`;
    else {
      const mean = scoreText(shard.scores[3 * i] as number);
      const perplexity = scoreText(shard.scores[3 * i + 1] as number);
      const certainty = scoreText(shard.scores[3 * i + 2] as number);
      text += `{"id":${id},"score":${mean},"logprob_mean":${mean},"perplexity":${perplexity},"self_certainty":${certainty}${flag}}\n`;
    }
  }
  return text;
}
