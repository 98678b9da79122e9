// No silent waits: while `fedpool score` or `fedpool train` follows its job, the coordinator is asked every couple of
// seconds whether the job can make progress with the workers connected, and each new reason it gives (no worker of
// the kind it needs, fewer workers than its --redundancy, nobody holding its dataset) is said once on stderr.
import type { CoordinatorApi } from './api.js';

const POLL_MS = 2_000;

/** Starts reporting; the returned function stops it. */
export function reportWaits(api: CoordinatorApi, id: string, command: string): () => void {
  let said: string | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const check = async (): Promise<void> => {
    try {
      const waiting = (await api.findJob(id))?.waiting;
      if (!stopped && waiting !== undefined && waiting !== said) process.stderr.write(`fedpool ${command}: job ${id} waits: ${waiting}\n`);
      said = waiting;
    } catch {
      // The follow reports an unreachable coordinator; this only explains waits.
    } finally {
      if (!stopped) {
        timer = setTimeout(() => void check(), POLL_MS);
        timer.unref();
      }
    }
  };
  void check();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}
