// The `fedpool` command line. Every command of the README's Commands table is declared here with its full set of
// flags, so `--help` documents the contract even for commands whose implementation has not landed yet; those
// say so in one line and exit 2.
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { UserError } from './errors.js';
import { collect, DEFAULT_URL, integer, nonNegativeNumber, positiveNumber, redundancy, url } from './options.js';
import type { ScorerApi } from '../shared/protocol/messages.js';
import { SELECT_MODES } from '../shared/scoring/selection.js';

/**
 * The inference-server APIs a worker can front: the protocol's SCORER_APIS, spelled out here because a type-only
 * import keeps `--help` from loading the protocol. The embedding APIs feed bundles whose input is `embedding:DIM`
 * (docs/scorers.md, "Embedding heads").
 */
const SCORER_CLI_APIS = ['vllm-classify', 'tei', 'openrlhf', 'openai-logprobs', 'openai-embeddings', 'ollama-embed'] as const satisfies readonly ScorerApi[];

/** The package's version, found whether this runs from source (cli/) or compiled (dist/cli/). */
function packageVersion(): string {
  for (const rel of ['../package.json', '../../package.json']) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'fedpool' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not at this level
    }
  }
  return 'unknown';
}

/**
 * Each command's implementation lives in cli/commands/<name>.ts and is imported only when that command runs, so
 * `fedpool --help` stays fast and one command's dependencies (TF.js, SQLite) never load for another.
 */
function lazy(file: string): (options: Record<string, unknown>) => Promise<void> {
  return async (options) => {
    const mod = (await import(`./commands/${file}.js`)) as { run: (o: Record<string, unknown>) => Promise<void> };
    await mod.run(options);
  };
}

const urlOption = () => new Option('--url <url>', 'coordinator address').default(DEFAULT_URL).argParser(url);
const tokenOption = () => new Option('--token <token>', 'bearer token (or env FEDPOOL_TOKEN)').env('FEDPOOL_TOKEN');
const tokenFileOption = () => new Option('--token-file <file>', 'read the bearer token from this file (its one line; keeps it out of ps)');
const caOption = () => new Option('--ca <file>', "PEM CA certificate to trust for an https coordinator (instead of the system's)");

