// The lifecycle commands through the real CLI against a real coordinator: fedpool jobs / job / cancel / wait, and
// Ctrl-C on fedpool score (cancels the job it submitted; --detach leaves it and says how to come back).
import test from 'ava';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { runFedpool, startFedpool } from '../helpers/processes.js';
import { FakeWorker, api, startCoordinatorProcess, tempDir, type CoordinatorProcess } from '../server/helpers.js';

const MINE = 'c';
const OTHER = 'd';
let c: CoordinatorProcess;
let dir: string;
let cleanup: () => void;
let input: string;
const ITEMS = 10;

test.before(async () => {
  ({ dir, cleanup } = tempDir());
  c = await startCoordinatorProcess(['--state', ':memory:', '--client-token', MINE, '--client-token', OTHER, '--worker-token', 'w']);
  const r = await runFedpool(['model', 'init', '--out', path.join(dir, 'model'), '--input', 'features:3', '--output', 'reward', '--hidden', '4']);
  if (r.status !== 0) throw new Error(r.stderr);
  input = path.join(dir, 'in.jsonl');
  writeFileSync(input, Array.from({ length: ITEMS }, (_, i) => JSON.stringify({ id: `i${i}`, features: [i, 1, 2] })).join('\n') + '\n');
});

test.after.always(async () => {
  await c?.stop();
  cleanup?.();
});

const cli = (args: string[], token = MINE) => runFedpool([...args, '--url', c.url, '--token', token]);

async function state(id: string): Promise<string> {
  return ((await (await api(c.url, `/api/jobs/${id}`, { token: MINE })).json()) as { state: string }).state;
}

/** Starts `fedpool score` with no worker connected (the job waits) and resolves with the child and its job id. */
async function submitWaiting(t: import('ava').ExecutionContext, output: string, ...extra: string[]) {
  const child = startFedpool(t, ['score', '--url', c.url, '--token', MINE, '--model', path.join(dir, 'model'), '--input', input, '--output', output, '--shard-size', '5', ...extra]);
  const [, id] = await child.line(/^fedpool job (\S+) submitted$/m, { stream: 'stderr', what: 'the job id' });
  return { child, id: id! };
}

