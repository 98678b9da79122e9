// A score job's results as the JSONL lines GET /api/jobs/:id/results streams (README, "The evaluation pool"): one line
// per item in input order, `{"id","score"}`, the log-prob statistics for log-prob jobs (docs/scorers.md),
// `{"id","class","probs"}` for a classifier of C ≥ 3 classes, and `"disputed": true` for an item no quorum of
// redundant workers settled (docs/security.md).
import type { JobSpec, StoredShardResult } from './store.js';

/** A float32 score as the shortest decimal that reads back to the same float32 (9 significant digits suffice). */
export function scoreText(v: number): string {
  return JSON.stringify(Number(v.toPrecision(9)));
}

/** The lines of one stored shard's results (`spec`: the job's, which says how many values an item has). */
export function resultLines(shard: StoredShardResult, spec: Pick<JobSpec, 'scorer' | 'classes'>): string {
  // Log-prob jobs store three values per item, the score being the mean log-prob; multi-class jobs C probabilities.
  const logprobs = spec.scorer?.output === 'logprobs';
  const classes = spec.scorer === undefined ? (spec.classes ?? 0) : 0;
  const disputed = new Set(shard.disputed);
  let text = '';
  for (let i = 0; i < shard.ids.length; i++) {
    const id = JSON.stringify(shard.ids[i]);
    const flag = disputed.has(i) ? ',"disputed":true' : '';
    if (classes > 0) {
      const probs = shard.scores.slice(classes * i, classes * (i + 1));
      let best = 0;
      for (let c = 1; c < classes; c++) if ((probs[c] as number) > (probs[best] as number)) best = c;
      text += `{"id":${id},"class":${best},"probs":[${Array.from(probs, scoreText).join(',')}]${flag}}\n`;
    } else if (!logprobs) text += `{"id":${id},"score":${scoreText(shard.scores[i] as number)}${flag}}\n`;
    else {
      const mean = scoreText(shard.scores[3 * i] as number);
      const perplexity = scoreText(shard.scores[3 * i + 1] as number);
      const certainty = scoreText(shard.scores[3 * i + 2] as number);
      text += `{"id":${id},"score":${mean},"logprob_mean":${mean},"perplexity":${perplexity},"self_certainty":${certainty}${flag}}\n`;
    }
  }
  return text;
}
