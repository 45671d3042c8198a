/**
 * The `rill` command line (API.md). Exit codes: 0 ok, 1 failure, 2 usage
 * error. Every command takes --url (default http://127.0.0.1:7070 or
 * RILL_URL). `rill broker` runs the broker in this very process (its PID is
 * the broker's, and it exits as soon as the broker stopped or gave up
 * stopping); the broker modules are loaded only for that command.
 */
import { UsageError, CliError } from './args.ts'
import { aclCommand, aclUsage } from './acl.ts'
import { consumeCommand, consumeUsage } from './consume.ts'
import { devCommand, devUsage } from './dev.ts'
import { groupCommand, groupUsage } from './group.ts'
import { produceCommand, produceUsage } from './produce.ts'
import { statusCommand, statusUsage } from './status.ts'
import { topicCommand, topicUsage } from './topic.ts'

const usage = `usage: rill <command> [flags]

commands:
  dev        start a local cluster: rill dev [--brokers 3] [--dir ./data] [--port 7070] [--tls]
  broker     run one broker: rill broker --id N --dir DIR --http HOST:PORT --peer HOST:PORT --seeds 1@HOST:PORT,...
  topic      create | list | describe | delete topics
  produce    one record per stdin line: rill produce TOPIC [--key K] [--partition P] [--acks all|leader] [--verbose]
  consume    print record values: rill consume TOPIC [--from-beginning] [--follower] [--max N] [--partition P] [--group G]
  group      describe NAME: a consumer group's members, assignments, committed offsets and lag
  acl        tokens and ACLs: acl token create|list|revoke, acl add|remove|list, acl whoami
  status     brokers, controller leader, partitions, leaders, replicas, lag
  help       this text

every command takes --url http://HOST:PORT (default http://127.0.0.1:7070, or RILL_URL);
for https:// brokers, --tls-ca FILE (RILL_TLS_CA: the cluster's CA certificate; the default URL is then
https://127.0.0.1:7070) and, for brokers that ask, --tls-cert FILE --tls-key FILE (RILL_TLS_CERT, RILL_TLS_KEY);
for brokers started with --auth required, --token TOKEN (RILL_TOKEN)
exit codes: 0 ok, 1 failure, 2 usage error
`

const usageOf: Readonly<Record<string, string>> = {
  topic: topicUsage,
  produce: produceUsage,
  consume: consumeUsage,
  status: statusUsage,
  group: groupUsage,
  dev: devUsage,
  acl: aclUsage,
}

const out = (line: string): void => {
  process.stdout.write(`${line}\n`)
}
const err = (line: string): void => {
  process.stderr.write(`${line}\n`)
}

/** Writes bytes and a newline to stdout, waiting when it is full. */
function writeValue(bytes: Uint8Array): Promise<void> {
  const line = Buffer.concat([bytes, Buffer.from('\n')])
  return new Promise((resolve) => {
    if (process.stdout.write(line)) resolve()
    else process.stdout.once('drain', resolve)
  })
}

/** Aborted on Ctrl-C, SIGTERM, or a closed stdout (`rill consume T | head`). */
function stopSignal(): AbortSignal {
  const controller = new AbortController()
  const stop = (): void => controller.abort()
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') stop()
  })
  return controller.signal
}

async function run(argv: readonly string[]): Promise<number> {
  const command = argv[0] ?? 'help'
  const rest = argv.slice(1)
  switch (command) {
    case 'help':
    case '--help':
    case '-h':
      out(usage.trimEnd())
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
      return produceCommand(rest, out)
    case 'consume':
      return consumeCommand(rest, { write: writeValue, signal: stopSignal(), warn: err }, out)
    case 'status':
      return statusCommand(rest, out)
    case 'group':
      return groupCommand(rest, out)
    case 'acl':
      return aclCommand(rest, out, err)
    default:
      throw new UsageError(`unknown command "${command}"`)
  }
}

async function main(argv: readonly string[]): Promise<number> {
  try {
    return await run(argv)
  } catch (error) {
    const command = argv[0] ?? ''
    if (error instanceof UsageError) {
      const known = usageOf[command] !== undefined
      const sub = (command === 'topic' || command === 'group' || command === 'acl') && argv[1] !== undefined ? ` ${argv[1]}` : ''
      err(known ? `rill ${command}${sub}: ${error.message}` : `rill: ${error.message}`)
      err((usageOf[command] ?? usage).trimEnd())
      return 2
    }
    if (error instanceof CliError) {
      err(`rill ${command}: ${error.message}`)
      return 1
    }
    err(`rill ${command}: unexpected error: ${(error as Error).stack ?? String(error)}`)
    return 1
  }
}

process.exitCode = await main(process.argv.slice(2))
