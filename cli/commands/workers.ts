import { coordinatorApi } from '../api.js';
import { UserError } from '../errors.js';

/** `fedpool workers unquarantine NAME`: POST /api/workers/NAME/unquarantine; one line on stdout. */
export async function run(options: Record<string, unknown>): Promise<void> {
  const name = typeof options['name'] === 'string' ? options['name'] : '';
  if (name === '') throw new UserError('fedpool workers unquarantine: a worker name is required');
  const api = coordinatorApi(options, 'workers unquarantine');
  await api.unquarantine(name);
  process.stdout.write(`fedpool: worker ${name} is out of quarantine\n`);
}