test.serial('Ctrl-C with --detach leaves the job running and says how to follow and cancel it; jobs, job, cancel and wait then manage it', async (t) => {
  const output = path.join(dir, 'detached.jsonl');
  const { child, id } = await submitWaiting(t, output, '--detach');
  await child.line(new RegExp(`^fedpool score: job ${id} waits: no connected worker scores model bundles$`, 'm'), { stream: 'stderr', what: 'why it waits' });
  t.is(await child.stop('SIGINT'), 130);
  t.regex(child.stderr(), new RegExp(`job ${id} keeps running\\. Follow it: fedpool score --resume ${id} --output ${output.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(or fedpool wait ${id}\\); cancel it: fedpool cancel ${id}`));
  const live = await state(id); // queued until a worker that can take it connects
  t.true(live === 'queued' || live === 'running', live);

  // fedpool jobs: the owner is the start of the token's sha-256 ("you" in the table); another token sees nothing.
  const list = await cli(['jobs', '--json']);
  t.is(list.status, 0, list.stderr);
  const jobs = JSON.parse(list.stdout) as Array<{ id: string; owner: string; state: string; progress: { done: number; total: number } }>;
  const mine = jobs.find((j) => j.id === id);
  t.like(mine, { state: live, owner: createHash('sha256').update(MINE).digest('hex').slice(0, 12), progress: { done: 0, total: ITEMS } });
  const table = await cli(['jobs']);
  t.regex(table.stdout, /^ID\s+KIND\s+OWNER\s+STATE\s+PROGRESS\s+RATE\s+AGE$/m);
  t.regex(table.stdout, new RegExp(`^${id}\\s+score\\s+you\\s+${live}\\s+0/${ITEMS} items\\s+-\\s+\\d+s$`, 'm'));
  t.regex((await cli(['jobs'], OTHER)).stdout, /^no jobs on the coordinator at /);

  // fedpool job: detail; an unknown id (or another owner's) is one line, exit 1.
  const detail = await cli(['job', id]);
  t.is(detail.status, 0, detail.stderr);
  t.regex(detail.stdout, new RegExp(`^  state:     ${live}$`, 'm'));
  t.regex(detail.stdout, new RegExp(`^  progress:  0/${ITEMS} items$`, 'm'));
  t.regex(detail.stdout, /^ {2}workers: {3}no results yet/m);
  t.regex(detail.stdout, /^ {2}waiting: {3}no connected worker scores model bundles$/m);
  for (const [args, token] of [[['job', id], OTHER], [['job', 'nope'], MINE], [['cancel', 'nope'], MINE], [['wait', 'nope'], MINE]] as const) {
    const r = await cli([...args], token);
    t.is(r.status, 1, args.join(' '));
    t.regex(r.stderr, new RegExp(`^fedpool ${args[0]}: no job ${args[1]} on the coordinator at \\S+ \\(fedpool jobs lists yours\\)\\n$`));
  }

  // fedpool wait follows it; fedpool cancel ends it; wait exits 4 with the final state.
  const wait = startFedpool(t, ['wait', id, '--url', c.url, '--token', MINE, '--json']);
  await wait.line(new RegExp(`^fedpool wait: job ${id} ${live} 0/${ITEMS} items$`, 'm'), { stream: 'stderr', what: 'wait following' });
  const cancel = await cli(['cancel', id]);
  t.is(cancel.status, 0, cancel.stderr);
  t.is(cancel.stdout, `fedpool: job ${id} cancelled at 0/${ITEMS}\n`);
  t.is(await wait.status, 4, wait.stderr());
  t.like(JSON.parse(wait.stdout()), { id, state: 'cancelled', progress: { done: 0, total: ITEMS } });
  t.regex(wait.stderr(), new RegExp(`^fedpool wait: job ${id} ended cancelled$`, 'm'));
  const again = await cli(['cancel', id, '--json']);
  t.is(again.status, 0, 'cancelling a cancelled job is no error');
  t.like(JSON.parse(again.stdout), { id, state: 'cancelled' });
});

test.serial('Ctrl-C on fedpool score cancels the job it submitted, says so and keeps the partial output', async (t) => {
  const output = path.join(dir, 'cancelled.jsonl');
  const { child, id } = await submitWaiting(t, output);
  t.is(await child.stop('SIGINT'), 130, child.stderr());
  t.regex(child.stderr(), new RegExp(`^fedpool score: cancelling job ${id} \\(Ctrl-C again to exit at once\\)$`, 'm'));
  t.regex(child.stderr(), new RegExp(`^fedpool score: job ${id} cancelled$`, 'm'));
  t.regex(child.stderr(), new RegExp(`fedpool score: job ${id} ended cancelled \\(Ctrl-C\\) after 0 of ${ITEMS} lines \\(partial output kept in `));
  t.is(await state(id), 'cancelled');
  t.is(readFileSync(output, 'utf8'), '');
});

test.serial('a job with --redundancy above the connected workers says why it waits, once', async (t) => {
  const w = await FakeWorker.connect(c.url, { name: 'solo', token: 'w' });
  t.teardown(() => w.close());
  w.pull(4);
  const { child, id } = await submitWaiting(t, path.join(dir, 'redundant.jsonl'), '--redundancy', '3');
  const reason = `fedpool score: job ${id} waits: --redundancy 3 needs 3 workers that can take it; 1 connected`;
  await child.line(new RegExp(`^${reason.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`, 'm'), { stream: 'stderr', what: 'why it waits' });
  t.is(await child.stop('SIGINT'), 130, child.stderr());
  t.is(child.stderr().split(reason).length - 1, 1, 'said once');
  t.is(await state(id), 'cancelled');
});

