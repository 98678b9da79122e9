// The dashboard's live feed: a socket.io server of its own on `/dashboard.io` that pushes a snapshot of the pool once a
// second to each connected page — the workers, the jobs its token may see (with rate and ETA), and each visible
// training job's metrics per step (for its charts). The page never polls. The client token rides in the upgrade URL
// (`?token=`; a browser cannot set headers on a websocket) and is checked before the websocket exists, so a stranger
// gets a bare refusal and no buffer; pages send nothing, so their frames are capped at a few bytes.
import type { Server as HttpServer } from 'node:http';
import type { Logger } from 'pino';
import { Server, type Socket } from 'socket.io';
import { ownerId, type Auth, type Principal } from './auth.js';
import type { JobRegistry } from './job-registry.js';
import { workerViews } from './worker-view.js';

/** socket.io's path for the dashboard (the workers' is the default /socket.io). */
export const DASHBOARD_PATH = '/dashboard.io';
/** How often a snapshot is pushed. */
const PUSH_MS = 1_000;
/** Metric lines per training job in a snapshot (the latest). */
const METRIC_LINES = 500;
/**
 * A snapshot's bounds, so a pool of thousands of workers or jobs costs the event loop (and each page) a bounded
 * amount a second: the first MAX_WORKERS workers, every unfinished job and the MAX_ENDED_JOBS latest ended ones (the
 * counts of all are in the snapshot; `fedpool status` and the API list everything).
 */
const MAX_WORKERS = 200;
const MAX_ENDED_JOBS = 100;

/** A job as the dashboard shows it: its status, owner id, average rate and, while it runs, an ETA. */
export interface DashboardJob {
  id: string;
  kind: string;
  state: string;
  progress: { done: number; total: number };
  createdAt: string;
  finishedAt?: string;
  error?: string;
  waiting?: string;
  owner: string | null;
  /** Progress units (items or steps) per second since submission; null before any. */
  rate: number | null;
  /** Seconds to the end at that rate; null when ended or unknown. */
  etaSeconds: number | null;
}

export interface DashboardSnapshot {
  time: string;
  workers: ReturnType<typeof workerViews>;
  /** Connected workers in all (`workers` holds the first MAX_WORKERS). */
  workerCount: number;
  jobs: DashboardJob[];
  /** Jobs `who` may see in all (`jobs` holds the unfinished ones and the latest ended ones). */
  jobCount: number;
  /** Per visible training job: its metrics lines (the latest METRIC_LINES). */
  training: Record<string, Array<{ step: number; loss: number | null; accuracy: number | null; participants: number; staleness_mean: number | null }>>;
}

/** What the dashboard shows `who` now (pure of the registry's state). */
export function dashboardSnapshot(jobs: JobRegistry, who: Principal, now: number): DashboardSnapshot {
  const all = jobs.allJobs(who);
  const ended = all.filter((j) => j.state === 'done' || j.state === 'failed' || j.state === 'cancelled');
  const shown = new Set(ended.sort((a, b) => Date.parse(b.finishedAt ?? b.createdAt) - Date.parse(a.finishedAt ?? a.createdAt)).slice(0, MAX_ENDED_JOBS));
  const isEnded = new Set(ended);
  const visible = all.filter((j) => !isEnded.has(j) || shown.has(j));
  const workers = workerViews(jobs);
  const training: DashboardSnapshot['training'] = {};
  for (const j of visible) {
    if (j.kind !== 'train') continue;
    // Only the latest lines are copied: this runs every second for every visible training job.
    const lines = jobs.training.metrics(j.id, -METRIC_LINES)?.lines ?? [];
    training[j.id] = lines.map((l) => ({ step: l.step, loss: l.loss, accuracy: l.accuracy, participants: l.participants, staleness_mean: l.staleness_mean }));
  }
  return {
    time: new Date(now).toISOString(),
    workers: workers.slice(0, MAX_WORKERS),
    workerCount: workers.length,
    jobCount: all.length,
    jobs: visible.map((j) => {
      const seconds = ((j.finishedAt === undefined ? now : Date.parse(j.finishedAt)) - Date.parse(j.createdAt)) / 1000;
      const rate = seconds > 0 && j.progress.done > 0 ? j.progress.done / seconds : null;
      const running = j.state === 'running' || j.state === 'queued';
      return {
        id: j.id, kind: j.kind, state: j.state, progress: j.progress, createdAt: j.createdAt,
        ...(j.finishedAt === undefined ? {} : { finishedAt: j.finishedAt }),
        ...(j.error === undefined ? {} : { error: j.error }),
        ...(j.waiting === undefined ? {} : { waiting: j.waiting }),
        owner: ownerId(jobs.ownerOf(j.id)),
        rate,
        etaSeconds: running && rate !== null ? (j.progress.total - j.progress.done) / rate : null,
      };
    }),
    training,
  };
}

/** The token of a dashboard upgrade or handshake URL (`?token=`). */
function urlToken(url: string | undefined): string | undefined {
  const token = new URL(url ?? '/', 'http://localhost').searchParams.get('token');
  return token === null || token === '' ? undefined : token;
}

export class DashboardFeed {
  readonly io: Server;
  private readonly pages = new Map<Socket, Principal>();
  private timer: NodeJS.Timeout | undefined;

  constructor(
    http: HttpServer,
    private readonly jobs: JobRegistry,
    auth: Auth,
    logger: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.io = new Server(http, {
      path: DASHBOARD_PATH,
      transports: ['websocket'],
      serveClient: false,
      maxHttpBufferSize: 1024,
      perMessageDeflate: false,
      // The workers' socket.io server leaves other paths' upgrades alone; this one must not end theirs either.
      destroyUpgrade: false,
      allowRequest: (req, callback) => {
        const result = auth.check('submitter', urlToken(req.url));
        if (result.ok) callback(null, true);
        else {
          logger.warn({ address: req.socket.remoteAddress, reason: result.reason }, 'dashboard refused');
          callback(result.reason, false);
        }
      },
    });
    this.io.on('connection', (socket) => {
      const result = auth.check('submitter', urlToken(socket.request.url));
      if (!result.ok) {
        socket.disconnect(true);
        return;
      }
      this.pages.set(socket, result.principal);
      socket.on('disconnect', () => {
        this.pages.delete(socket);
        if (this.pages.size === 0) this.stopTimer();
      });
      this.push(socket, result.principal);
      this.timer ??= setInterval(() => this.pushAll(), PUSH_MS);
    });
  }

  private push(socket: Socket, who: Principal): void {
    socket.emit('snapshot', dashboardSnapshot(this.jobs, who, this.now()));
  }

  /** One snapshot per distinct principal, sent to each of its pages. */
  private pushAll(): void {
    const byOwner = new Map<string, DashboardSnapshot>();
    for (const [socket, who] of this.pages) {
      const key = `${who.admin ? 'admin' : 'submitter'}:${who.owner ?? ''}`;
      let snapshot = byOwner.get(key);
      if (snapshot === undefined) byOwner.set(key, (snapshot = dashboardSnapshot(this.jobs, who, this.now())));
      socket.emit('snapshot', snapshot);
    }
  }

  private stopTimer(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  async close(): Promise<void> {
    this.stopTimer();
    for (const socket of this.pages.keys()) socket.disconnect(true);
    this.pages.clear();
    this.io.engine.close();
  }
}
