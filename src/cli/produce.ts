/**
 * `rill produce TOPIC`: one record per stdin line, sent through the
 * producer SDK (producer/), so the CLI batches, pipelines and retries as
 * any client does, as an idempotent producer whose retries never write a
 * record twice.
 *
 *   stdin lines ──▶ producer.send (≤ sendsOutstandingMax unsettled) ──▶ batches of ≤ 1000 records / 1 MiB, linger 20 ms
 *     partition: --partition, else murmur2(--key), else sticky (one partition per batch, then the next)
 *   --verbose: "partition P offset O" per line, in stdin order
 *   --key-separator S: each line is KEY S VALUE (split at the first S; a
 *     line without S has no key); --header K=V (repeatable) on every record
 *
 * Reading stops while `sendsOutstandingMax` lines are unacknowledged (and
 * the producer's own buffer applies backpressure), so memory is bounded.
 * Ctrl-C stops reading; what was read is still sent (within io.ts's
 * grace), then exit 130. On a terminal, stderr shows progress and a
 * one-line summary; piped, nothing is added (errors still go to stderr).
 */
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import { Producer, RillClientError, type RecordMetadata } from '../../producer/index.ts'
import { systemRuntime } from '../base/index.ts'
import { CliError, UsageError, expectPositionals, parseArgs, target, type FlagSpecs } from './args.ts'
import { UnreachableError } from './client.ts'
import { ProgressLine, stopExitCode, summary, type CliIo } from './io.ts'

export const produceUsage = `usage: rill produce TOPIC [flags]
  one record per stdin line

  --key K                 the key of every record (records of one key go to one partition)
  --key-separator S       each line is KEY S VALUE (split at the first S; a line without S has no key)
  --header K=V            a header on every record (repeatable, in order)
  --partition P           write every record to partition P
  --acks all|leader       all: acknowledged once a quorum has it (default); leader: once the leader has it
  --verbose               print "partition P offset O" per record, in stdin order
  --brokers URL,...       brokers to ask (RILL_BROKERS; --url is the same)
on a terminal, progress and a summary on stderr; Ctrl-C stops reading, sends what was read, exits 130
`

/** Headers one command sets (the broker's bound per record). */
const headersMax = 64

