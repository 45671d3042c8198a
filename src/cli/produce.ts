/**
 * `rill produce TOPIC`: one record per stdin line, sent through the
 * producer SDK (producer/), so the CLI batches, pipelines and retries as
 * any client does, as an idempotent producer whose retries never write a
 * record twice.
 *
 *   stdin lines ──▶ producer.send (≤ sendsOutstandingMax unsettled) ──▶ batches of ≤ 1000 records / 1 MiB, linger 20 ms
 *     partition: --partition, else murmur2(--key), else sticky (one partition per batch, then the next)
 *   --verbose: "partition P offset O" per line, in stdin order
 *
 * Reading stops while `sendsOutstandingMax` lines are unacknowledged (and
 * the producer's own buffer applies backpressure), so memory is bounded.
 */
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { Producer, RillClientError, type RecordMetadata } from '../../producer/index.ts'
import { CliError, expectPositionals, parseArgs, target, type FlagSpecs } from './args.ts'

export const produceUsage = `usage: rill produce TOPIC [--key K] [--partition P] [--acks all|leader] [--verbose] [--url URL]
  one record per stdin line; --verbose prints "partition P offset O" per record
`

const produceFlags: FlagSpecs = {
  key: { kind: 'string' },
  partition: { kind: 'int', min: 0, max: 9_999 },
  acks: { kind: 'string', values: ['all', 'leader'] },
  verbose: { kind: 'boolean' },
}

/** Records per batch. */
const batchRecordsMax = 1000
/** Bytes per batch (well under the broker's body limit). */
const batchBytes = 1024 * 1024
/** How long a partly filled batch waits for more lines (interactive typing is still sent at once). */
const lingerMs = 20
/** A line not acknowledged in this long fails the command (elections take seconds, not minutes). */
const deliveryTimeoutMs = 60_000
/** Lines sent and not yet acknowledged; reading waits beyond it. */
const sendsOutstandingMax = 10_000

type Out = (line: string) => void

export async function produceCommand(argv: readonly string[], out: Out, input: Readable = process.stdin): Promise<number> {
  const parsed = parseArgs(argv, produceFlags)
  if (parsed.flags.help === true) {
    out(produceUsage.trimEnd())
    return 0
  }
  const [topic] = expectPositionals(parsed, ['TOPIC'])
  const f = parsed.flags
  const at = target(f)
  const producer = new Producer({
    brokers: at.url,
    ...(at.tls === undefined ? {} : { tls: at.tls }),
    ...(at.token === undefined ? {} : { token: at.token }),
    acks: (f.acks as 'all' | 'leader' | undefined) ?? 'all',
    lingerMs,
    batchBytes,
    batchRecordsMax,
    deliveryTimeoutMs,
    clientId: 'rill-cli',
  })
  try {
    await checkTopic(producer, topic!, f.partition as number | undefined, at.url)
    await pump(input, producer, topic!, { key: f.key as string | undefined, partition: f.partition as number | undefined }, f.verbose === true ? out : null)
    await producer.close()
  } catch (error) {
    await producer.close().catch(() => undefined)
    throw asCliError(error)
  }
  return 0
}

/** Fails early (before reading stdin) on a cluster that does not answer, a topic that is not there or a partition it does not have. */
async function checkTopic(producer: Producer, topic: string, partition: number | undefined, url: string): Promise<void> {
  let partitions: { partition: number }[]
  try {
    partitions = await producer.partitionsFor(topic, { waitMs: 0 })
  } catch (error) {
    if (error instanceof RillClientError && error.code === 'UNKNOWN_TOPIC') {
      throw new CliError(`UNKNOWN_TOPIC: no topic "${topic}" (create it with: rill topic create ${topic})`)
    }
    if (error instanceof RillClientError && error.code === 'UNREACHABLE') throw new CliError(`cannot reach ${url}: ${error.message}`)
    throw error
  }
  if (partition !== undefined && partition >= partitions.length) {
    throw new CliError(`UNKNOWN_PARTITION: topic ${topic} has ${partitions.length} partitions; --partition ${partition} is not one`)
  }
}

/** Sends each line as it is read; with `verbose`, prints where each went, in stdin order. */
async function pump(input: Readable, producer: Producer, topic: string, fixed: { key: string | undefined; partition: number | undefined }, verbose: Out | null): Promise<void> {
  const lines = createInterface({ input, crlfDelay: Infinity })
  const outstanding: Promise<RecordMetadata>[] = []
  const settleOldest = async (): Promise<void> => {
    const m = await outstanding.shift()!
    verbose?.(`partition ${m.partition} offset ${m.offset}`)
  }
  try {
    for await (const line of lines) {
      const sent = producer.send(topic, { value: line, ...(fixed.key === undefined ? {} : { key: fixed.key }), ...(fixed.partition === undefined ? {} : { partition: fixed.partition }) })
      sent.catch(() => undefined) // awaited in order below; a failure is reported there
      outstanding.push(sent)
      if (outstanding.length >= sendsOutstandingMax) await settleOldest()
    }
    while (outstanding.length > 0) await settleOldest()
  } finally {
    lines.close()
  }
}

/** SDK errors as the CLI reports them: `CODE: message`, exit 1. */
function asCliError(error: unknown): unknown {
  if (!(error instanceof RillClientError)) return error
  const message = error.message.startsWith(error.code) ? error.message : `${error.code}: ${error.message}`
  return new CliError(message)
}
