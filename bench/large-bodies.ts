// Large JSON job bodies and the event loop (issue 13; docs/security.md, "Memory and the event loop"): a coordinator in
// a child process (SQLite state in a temporary folder) takes 3 × 1,000 small POST /api/jobs one after another, then a
// POST of an items body of each size given (MB, default 100) while the parent probes GET /healthz. Prints small POSTs
// per second; and per body the coordinator's longest event-loop block (perf_hooks.monitorEventLoopDelay) before
// ScoreJobs.submit began (receiving, parsing, validating) and in all, the time in ScoreJobs.submit (shards and the
// state store's one transaction), the slowest /healthz answer, and the peak RSS (VmHWM; Linux).
//   node --import=tsx bench/large-bodies.ts [--text [--blob]] [MB ...]
// (--text: text columns and a meta line per item, inline in the JSON body; --blob: the text in an uploaded text blob,
// as fedpool score sends it, the PUT timed with the POST)
import { fork, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { encodeTextBlob } from '../shared/data/text-blob.js';

interface Stats {
  maxDelayMs: number;
  /** The longest block before ScoreJobs.submit began: receiving, parsing and validating the body. */
  beforeSubmitMs: number;
  peakRssMb: number;
  rssMb: number;
  submitMs: number;
}

type FromChild = { type: 'url'; url: string } | { type: 'stats'; stats: Stats };

async function serve(): Promise<void> {
  const pino = (await import('pino')).default;
  const { startCoordinator } = await import('../server/coordinator.js');
  const dir = mkdtempSync(join(tmpdir(), 'fedpool-bench-bodies-'));
  const c = await startCoordinator({ port: 0, state: join(dir, 'state.db'), logger: pino({ level: 'silent' }) });
  const histogram = monitorEventLoopDelay({ resolution: 5 });
  histogram.enable();
  let submitMs = 0;
  let beforeSubmitMs = 0;
  const score = c.jobs.score;
  const submit = score.submit.bind(score);
  score.submit = (...args: Parameters<typeof submit>) => {
    beforeSubmitMs = Math.max(beforeSubmitMs, histogram.max / 1e6);
    const t0 = performance.now();
    try {
      return submit(...args);
    } finally {
      submitMs += performance.now() - t0;
    }
  };
  const status = (): string => (process.platform === 'linux' ? readFileSync('/proc/self/status', 'utf8') : '');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status())?.[1] ?? 0);
  process.on('message', (m: string) => {
    if (m === 'reset') {
      histogram.reset();
      submitMs = 0;
      beforeSubmitMs = 0;
      if (process.platform === 'linux') writeFileSync('/proc/self/clear_refs', '5'); // resets VmHWM
      process.send?.({ type: 'stats', stats: { maxDelayMs: 0, beforeSubmitMs: 0, peakRssMb: 0, rssMb: 0, submitMs: 0 } } satisfies FromChild);
    } else if (m === 'stats') {
      const stats = { maxDelayMs: histogram.max / 1e6, beforeSubmitMs, peakRssMb: kb('VmHWM') / 1024, rssMb: kb('VmRSS') / 1024, submitMs };
      process.send?.({ type: 'stats', stats } satisfies FromChild);
    } else if (m === 'stop') stop();
  });
  // Also when the parent dies: nothing is left running or on disk.
  const stop = (): void => {
    void c.close().then(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    });
  };
  process.once('disconnect', stop);
  process.send?.({ type: 'url', url: c.url } satisfies FromChild);
}

function ask(child: ChildProcess, m: string): Promise<Stats> {
  return new Promise<Stats>((resolve) => {
    const on = (msg: FromChild): void => {
      if (msg.type !== 'stats') return;
      child.off('message', on);
      resolve(msg.stats);
    };
    child.on('message', on);
    child.send(m);
  });
}

