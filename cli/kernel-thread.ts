// One helper thread of the aggregation kernels (cli/kernel-threads.ts): runs each share it is handed with a kernels
// instance of its own, then sets its flag (1 done, 2 failed) and wakes the waiting thread.
import { parentPort } from 'node:worker_threads';
import { runThreadTask, type ThreadTask } from '../shared/kernels/parallel.js';

parentPort?.on('message', (m: { task: ThreadTask; flags: Int32Array; index: number }) => {
  let result = 1;
  try {
    runThreadTask(m.task);
  } catch {
    result = 2;
  }
  Atomics.store(m.flags, m.index, result);
  Atomics.notify(m.flags, m.index);
});