export function buildProgram(): Command {
  const program = new Command('fedpool')
    .description('Federated and distributed evaluation and aggregation: scoring pools, federated fine-tuning, simulated populations.')
    .version(packageVersion())
    .showSuggestionAfterError(true)
    .exitOverride();

  program
    .command('coordinator')
    .description('run the coordinator: dispatches shards to workers, aggregates results, serves the HTTP API and dashboard')
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <port>', 'port to listen on (0 = pick a free one)', integer(0, 65535), 7447)
    .addOption(new Option('--worker-token <token>', 'token that admits workers (repeatable; env FEDPOOL_WORKER_TOKEN)').argParser(collect).env('FEDPOOL_WORKER_TOKEN'))
    .addOption(new Option('--client-token <token>', 'token that admits job submitters; each sees only its own jobs (repeatable; env FEDPOOL_CLIENT_TOKEN)').argParser(collect).env('FEDPOOL_CLIENT_TOKEN'))
    .addOption(new Option('--admin-token <token>', 'token of a submitter that sees and cancels every job (repeatable; env FEDPOOL_ADMIN_TOKEN)').argParser(collect).env('FEDPOOL_ADMIN_TOKEN'))
    .option('--state <file>', "SQLite state file (':memory:' for none)", './fedpool.db')
    .option('--lease-ms <ms>', 'shard lease duration', integer(1), 30000)
    .option('--metrics-public', 'serve /metrics without a token')
    .option('--max-connections <n>', 'TCP connections (HTTP and worker websockets) held at once, in all; more are closed at once (default 10000)', integer(1))
    .addOption(new Option('--worker-identity <who>', "who a worker is for blame, records and --redundancy votes: its --name, or its worker token (give each party its own --worker-token: many names or machines of one token count once)").choices(['name', 'token']).default('name'))
    .option('--max-connections-per-ip <n>', 'TCP connections held at once from one address (an IPv6 /64); raise it behind a proxy (default 1024)', integer(1))
    .option(
      '--retain-jobs <days>',
      'delete ended jobs (done, failed, cancelled) DAYS after they ended, with their results and checkpoints, and blobs no job names any more (fractions allowed; default: keep every job forever)',
      positiveNumber,
    )
    .option('--tls-cert <file>', 'serve https and wss with this PEM certificate (chain); needs --tls-key')
    .option('--tls-key <file>', 'PEM private key of --tls-cert')
    .option('--aggregation-threads <n>', 'helper threads for the aggregation kernels of training jobs, for machines with cores to spare (default 0: none)', integer(0, 64), 0)
    .action(lazy('coordinator'));

  program
    .command('worker')
    .description('join a coordinator as a worker and execute scoring and fine-tuning shards')
    .addOption(urlOption())
    .addOption(tokenOption())
    .addOption(tokenFileOption())
    .addOption(caOption())
    .option('--name <name>', 'worker name (default: host name + pid)')
    .option('--threads <k>', 'tensor threads (default: cores − 1, at least 1)', integer(1, 1024))
    .addOption(new Option('--backend <backend>', 'tensor backend').choices(['auto', 'webgpu', 'tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu']).default('auto'))
    .option('--data <name=path>', 'a local dataset that training jobs may name (repeatable)', collect)
    .option('--delay-ms <ms>', 'wait this long before sending each result (experiments: slow or heterogeneous workers)', integer(0))
    .option('--scorer-url <url>', 'score through an inference server (vLLM, SGLang, TEI, OpenRLHF, OpenAI-compatible, Ollama) at this address', url)
    .addOption(new Option('--scorer-api <api>', 'API of --scorer-url').choices(SCORER_CLI_APIS))
    .option('--scorer-model <name>', 'model the server serves, that jobs name with `fedpool score --scorer` or an embedding head\'s --embedding-model (default: what the server reports)')
    .option('--scorer-key-env <var>', 'environment variable holding an API key, sent as Authorization: Bearer (never logged)')
    .option('--scorer-concurrency <n>', 'requests in flight to the server at once', integer(1, 1024), 4)
    .option('--scorer-batch <b>', 'items per request where the API batches (tei, openrlhf, the embedding APIs; default 32)', integer(1, 65536))
    .option('--scorer-timeout-ms <ms>', 'timeout of one request to the server', integer(1), 60000)
    .option('--scorer-template <t>', 'text built from {prompt} and {response} (openrlhf, openai-logprobs; default "{prompt}{response}")')
    .option('--scorer-logprobs <k>', 'top-k log-probs per token asked of openai-logprobs servers', integer(1, 20), 5)
    .option('--scorer-vocab <v>', "vocabulary size for openai-logprobs' approximate self-certainty", integer(2), 32000)
    .action(lazy('worker'));

  const model = program.command('model').description("model bundles: `model init` writes a new one, `model pull ID` a training job's");
  model
    .command('init')
    .description('write a new TF.js LayersModel plus its fedpool.json manifest')
    .requiredOption('--out <dir>', 'output directory')
    .requiredOption('--input <spec>', 'features:DIM, text:DIM (hashing featurizer over the text fields) or embedding:DIM (a head over the embeddings of --embedding-model, computed by workers fronting an embedding server)')
    .option('--embedding-model <name>', 'with --input embedding:DIM: the embedding model whose vectors the head reads (its workers\' --scorer-model)')
    .requiredOption('--output <spec>', 'reward or classes:C')
    .option('--hidden <sizes>', 'hidden layer sizes, comma-separated', '64,32')
    .option('--seed <s>', 'initialisation seed', integer(0), 0)
    .action(lazy('model-init'));
  model
    .command('pull')
    .description("write a training job's model (current weights while it runs, final ones once it ended) as a bundle directory")
    .argument('<id>', 'the training job id (fedpool jobs lists them)')
    .requiredOption('--out <dir>', 'output directory (missing or empty)')
    .addOption(urlOption())
    .addOption(tokenOption())
    .addOption(tokenFileOption())
    .addOption(caOption())
    .action((id: string, options: Record<string, unknown>) => lazy('model-pull')({ ...options, id }));

  program
    .command('score')
    .description('score a JSONL file of items, pairs or groups across the pool')
    .addOption(urlOption())
    .addOption(tokenOption())
    .addOption(tokenFileOption())
    .addOption(caOption())
    .option('--model <dir>', 'model bundle directory')
    .option('--scorer <name>', "score with the workers' inference servers that serve this model (instead of --model)")
    .option('--logprobs', 'with --scorer: token log-probs from openai-logprobs workers (implied by the log-prob --select modes)')
    .option('--input <file>', 'input JSONL')
    .option('--output <file>', 'output JSONL (one line per input line, in input order)')
    .option('--shard-size <n>', 'items per shard', integer(1), 256)
    .option('--redundancy <r>', 'R: score each shard on R workers and accept what a majority of them agree on; adaptive: spot-check workers by their record', redundancy, 1)
    .option('--agree-tol <x>', 'redundant scores agree when |a − b| ≤ x · max(1, |a|, |b|)', nonNegativeNumber, 1e-4)
    .addOption(new Option('--select <mode>', 'selection per group').choices(['none', ...SELECT_MODES]).default('none'))
    .option('--borda-p <p>', 'certainty-vote: a vote of rank r among N counts (N − r + 1)^p (default 0.5; with --resume, the job\'s)', positiveNumber)
    .option('--selected <file>', "with --select: where each group's choice goes, one JSON line per group (default: the output's name with .selected.jsonl)")
    .option('--resume <id>', 'wait for an existing job and write its results')
    .option('--detach', 'on Ctrl-C, leave the job running (and say how to follow or cancel it) instead of cancelling it')
    .action(lazy('score'));

  program
    .command('train')
    .description('federated fine-tuning over the pool (FedAvg, FedAU, FedBuff, robust aggregation)')
    .addOption(urlOption())
    .addOption(tokenOption())
    .addOption(tokenFileOption())
    .addOption(caOption())
    .option('--config <file>', 'train.json')
    .option('--out <dir>', 'output directory (model/, metrics.jsonl, config.json)')
    .option('--resume <id>', 'follow a training job submitted earlier and write --out as if never interrupted (instead of --config)')
    .option('--detach', 'on Ctrl-C, leave the job running (and say how to follow or cancel it) instead of cancelling it')
    .action(lazy('train'));

  program
    .command('simulate')
    .description('simulate client populations and compare aggregation rules')
    .addOption(new Option('--preset <name>', 'a built-in experiment').choices(['fedau-participation', 'monna-attacks', 'fedbuff-speed']).conflicts('config'))
    .option('--config <file>', 'sim.json: your own grid of experiments × algorithms (docs/sim-config.md)')
    .option('--seeds <s>', 'number of seeds (run in parallel threads)', integer(1), 1)
    .option('--out <dir>', 'output directory (metrics.csv, summary.json, report.html); refused when not empty, unless --force')
    .option('--force', 'write into a non-empty --out, overwriting its files')
    .option('--live', 'run a sim.json on a real coordinator with simulated socket.io workers (report: + the coordinator CPU and memory)')
    .option('--workers <n>', 'live: simulated workers, one per client (default: the config\'s clients); Byzantine workers come on top', integer(1))
    .option('--processes <p>', 'live: processes the workers are spread over (default: one per 250, at most 4)', integer(1))
    .option('--time-scale <s>', 'live: wall-clock seconds per unit of virtual time (job durations of the speed model)', positiveNumber, 0.02)
    .action(lazy('simulate'));

  program
    .command('demo')
    .description('start a local coordinator and two workers, run a small scoring and training job')
    .option('--keep', 'keep the demo pool running (and its dashboard) until Ctrl-C')
    .option('--out <dir>', 'where the demo keeps its models, inputs and results (missing or empty)', 'fedpool-demo')
    .action(lazy('demo'));

  const workers = program.command('workers').description('the pool\'s workers: `workers unquarantine NAME` lets one out of quarantine');
  workers
    .command('unquarantine')
    .description('let a quarantined worker take leases again, with a fresh record (an admin token when the coordinator has any)')
    .argument('<name>', 'the worker\'s --name (with --worker-identity token: the identity GET /api/workers shows)')
    .addOption(urlOption())
    .addOption(tokenOption())
    .addOption(tokenFileOption())
    .addOption(caOption())
    .action((name: string, options: Record<string, unknown>) => lazy('workers')({ ...options, name }));

  const jobCommand = (name: string, description: string, json: boolean): void => {
    const c = program.command(name).description(description);
    const takesId = name !== 'jobs' && name !== 'status';
    if (takesId) c.argument('<id>', 'the job id (fedpool jobs lists them)');
    c.addOption(urlOption()).addOption(tokenOption()).addOption(tokenFileOption()).addOption(caOption());
    if (json) c.option('--json', name === 'jobs' || name === 'status' || name === 'job' ? "print the coordinator's JSON instead of a table" : "print the job's final status as JSON instead of a line");
    c.action((...args: unknown[]) => {
      // commander passes the argument (when declared), then the options.
      const options = (takesId ? args[1] : args[0]) as Record<string, unknown>;
      return lazy(name)(takesId ? { ...options, id: args[0] } : options);
    });
  };
  jobCommand('jobs', 'list the jobs this token may see: id, kind, owner, state, progress, rate, age', true);
  jobCommand('job', 'one job in detail: state, progress, rate, why it waits, its error, each worker\'s share', true);
  jobCommand('cancel', 'cancel a queued or running job', true);
  jobCommand('wait', 'follow a job to its end, then exit with its status (0 done, 1 failed, 4 cancelled)', true);
  program
    .command('prune')
    .description('delete the ended jobs (done, failed, cancelled) this token may see that ended more than DAYS ago, with their results; the coordinator shrinks its state file and drops blobs no job needs')
    .requiredOption('--older <days>', 'age in days since a job ended (fractions allowed; 0: every ended job)', nonNegativeNumber)
    .addOption(urlOption())
    .addOption(tokenOption())
    .addOption(tokenFileOption())
    .addOption(caOption())
    .option('--json', 'print {"deleted","kept","ids"} as JSON')
    .action(lazy('prune'));
  jobCommand('status', 'the pool at a glance: connected workers (what each serves, device, state, items/s, record) and jobs', true);

  program
    .command('compare')
    .description('compare reward models by their fedpool score outputs: preference agreement, κ, rank correlation, best-of-n picks')
    .argument('<files...>', 'fedpool score output files (JSONL), one per model, joined by id')
    .option('--out <dir>', 'also write DIR/compare.json and DIR/compare.html (a self-contained report)')
    .action((files: string[], options: Record<string, unknown>) => lazy('compare')({ ...options, files }));

  return program;
}

/** Runs the CLI; returns the exit code. User errors are one line on stderr. */
export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv]);
    return 0;
  } catch (err) {
    if (err instanceof UserError) {
      process.stderr.write(`${err.message}\n`);
      return err.exitCode;
    }
    if (err instanceof CommanderError) {
      // commander already printed its message (or the help text for --help/--version, which exit 0).
      return err.exitCode;
    }
    process.stderr.write(`fedpool: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