const produceFlags: FlagSpecs = {
  key: { kind: 'string' },
  'key-separator': { kind: 'string' },
  header: { kind: 'list', max: headersMax },
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

/** What each line becomes. */
interface LineShape {
  readonly key: string | undefined
  readonly keySeparator: string | undefined
  readonly partition: number | undefined
  readonly headers: readonly { key: string; value: string }[]
}

/** `--header K=V` values as headers (K non-empty). */
function parseHeaders(raw: readonly string[]): { key: string; value: string }[] {
  return raw.map((h) => {
    const eq = h.indexOf('=')
    if (eq <= 0) throw new UsageError(`--header expects KEY=VALUE, got "${h}"`)
    return { key: h.slice(0, eq), value: h.slice(eq + 1) }
  })
}

export async function produceCommand(argv: readonly string[], io: CliIo, input: Readable = process.stdin): Promise<number> {
  const parsed = parseArgs(argv, produceFlags)
  if (parsed.flags.help === true) {
    io.out(produceUsage.trimEnd())
    return 0
  }
  const [topic] = expectPositionals(parsed, ['TOPIC'])
  const f = parsed.flags
  if (f.key !== undefined && f['key-separator'] !== undefined) throw new UsageError('give --key or --key-separator, not both')
  if (f['key-separator'] === '') throw new UsageError('--key-separator must not be empty')
  const shape: LineShape = {
    key: f.key as string | undefined,
    keySeparator: f['key-separator'] as string | undefined,
    partition: f.partition as number | undefined,
    headers: parseHeaders((f.header as readonly string[] | undefined) ?? []),
  }
  const at = target(f)
  const producer = new Producer({
    brokers: at.urls,
    ...(at.tls === undefined ? {} : { tls: at.tls }),
    ...(at.token === undefined ? {} : { token: at.token }),
    acks: (f.acks as 'all' | 'leader' | undefined) ?? 'all',
    lingerMs,
    batchBytes,
    batchRecordsMax,
    deliveryTimeoutMs,
    clientId: 'rill-cli',
  })
  const verbose = f.verbose === true
  // Progress rewrites a stderr line: not when --verbose prints to that same terminal.
  const progress = new ProgressLine(io.stderrIsTty && !(verbose && io.stdoutIsTty))
  const count = { records: 0, bytes: 0 }
  const startedMs = systemRuntime.nowMs()
  try {
    await checkTopic(producer, topic!, shape.partition)
    await pump(input, producer, topic!, shape, verbose ? io.out : null, { io, progress, count, startedMs })
    await producer.close()
  } catch (error) {
    progress.clear()
    await producer.close().catch(() => undefined)
    throw asCliError(error)
  }
  progress.clear()
  if (io.stderrIsTty) io.err(`produced ${summary(count.records, count.bytes, systemRuntime.nowMs() - startedMs)}`)
  return stopExitCode(io.stopReason())
}

interface PumpProgress {
  readonly io: CliIo
  readonly progress: ProgressLine
  readonly count: { records: number; bytes: number }
  readonly startedMs: number
}

/** The record a line becomes. */
function recordOf(line: string, shape: LineShape): { key?: string; value: string; partition?: number; headers?: readonly { key: string; value: string }[] } {
  let key = shape.key
  let value = line
  if (shape.keySeparator !== undefined) {
    const at = line.indexOf(shape.keySeparator)
    if (at !== -1) {
      key = line.slice(0, at)
      value = line.slice(at + shape.keySeparator.length)
    }
  }
  return {
    value,
    ...(key === undefined ? {} : { key }),
    ...(shape.partition === undefined ? {} : { partition: shape.partition }),
    ...(shape.headers.length === 0 ? {} : { headers: shape.headers }),
  }
}

/** Fails early (before reading stdin) on a cluster that does not answer, a topic that is not there or a partition it does not have. */
async function checkTopic(producer: Producer, topic: string, partition: number | undefined): Promise<void> {
  let partitions: { partition: number }[]
  try {
    partitions = await producer.partitionsFor(topic, { waitMs: 0 })
  } catch (error) {
    if (error instanceof RillClientError && error.code === 'UNKNOWN_TOPIC') {
      throw new CliError(`UNKNOWN_TOPIC: no topic "${topic}" (create it with: rill topic create ${topic})`)
    }
    if (error instanceof RillClientError && error.code === 'UNREACHABLE') throw new UnreachableError(error.message)
    throw error
  }
  if (partition !== undefined && partition >= partitions.length) {
    throw new CliError(`UNKNOWN_PARTITION: topic ${topic} has ${partitions.length} partitions; --partition ${partition} is not one`)
  }
}

/** Sends each line as it is read (until stdin ends or a stop); with `verbose`, prints where each went, in stdin order. */
async function pump(input: Readable, producer: Producer, topic: string, shape: LineShape, verbose: Out | null, p: PumpProgress): Promise<void> {
  const lines = createInterface({ input, crlfDelay: Infinity })
  const stopReading = (): void => lines.close()
  p.io.signal.addEventListener('abort', stopReading, { once: true })
  const outstanding: { sent: Promise<RecordMetadata>; bytes: number }[] = []
  const settleOldest = async (): Promise<void> => {
    const { sent, bytes } = outstanding.shift()!
    const m = await sent
    p.count.records++
    p.count.bytes += bytes
    verbose?.(`partition ${m.partition} offset ${m.offset}`)
    p.progress.update(() => `produced ${summary(p.count.records, p.count.bytes, systemRuntime.nowMs() - p.startedMs)}`)
  }
  try {
    for await (const line of lines) {
      const sent = producer.send(topic, recordOf(line, shape))
      sent.catch(() => undefined) // awaited in order below; a failure is reported there
      outstanding.push({ sent, bytes: Buffer.byteLength(line) })
      if (outstanding.length >= sendsOutstandingMax) await settleOldest()
      if (p.io.signal.aborted) break
    }
    while (outstanding.length > 0) await settleOldest()
  } finally {
    p.io.signal.removeEventListener('abort', stopReading)
    lines.close()
  }
}

/** SDK errors as the CLI reports them: `CODE: message`, exit 1 (UNREACHABLE: exit 3). */
function asCliError(error: unknown): unknown {
  if (!(error instanceof RillClientError)) return error
  if (error.code === 'UNREACHABLE') return new UnreachableError(error.message)
  const message = error.message.startsWith(error.code) ? error.message : `${error.code}: ${error.message}`
  return new CliError(message)
}
