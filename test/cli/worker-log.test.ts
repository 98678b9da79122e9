// The worker's logs: readable lines on a terminal, JSON lines (pino's shape, as the coordinator's) otherwise.
import test from 'ava';
import { stderrLog } from '../../cli/commands/worker.js';

function stream(isTTY: boolean): { isTTY: boolean; text: string; write(s: string): boolean } {
  const s = { isTTY, text: '', write(chunk: string) { s.text += chunk; return true; } };
  return s;
}

test('worker logs: "fedpool worker: warn: …" on a terminal, a JSON line otherwise, at FEDPOOL_LOG and above', (t) => {
  const tty = stream(true);
  const log = stderrLog({ FEDPOOL_LOG: 'info' }, tty);
  log.debug('not shown');
  log.info('joined');
  log.warn('slow');
  t.is(tty.text, 'fedpool worker: joined\nfedpool worker: warn: slow\n');
  const pipe = stream(false);
  stderrLog({ FEDPOOL_LOG: 'warn' }, pipe).warn('slow');
  stderrLog({ FEDPOOL_LOG: 'warn' }, pipe).info('hidden');
  const lines = pipe.text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.is(lines.length, 1);
  t.like(lines[0], { level: 40, name: 'fedpool-worker', msg: 'slow' });
  t.is(typeof lines[0]?.['time'], 'number');
});