test.serial('a job a worker finished: wait exits 0, job shows each worker’s share, cancel refuses an ended job', async (t) => {
  const w = await FakeWorker.connect(c.url, { name: 'helper', token: 'w' });
  t.teardown(() => w.close());
  w.pull(4);
  const output = path.join(dir, 'done.jsonl');
  const r = await runFedpool(['score', '--url', c.url, '--token', MINE, '--model', path.join(dir, 'model'), '--input', input, '--output', output, '--shard-size', '5']);
  t.is(r.status, 0, r.stderr);
  const id = (JSON.parse(r.stdout) as { job: string }).job;
  const wait = await cli(['wait', id]);
  t.is(wait.status, 0, wait.stderr);
  t.is(wait.stdout, `fedpool: job ${id} done at ${ITEMS}/${ITEMS} items\n`);
  const detail = JSON.parse((await cli(['job', id, '--json'])).stdout) as { workers: unknown };
  t.deepEqual(detail.workers, [{ worker: 'helper', shards: 2 }]);
  t.regex((await cli(['job', id])).stdout, /^ {4}helper {2}2 {2}100%$/m);
  const cancel = await cli(['cancel', id]);
  t.is(cancel.status, 1);
  t.is(cancel.stderr, `fedpool cancel: job ${id} already ended done; nothing to cancel\n`);

  // --select: the choice per group goes to its own file (the summary says where); --resume makes the same choice.
  const grouped = path.join(dir, 'grouped.jsonl');
  writeFileSync(grouped, Array.from({ length: ITEMS }, (_, i) => JSON.stringify({ id: `g${i}`, features: [i % 3, 1, 2], group: `q${i % 2}` })).join('\n') + '\n');
  const picked = await runFedpool(['score', '--url', c.url, '--token', MINE, '--model', path.join(dir, 'model'), '--input', grouped, '--output', path.join(dir, 'grouped-out.jsonl'), '--select', 'best-of-n']);
  t.is(picked.status, 0, picked.stderr);
  const summary = JSON.parse(picked.stdout) as { job: string; items: number; selected: { file: string } };
  t.like(summary, { items: ITEMS, selected: { mode: 'best-of-n', groups: 2, file: path.join(dir, 'grouped-out.selected.jsonl') } });
  const choices = readFileSync(summary.selected.file, 'utf8');
  t.is(choices, '{"group":"q0","selected":"g2"}\n{"group":"q1","selected":"g5"}\n', 'the highest fake score (the feature sum) of each group, first on ties');
  const resumed = await runFedpool(['score', '--url', c.url, '--token', MINE, '--resume', summary.job, '--output', path.join(dir, 'again.jsonl')]);
  t.is(resumed.status, 0, resumed.stderr);
  t.like(JSON.parse(resumed.stdout), { job: summary.job, items: ITEMS, selected: { mode: 'best-of-n', groups: 2, file: path.join(dir, 'again.selected.jsonl') } });
  t.is(readFileSync(path.join(dir, 'again.selected.jsonl'), 'utf8'), choices);
  t.is(readFileSync(path.join(dir, 'again.jsonl'), 'utf8'), readFileSync(path.join(dir, 'grouped-out.jsonl'), 'utf8'));
});

