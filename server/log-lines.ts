// The coordinator's logs: JSON lines (pino's) when stderr goes to a file or another program, readable lines when a
// person watches a terminal: `12:03:04 WARN  workers silent for longer than the lease; dropping them workers=3`.

const LEVEL_NAMES: Readonly<Record<number, string>> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
/** pino's own fields, shown in the line's fixed parts or not at all. */
const OWN_FIELDS = new Set(['level', 'time', 'msg', 'pid', 'hostname', 'name']);

function valueText(v: unknown): string {
  if (typeof v === 'string') return /[\s"=]/.test(v) || v === '' ? JSON.stringify(v) : v;
  return JSON.stringify(v) ?? String(v);
}

/** One pino JSON line as a readable line (a line that is not pino's JSON comes back as it was). */
export function readableLogLine(json: string): string {
  let record: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(json);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return json;
    record = parsed as Record<string, unknown>;
  } catch {
    return json;
  }
  const time = typeof record['time'] === 'number' ? new Date(record['time']).toISOString().slice(11, 23) : '';
  const level = (typeof record['level'] === 'number' ? LEVEL_NAMES[record['level']] : undefined) ?? String(record['level'] ?? '');
  const fields = Object.entries(record)
    .filter(([k]) => !OWN_FIELDS.has(k))
    .map(([k, v]) => `${k}=${valueText(v)}`);
  const msg = typeof record['msg'] === 'string' ? record['msg'] : '';
  return `${time} ${level.padEnd(5)} ${[msg, ...fields].filter((s) => s !== '').join(' ')}\n`;
}

/** Where pino writes: stderr as JSON, or as readable lines when stderr is a terminal. */
export function logDestination(stream: NodeJS.WriteStream = process.stderr): { write(line: string): void } {
  if (stream.isTTY !== true) return { write: (line) => void stream.write(line) };
  return {
    write: (chunk) => {
      for (const line of chunk.split('\n')) if (line !== '') stream.write(readableLogLine(line));
    },
  };
}
