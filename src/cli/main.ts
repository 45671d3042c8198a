/**
 * The `rill` command line (docs/cli.md). Exit codes (exitCodes of args.ts):
 * 0 ok (also when stdout's reader went away: `rill consume T | head`), 1 the
 * cluster answered no, 2 usage error, 3 no broker reachable, 130 / 143
 * interrupted by SIGINT / SIGTERM. Every command takes --brokers URL,...
 * (RILL_BROKERS; --url and RILL_URL are its old names) and tries the next
 * broker when one does not answer. `rill broker` runs the broker in this
 * very process (its PID is the broker's, and it exits as soon as the broker
 * stopped or gave up stopping); the broker modules are loaded only for that
 * command.
 */
import { readFileSync } from 'node:fs'
import { RillClientError } from '../../client/index.ts'
import { systemRuntime } from '../base/index.ts'
import { UsageError, CliError, exitCodes } from './args.ts'
import { packageRoot } from './package-root.ts'
import { aclCommand, aclUsage } from './acl.ts'
import { benchCommand, benchUsage } from './bench.ts'
import { UnreachableError } from './client.ts'
import { consumeCommand, consumeUsage } from './consume.ts'
import { devCommand, devUsage } from './dev.ts'
import { groupCommand, groupUsage } from './group.ts'
import { processIo, stopExitCode, type CliIo } from './io.ts'
import { produceCommand, produceUsage } from './produce.ts'
import { statusCommand, statusUsage } from './status.ts'
import { topicCommand, topicUsage } from './topic.ts'

const usage = `usage: rill <command> [flags]

commands:
  dev        start a local cluster: rill dev [--brokers 3] [--dir ./data] [--port 7070] [--tls]
  broker     run one broker: rill broker --id N --dir DIR --http HOST:PORT --peer HOST:PORT --seeds 1@HOST:PORT,...
  topic      create | list | describe | delete topics
  produce    one record per stdin line: rill produce TOPIC [--key K | --key-separator S] [--header K=V] [--partition P]
  consume    print records: rill consume TOPIC [--format value|kv|json] [--from-beginning | --offset O | --from-time T] [--group G]
  group      describe NAME: a consumer group's members, committed offsets, log end offsets and consumer lag
  acl        tokens and ACLs: acl token create|list|revoke, acl add|remove|list, acl whoami
  status     brokers, controller leader, partitions, leaders, replicas, how far each replica is behind its leader
  bench      load through the SDKs: rill bench produce|consume|e2e [--producers N] [--record-bytes B] [--rate R] [--json]
  help       this text (rill COMMAND --help: a command's own)

every command takes --brokers URL,URL,... (default http://127.0.0.1:7070, or RILL_BROKERS; --url and RILL_URL
are the same): requests go to the first broker that answers;
for https:// brokers, --tls-ca FILE (RILL_TLS_CA: the cluster's CA certificate; the default URL is then
https://127.0.0.1:7070) and, for brokers that ask, --tls-cert FILE --tls-key FILE (RILL_TLS_CERT, RILL_TLS_KEY);
for brokers started with --auth required, --token TOKEN (RILL_TOKEN)
rill --version prints the version
exit codes: 0 ok, 1 the cluster answered with an error, 2 usage error, 3 no broker reachable,
130 interrupted (Ctrl-C), 143 terminated (SIGTERM); docs/cli.md
`

const usageOf: Readonly<Record<string, string>> = {
  topic: topicUsage,
  produce: produceUsage,
  consume: consumeUsage,
  status: statusUsage,
  group: groupUsage,
  dev: devUsage,
  acl: aclUsage,
  bench: benchUsage,
}

/** After the command returned, the longest anything left (a pool closing, a long-poll) may hold the process, ms. */
const exitLingerMs = 2_000

/** The version in the package's package.json (from source and from dist/ alike). */
export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('package.json', packageRoot), 'utf8')) as { version?: unknown }
  if (typeof pkg.version !== 'string') throw new CliError('package.json has no version')
  return pkg.version
}

/** Commands that watch the stop signal and clean up (the others exit at once on Ctrl-C). */
const gracefulCommands: ReadonlySet<string> = new Set(['consume', 'produce', 'bench'])

async function run(argv: readonly string[], io: CliIo): Promise<number> {
  const command = argv[0] ?? 'help'
  const rest = argv.slice(1)
  const { out, err } = io
  switch (command) {
    case 'help':
    case '--help':
    case '-h':
      out(usage.trimEnd())
      return 0
    case '--version':
    case '-V':
    case 'version':
      out(`rill ${version()}`)
      return 0
    case 'broker': {
      const { runBroker } = await import('./broker.ts')
      // At once, not when the event loop drains: after a stop that gave up (--shutdown-timeout), the stuck work still holds it.
      process.exit(await runBroker(rest))
    }
    case 'dev':
      return devCommand(rest, { out, err })
    case 'topic':
      return topicCommand(rest, out)
    case 'produce':
      return produceCommand(rest, io)
    case 'consume':
      return consumeCommand(rest, io)
    case 'status':
      return statusCommand(rest, out)
    case 'group':
      return groupCommand(rest, out)
    case 'acl':
      return aclCommand(rest, out, err)
    case 'bench':
      return benchCommand(rest, io)
    default:
      throw new UsageError(`unknown command "${command}"`)
  }
}

async function main(argv: readonly string[], io: CliIo): Promise<number> {
  const { err } = io
  try {
    return await run(argv, io)
  } catch (error) {
    // Stopped by Ctrl-C or a closed stdout: whatever failed on the way out is not the news.
    if (io.stopReason() !== null) return stopExitCode(io.stopReason())
    const command = argv[0] ?? ''
    if (error instanceof UsageError) {
      const known = usageOf[command] !== undefined
      const sub = (command === 'topic' || command === 'group' || command === 'acl') && argv[1] !== undefined ? ` ${argv[1]}` : ''
      err(known ? `rill ${command}${sub}: ${error.message}` : `rill: ${error.message}`)
      err((usageOf[command] ?? usage).trimEnd())
      return exitCodes.usage
    }
    if (error instanceof UnreachableError || (error instanceof RillClientError && error.code === 'UNREACHABLE')) {
      err(`rill ${command}: ${error.message}`)
      return exitCodes.unreachable
    }
    if (error instanceof CliError) {
      err(`rill ${command}: ${error.message}`)
      return exitCodes.failed
    }
    if (error instanceof RillClientError) {
      err(`rill ${command}: ${error.message.startsWith(error.code) ? error.message : `${error.code}: ${error.message}`}`)
      return exitCodes.failed
    }
    err(`rill ${command}: unexpected error: ${(error as Error).stack ?? String(error)}`)
    return exitCodes.failed
  }
}

const argv = process.argv.slice(2)
const io = processIo({ graceful: gracefulCommands.has(argv[0] ?? ''), signals: argv[0] !== 'broker' && argv[0] !== 'dev' })
process.exitCode = await main(argv, io)
// Whatever is left (a closing pool, an abandoned long-poll) gets a moment, not forever; a finished command exits.
systemRuntime.setTimer(() => process.exit(), exitLingerMs, { background: true })