test.serial('Ctrl-C on fedpool train cancels the job it submitted and keeps the metrics; --detach leaves it running', async (t) => {
  const r = await runFedpool(['model', 'init', '--out', path.join(dir, 'classifier'), '--input', 'features:3', '--output', 'classes:2', '--hidden', '4']);
  t.is(r.status, 0, r.stderr);
  // Data held by workers, and no worker holds it: the job waits for ever.
  const config = path.join(dir, 'train.json');
  writeFileSync(config, JSON.stringify({
    model: 'classifier', task: 'classify', data: { source: 'worker', name: 'nobody-has-it', clients: 2 },
    mode: 'sync', rounds: 3, clientsPerRound: 2, local: { steps: 1, batchSize: 4, lr: 0.1, momentum: 0 },
  }));
  const train = (out: string, ...extra: string[]) => startFedpool(t, ['train', '--url', c.url, '--token', MINE, '--config', config, '--out', path.join(dir, out), ...extra]);
  const child = train('train-cancelled');
  const [, id] = await child.line(/^fedpool job (\S+) submitted$/m, { stream: 'stderr', what: 'the job id' });
  await child.line(new RegExp(`^fedpool train: job ${id} waits: no connected worker holds dataset nobody-has-it \\(fedpool worker --data nobody-has-it=PATH\\)$`, 'm'), { stream: 'stderr', what: 'why it waits' });
  t.is(await child.stop('SIGINT'), 130, child.stderr());
  t.regex(child.stderr(), new RegExp(`fedpool train: job ${id} cancelled\\n`));
  t.regex(child.stderr(), new RegExp(`fedpool train: job ${id} ended cancelled \\(Ctrl-C\\) after 0 of 3 steps \\(metrics kept in `));
  t.is(await state(id!), 'cancelled');
  t.is(readFileSync(path.join(dir, 'train-cancelled', 'metrics.jsonl'), 'utf8'), '');

  const detached = train('train-detached', '--detach');
  const [, other] = await detached.line(/^fedpool job (\S+) submitted$/m, { stream: 'stderr', what: 'the job id' });
  t.is(await detached.stop('SIGINT'), 130);
  t.regex(detached.stderr(), new RegExp(`job ${other} keeps running\\. Follow it: fedpool wait ${other}; cancel it: fedpool cancel ${other}`));
  t.not(await state(other!), 'cancelled');
  t.is((await cli(['cancel', other!])).status, 0);
});

test.serial('fedpool status shows the connected workers and the jobs; fedpool prune deletes ended jobs older than DAYS', async (t) => {
  const w = await FakeWorker.connect(c.url, { name: 'viewer', token: 'w' });
  t.teardown(() => w.close());
  const status = await cli(['status']);
  t.is(status.status, 0, status.stderr);
  t.regex(status.stdout, /^coordinator \S+: 1 worker\(s\), 0 job\(s\) queued or running, \d+ in all$/m);
  t.regex(status.stdout, /^WORKER\s+SERVES\s+DEVICE\s+STATE\s+ITEMS\/S\s+SHARDS\s+RECORD/m);
  t.regex(status.stdout, /^viewer\s+\S+\s+\S+\s+idle\s+/m);
  const json = JSON.parse((await cli(['status', '--json'])).stdout) as { workers: Array<{ name: string }>; jobs: unknown[] };
  t.deepEqual(json.workers.map((x) => x.name), ['viewer']);

  const ended = (JSON.parse((await cli(['jobs', '--json'])).stdout) as Array<{ state: string }>).length;
  t.true(ended >= 4, `${ended} ended jobs from the tests before`);
  const recent = await cli(['prune', '--older', '1', '--json']);
  t.is(recent.status, 0, recent.stderr);
  t.deepEqual(JSON.parse(recent.stdout), { deleted: 0, kept: ended, ids: [] });
  t.like(JSON.parse((await cli(['prune', '--older', '0', '--json'], OTHER)).stdout), { deleted: 0, kept: 0 }, 'another token prunes only its own');
  const all = await cli(['prune', '--older', '0']);
  t.is(all.status, 0, all.stderr);
  t.is(all.stdout, `fedpool prune: deleted ${ended} job(s) that ended more than 0 day(s) ago; 0 kept\n`);
  t.regex((await cli(['jobs'])).stdout, /^no jobs on the coordinator/);
  const bad = await cli(['prune', '--older', '-1']);
  t.is(bad.status, 1);
});