function post(url: string, path: string, body: Buffer, agent: Agent | false, method = 'POST'): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method, agent, headers: { 'content-type': 'application/json', 'content-length': body.byteLength } }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => (text += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Text columns and a meta line per item: inline, or (blob) the job body that names the text blob it returns too. */
function textBody(megabytes: number, blob = false): { body: Buffer; upload?: { hash: string; bytes: Uint8Array } } {
  const ids: string[] = [];
  const prompts: string[] = [];
  const responses: string[] = [];
  const lines: Array<{ id: string; group: string }> = [];
  let size = 0;
  for (let i = 0; size < megabytes * 1e6; i++) {
    ids.push(`${i}`);
    prompts.push(`Question ${i % 997}: how many prime numbers are there below ${i}?`);
    responses.push(`There are quite a few of them; the answer for ${i} is left to the reader.`);
    lines.push({ id: `line-${i}`, group: `g${i % 100}` });
    size += 190;
  }
  const meta = { format: 'fedpool-score/1', lines };
  if (!blob) return { body: Buffer.from(JSON.stringify({ kind: 'score', scorer: { model: 'bench' }, shardSize: 4096, columns: { ids, prompts, responses }, meta })) };
  const bytes = encodeTextBlob(prompts, responses);
  const hash = createHash('sha256').update(bytes).digest('hex');
  return { body: Buffer.from(JSON.stringify({ kind: 'score', scorer: { model: 'bench' }, shardSize: 4096, columns: { ids, text: { blob: hash } }, meta })), upload: { hash, bytes } };
}

function itemsBody(model: string, megabytes: number): Buffer {
  const parts: string[] = [];
  let size = 0;
  for (let i = 0; size < megabytes * 1e6; i++) {
    const part = JSON.stringify({ id: `item-${i}`, features: [((i * 7) % 11) / 4, ((i * 7 + 3) % 11) / 4, ((i * 7 + 6) % 11) / 4, ((i * 7 + 9) % 11) / 4] });
    parts.push(part);
    size += part.length + 1;
  }
  return Buffer.from(`{"model":"${model}","shardSize":4096,"items":[${parts.join(',')}]}`);
}

async function main(): Promise<void> {
  const text = process.argv.includes('--text');
  const blob = process.argv.includes('--blob');
  const sizes = process.argv.slice(2).map(Number).filter((n) => n > 0);
  const child = fork(fileURLToPath(import.meta.url), ['--serve'], { execArgv: [...process.execArgv, '--max-old-space-size=16384'] });
  const url = await new Promise<string>((resolve) => child.on('message', (m: FromChild) => m.type === 'url' && resolve(m.url)));
  const model = Buffer.from('bench model');
  const hash = createHash('sha256').update(model).digest('hex');
  await post(url, `/api/blobs/${hash}`, model, false, 'PUT');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const small = Buffer.from(JSON.stringify({ model: hash, items: Array.from({ length: 10 }, (_, i) => ({ id: `s${i}`, features: [1, 2, 3, 4] })) }));
  for (let i = 0; i < 500; i++) await post(url, '/api/jobs', small, agent); // warm up
  const rates: number[] = [];
  for (let round = 0; round < 3; round++) {
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) {
      const a = await post(url, '/api/jobs', small, agent);
      if (a.status !== 201) throw new Error(`small POST: ${a.status} ${a.text}`);
    }
    rates.push(1000 / ((performance.now() - t0) / 1000));
  }
  console.log(`1,000 small POSTs (10 items, ${small.byteLength} bytes), one at a time: ${rates.map((r) => r.toFixed(0)).join(', ')} per second`);
  const rows: string[] = [];
  for (const mb of sizes.length > 0 ? sizes : [100]) {
    const { body, upload } = text ? textBody(mb, blob) : { body: itemsBody(hash, mb), upload: undefined };
    await ask(child, 'reset');
    let done = false;
    let slowest = 0;
    const probe = (async () => {
      while (!done) {
        const t0 = performance.now();
        // A connection of its own each time (a kept-alive one may be closed by the coordinator as it is reused).
        await new Promise<void>((resolve, reject) => {
          const req = request(`${url}/healthz`, { agent: false }, (res) => res.resume().on('end', () => resolve()));
          req.on('error', reject);
          req.end();
        });
        slowest = Math.max(slowest, performance.now() - t0);
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const t0 = performance.now();
    if (upload !== undefined) {
      const put = await post(url, `/api/blobs/${upload.hash}`, Buffer.from(upload.bytes), false, 'PUT');
      if (put.status !== 201) throw new Error(`PUT: ${put.status} ${put.text}`);
    }
    const answer = await post(url, '/api/jobs', body, false);
    const wall = performance.now() - t0;
    done = true;
    await probe;
    const s = await ask(child, 'stats');
    rows.push(
      `| ${(body.byteLength / 1e6).toFixed(0)} MB${upload === undefined ? '' : ` + ${(upload.bytes.byteLength / 1e6).toFixed(0)} MB blob`} | ${answer.status} | ${(wall / 1000).toFixed(1)} s | ${s.beforeSubmitMs.toFixed(0)} ms | ${s.maxDelayMs.toFixed(0)} ms | ${s.submitMs.toFixed(0)} ms | ${slowest.toFixed(0)} ms | ${s.peakRssMb.toFixed(0)} MiB |`,
    );
    if (answer.status !== 201) rows.push(`|   ${answer.text.trim()} |`);
  }
  console.log('| body | status | wall | longest block before submit | longest block in all | ScoreJobs.submit | slowest /healthz | peak RSS |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const r of rows) console.log(r);

  agent.destroy();
  child.send('stop');
  await new Promise((resolve) => child.once('exit', resolve));
}

if (process.argv.includes('--serve')) await serve();
else await main();
