// The dashboard's snapshot stays bounded however large the pool: the first 200 workers, with the count of all.
import test from 'ava';
import { dashboardSnapshot } from '../../server/dashboard-feed.js';
import { inProcessCoordinator } from '../helpers/in-process-coordinator.js';

test('a snapshot of 250 connected workers lists the first 200 and counts all of them', (t) => {
  const { jobs } = inProcessCoordinator(Array.from({ length: 250 }, (_, i) => ({ name: `w${String(i).padStart(3, '0')}` })));
  t.teardown(() => jobs.close());
  const s = dashboardSnapshot(jobs, { owner: null, admin: false }, Date.UTC(2026, 11, 5));
  t.is(s.workerCount, 250);
  t.is(s.workers.length, 200);
  t.is(s.workers[0]?.name, 'w000');
  t.deepEqual([s.jobCount, s.jobs.length, Object.keys(s.training).length], [0, 0, 0]);
  t.is(s.time, '2026-12-05T00:00:00.000Z');
});
