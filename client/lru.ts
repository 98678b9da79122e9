// The runner's per-hash caches (manifests, embedding inputs, datasets, momenta, weights) are small LRU maps, so a
// long-lived worker that sees many models keeps only the recent ones.

/** Sets `key` as the most recent entry of an insertion-ordered LRU map of at most `limit` entries. */
export function remember<V>(map: Map<string, V>, key: string, value: V, limit: number): void {
  map.delete(key);
  map.set(key, value);
  while (map.size > limit) map.delete(map.keys().next().value as string);
}
