// The coordinator's logs: pino's JSON lines unchanged for programs, readable lines for a terminal.
import test from 'ava';
import pino from 'pino';
import { logDestination, readableLogLine } from '../../server/log-lines.js';

/** A stream that records what is written, claiming to be a terminal or not. */
function stream(isTTY: boolean): NodeJS.WriteStream & { text: string } {
  const s = { isTTY, text: '', write(chunk: string) { s.text += chunk; return true; } };
  return s as unknown as NodeJS.WriteStream & { text: string };
}

test('a pino record reads as time, level, message and key=value fields', (t) => {
  const line = JSON.stringify({ level: 40, time: Date.UTC(2026, 11, 4, 12, 3, 4, 5), pid: 1, hostname: 'h', name: 'fedpool-coordinator', msg: 'workers silent; dropping them', workers: 3, first: 'w 1', ok: true });
  t.is(readableLogLine(line), '12:03:04.005 WARN  workers silent; dropping them workers=3 first="w 1" ok=true\n');
  t.is(readableLogLine('not json'), 'not json', 'anything else passes through');
});

test('JSON lines when stderr is not a terminal, readable lines when it is', (t) => {
  for (const tty of [false, true]) {
    const out = stream(tty);
    const log = pino({ base: { name: 'fedpool-coordinator' }, timestamp: () => ',"time":0' }, logDestination(out));
    log.info({ job: 'j1' }, 'job submitted');
    if (tty) t.is(out.text, '00:00:00.000 INFO  job submitted job=j1\n');
    else t.like(JSON.parse(out.text), { level: 30, time: 0, name: 'fedpool-coordinator', job: 'j1', msg: 'job submitted' });
  }
});
