// Ctrl-C while `fedpool score` or `fedpool train` submits or follows a job: the job would otherwise keep running on
// the shared pool for nobody. The first Ctrl-C cancels it and says so — the command then ends as the job does,
// keeping what it received (partial output, metrics) — or, with --detach, leaves it running, says how to follow or
// cancel it and exits. A Ctrl-C while the job is being submitted cancels it as soon as the coordinator has answered
// with its id (a job the user never saw is never left behind). A second Ctrl-C exits at once.
import type { CoordinatorApi } from './api.js';

/** Exit status after Ctrl-C (128 + SIGINT), as a shell reports it. */
export const INTERRUPTED_EXIT = 130;

export class Interrupt {
  private job: { api: CoordinatorApi; id: string; follow: string | undefined } | undefined;
  private signals = 0;
  private done = false;
  /** The job was cancelled by Ctrl-C (the command should end with INTERRUPTED_EXIT once it has kept what it has). */
  cancelled = false;

  /** Listens for Ctrl-C from now on (call it before submitting, so no job can be left behind). */
  constructor(
    private readonly command: string,
    private readonly detach: boolean,
  ) {
    process.on('SIGINT', this.onSignal);
  }

  /** The job exists: `follow` is how to pick it up again besides `fedpool wait ID`, e.g. `fedpool score --resume ID --output FILE`. */
  submitted(api: CoordinatorApi, id: string, follow?: string): void {
    this.job = { api, id, follow };
    if (this.signals > 0) this.cancel();
  }

  /** Stops listening (the job ended, or the command gave up). */
  dispose(): void {
    process.off('SIGINT', this.onSignal);
  }

  private readonly onSignal = (): void => {
    this.signals++;
    if (this.signals > 1) process.exit(INTERRUPTED_EXIT);
    const job = this.job;
    if (job === undefined) {
      process.stderr.write(`\nfedpool ${this.command}: the job is being submitted; it is cancelled as soon as it exists (Ctrl-C again to exit at once)\n`);
      return;
    }
    if (this.detach) {
      const follow = job.follow === undefined ? `fedpool wait ${job.id}` : `${job.follow} (or fedpool wait ${job.id})`;
      process.stderr.write(`\nfedpool ${this.command}: job ${job.id} keeps running. Follow it: ${follow}; cancel it: fedpool cancel ${job.id}\n`);
      process.exit(INTERRUPTED_EXIT);
    }
    this.cancel();
  };

  private cancel(): void {
    const job = this.job;
    if (job === undefined || this.done) return;
    this.done = true;
    process.stderr.write(`\nfedpool ${this.command}: cancelling job ${job.id} (Ctrl-C again to exit at once)\n`);
    job.api.cancel(job.id).then(
      () => {
        this.cancelled = true;
        process.stderr.write(`fedpool ${this.command}: job ${job.id} cancelled\n`);
      },
      (e: unknown) => {
        process.stderr.write(`fedpool ${this.command}: could not cancel job ${job.id} (${e instanceof Error ? e.message : String(e)}); see fedpool job ${job.id}\n`);
        process.exit(INTERRUPTED_EXIT);
      },
    );
  }
}
