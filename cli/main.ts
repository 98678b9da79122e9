// The `fedpool` command line. Every command of ../shared/specs/contract.md is declared here with its full set of
// flags, so `--help` documents the contract even for commands whose implementation has not landed yet; those
// say so in one line and exit 2.
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { UserError } from './errors.js';
import { collect, DEFAULT_URL, integer, positiveNumber, url } from './options.js';

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
    .addOption(new Option('--client-token <token>', 'token that admits job submitters (repeatable; env FEDPOOL_CLIENT_TOKEN)').argParser(collect).env('FEDPOOL_CLIENT_TOKEN'))
    .option('--state <file>', "SQLite state file (':memory:' for none)", './fedpool.db')
    .option('--lease-ms <ms>', 'shard lease duration', integer(1), 30000)
    .option('--metrics-public', 'serve /metrics without a token')
    .action(lazy('coordinator'));

  program
    .command('worker')
    .description('join a coordinator as a worker and execute scoring and fine-tuning shards')
    .addOption(urlOption())
    .addOption(tokenOption())
    .option('--name <name>', 'worker name (default: host name + pid)')
    .option('--threads <k>', 'tensor threads (default: cores − 1, at least 1)', integer(1, 1024))
    .addOption(new Option('--backend <backend>', 'tensor backend').choices(['auto', 'webgpu', 'tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu']).default('auto'))
    .option('--data <name=path>', 'a local dataset that training jobs may name (repeatable)', collect)
    .option('--delay-ms <ms>', 'wait this long before sending each result (experiments: slow or heterogeneous workers)', integer(0))
    .option('--scorer-url <url>', 'score through an existing inference server', url)
    .addOption(new Option('--scorer-api <api>', 'API of --scorer-url').choices(['vllm-classify', 'openai-embeddings', 'openrlhf']))
    .action(lazy('worker'));

  const model = program.command('model').description('model bundles: `model init` writes a new one');
  model
    .command('init')
    .description('write a new TF.js LayersModel plus its fedpool.json manifest')
    .requiredOption('--out <dir>', 'output directory')
    .requiredOption('--input <spec>', 'features:DIM or text:DIM (hashing featurizer over the text fields)')
    .requiredOption('--output <spec>', 'reward or classes:C')
    .option('--hidden <sizes>', 'hidden layer sizes, comma-separated', '64,32')
    .option('--seed <s>', 'initialisation seed', integer(0), 0)
    .action(lazy('model-init'));

  program
    .command('score')
    .description('score a JSONL file of items, pairs or groups across the pool')
    .addOption(urlOption())
    .addOption(tokenOption())
    .option('--model <dir>', 'model bundle directory')
    .option('--input <file>', 'input JSONL')
    .option('--output <file>', 'output JSONL (one line per input line, in input order)')
    .option('--shard-size <n>', 'items per shard', integer(1), 256)
    .option('--redundancy <r>', 'score each shard on R workers', integer(1), 1)
    .addOption(new Option('--select <mode>', 'selection per group').choices(['none', 'best-of-n', 'majority', 'weighted-majority']).default('none'))
    .option('--resume <id>', 'wait for an existing job and write its results')
    .action(lazy('score'));

  program
    .command('train')
    .description('federated fine-tuning over the pool (FedAvg, FedAU, FedBuff, robust aggregation)')
    .addOption(urlOption())
    .addOption(tokenOption())
    .requiredOption('--config <file>', 'train.json')
    .option('--out <dir>', 'output directory (model/, metrics.jsonl, config.json)')
    .action(lazy('train'));

  program
    .command('simulate')
    .description('simulate client populations and compare aggregation rules')
    .addOption(new Option('--preset <name>', 'a built-in experiment').choices(['fedau-participation', 'monna-attacks', 'fedbuff-speed']).conflicts('config'))
    .option('--config <file>', 'sim.json: your own grid of experiments × algorithms (docs/sim-config.md)')
    .option('--seeds <s>', 'number of seeds (run in parallel threads)', integer(1), 1)
    .option('--out <dir>', 'output directory (metrics.csv, summary.json, report.html)')
    .option('--live', 'run a sim.json on a real coordinator with simulated socket.io workers (report: + the coordinator CPU and memory)')
    .option('--workers <n>', 'live: simulated workers, one per client (default: the config\'s clients); Byzantine workers come on top', integer(1))
    .option('--processes <p>', 'live: processes the workers are spread over (default: one per 250, at most 4)', integer(1))
    .option('--time-scale <s>', 'live: wall-clock seconds per unit of virtual time (job durations of the speed model)', positiveNumber, 0.02)
    .action(lazy('simulate'));

  program
    .command('demo')
    .description('start a local coordinator and two workers, run a small scoring and training job')
    .option('--keep', 'keep the demo pool running')
    .action(lazy('demo'));

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
