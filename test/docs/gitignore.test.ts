// The coordinator's state file and SQLite's files beside it never show up as changes in a checkout (issue 15).
import test from 'ava';
import { run } from '../helpers/processes.js';

test('.gitignore covers the state file and its -wal, -shm and -journal files, wherever --state puts them', async (t) => {
  const paths = ['fedpool.db', 'fedpool.db-wal', 'fedpool.db-shm', 'fedpool.db-journal', 'runs/pool.db-wal'];
  const r = await run('git', ['check-ignore', '--no-index', ...paths]);
  t.is(r.status, 0, r.stderr);
  t.deepEqual(r.stdout.trim().split('\n'), paths);
});
