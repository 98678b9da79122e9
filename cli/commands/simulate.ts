import { notBuilt } from '../errors.js';

export async function run(_options: Record<string, unknown>): Promise<void> {
  notBuilt('simulate', 5);
}
