/**
 * `rill consume TOPIC`: prints records (--format value: one value per line,
 * as today; kv: key, separator, value; json: one JSON object per record),
 * through the consumer SDK (consumer/).
 *
 *   metadata check (topic, --partition, --follower has a follower everywhere)
 *     ──▶ start positions: --offset N|beginning|end, --from-time T
 *         (positions.ts: seeks, which beat the group's committed offsets)
 *     ──▶ Consumer: --group joins the group (partitions shared with its other
 *         members, starting at its committed offsets); without --group every
 *         partition; --partition P reads only P (acting for --group without
 *         joining it)
 *     ──▶ for each batch: records to stdout ──▶ commit what was printed
 *
 * Starts at the end unless told otherwise (or --group has offsets). Stops
 * after --max records (exit 0), on Ctrl-C / SIGTERM (exit 130 / 143, within
 * io.ts's grace), or when stdout's reader goes away (`| head`, exit 0). With
 * --group the position of the last printed record is committed before the
 * consumer leaves. On a terminal, stderr shows progress and a summary when
 * stdout is not that terminal.
 */
import { Consumer, RillClientError } from '../../consumer/index.ts'
import { systemRuntime } from '../base/index.ts'
import type { MetadataResponse, TopicMetadata } from '../wire/index.ts'
import { CliError, UsageError, expectPositionals, parseArgs, target, type FlagSpecs, type Target } from './args.ts'
import { formatRecord, formats, type Format } from './format.ts'
import { ProgressLine, stopExitCode, stopGraceMs, summary, type CliIo } from './io.ts'
import { parseOffsetFlag, parseTimeFlag, startOffset, type StartSpec } from './positions.ts'
import { fetchMetadata } from './topic.ts'

export const consumeUsage = `usage: rill consume TOPIC [flags]
  prints records, one per line; starts at the end unless told otherwise (or --group has committed offsets)

  --format value|kv|json     value: the value as stored (default); kv: key, separator, value;
                             json: {topic, partition, offset, timestamp, time, key, value, headers, encoding}
  --key-separator S          between key and value for --format kv (default a tab)
  --from-beginning           start at the start of the log where the group has no committed offset
  --offset N|beginning|end   start there (N needs --partition), committed offsets or not
  --from-time T              start at the first record stamped at or after T (ms since the epoch or ISO 8601,
                             e.g. 2026-12-05T10:00:00Z), committed offsets or not
  --partition P              read only partition P
  --max N                    stop after N records
  --group G                  join consumer group G (share partitions; commit what was printed)
  --follower                 read from follower replicas
  --brokers URL,...          brokers to ask (RILL_BROKERS; --url is the same)
stops at --max, Ctrl-C (exit 130) or when the reader of stdout goes away (| head: exit 0)
`

const consumeFlags: FlagSpecs = {
  'from-beginning': { kind: 'boolean' },
  follower: { kind: 'boolean' },
  max: { kind: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
  partition: { kind: 'int', min: 0, max: 9_999 },
  group: { kind: 'string' },
  format: { kind: 'string', values: formats },
  'key-separator': { kind: 'string' },
  offset: { kind: 'string' },
  'from-time': { kind: 'string' },
}

/** Long-poll of one fetch. */
const pollWaitMs = 1000
/** The group's stored offsets trail what was printed by at most this much when the command is killed. */
const autoCommitIntervalMs = 1000
/** Bytes a --key-separator may have. */
const keySeparatorBytesMax = 64

interface ConsumeArgs {
  readonly topic: string
  readonly target: Target
  readonly group: string | undefined
  readonly partition: number | undefined
  readonly follower: boolean
  /** --from-beginning: where a partition without a committed offset starts. */
  readonly fromBeginning: boolean
  /** --offset or --from-time: where every partition read starts, committed offsets or not. */
  readonly start: StartSpec | null
  readonly max: number
  readonly format: Format
  readonly keySeparator: Uint8Array
}

/** The start the flags ask for (null: the group's offsets, else the end); usage errors for combinations that contradict. */
function startSpec(f: Record<string, unknown>, partition: number | undefined): StartSpec | null {
  const given = ['from-beginning', 'offset', 'from-time'].filter((n) => f[n] !== undefined)
  if (given.length > 1) throw new UsageError(`give one of --from-beginning, --offset, --from-time (got ${given.map((n) => `--${n}`).join(' and ')})`)
  if (f['from-beginning'] === true) return null // a reset policy (consumer option), not a seek: the group's offsets still win
  if (typeof f.offset === 'string') {
    const spec = parseOffsetFlag(f.offset)
    if (spec.kind === 'offset' && partition === undefined) throw new UsageError('--offset N needs --partition P (offsets are per partition)')
    return spec
  }
  if (typeof f['from-time'] === 'string') return { kind: 'time', ms: parseTimeFlag(f['from-time']) }
  return null
}

function parseConsumeArgs(argv: readonly string[]): ConsumeArgs | null {
  const parsed = parseArgs(argv, consumeFlags)
  if (parsed.flags.help === true) return null
  const [topic] = expectPositionals(parsed, ['TOPIC'])
  const f = parsed.flags
  const partition = f.partition as number | undefined
  const separator = Buffer.from((f['key-separator'] as string | undefined) ?? '\t')
  if (separator.byteLength > keySeparatorBytesMax) throw new UsageError(`--key-separator: at most ${keySeparatorBytesMax} bytes`)
  if (f['key-separator'] !== undefined && f.format !== 'kv') throw new UsageError('--key-separator goes with --format kv')
  return {
    topic: topic!,
    target: target(f),
    group: f.group as string | undefined,
    partition,
    follower: f.follower === true,
    fromBeginning: f['from-beginning'] === true,
    start: startSpec(f, partition),
    max: (f.max as number | undefined) ?? Infinity,
    format: (f.format as Format | undefined) ?? 'value',
    keySeparator: separator,
  }
}

export async function consumeCommand(argv: readonly string[], io: CliIo): Promise<number> {
  const args = parseConsumeArgs(argv)
  if (args === null) {
    io.out(consumeUsage.trimEnd())
    return 0
  }
  const meta = await fetchMetadata(args.target)
  const t = checkTopic(meta, args)
  const starts = await startOffsets(meta, t, args)
  if (io.signal.aborted) return stopExitCode(io.stopReason())
  const consumer = new Consumer({
    brokers: args.target.urls,
    ...(args.target.tls === undefined ? {} : { tls: args.target.tls }),
    ...(args.target.token === undefined ? {} : { token: args.target.token }),
    clientId: 'rill-cli',
    readFrom: args.follower ? 'follower' : 'leader',
    fromBeginning: args.fromBeginning,
    maxWaitMs: pollWaitMs,
    autoCommitIntervalMs,
    ...(args.group === undefined ? {} : { groupId: args.group, joinGroup: args.partition === undefined }),
  })
  consumer.on('reset', (e) => {
    if (e.from !== null) io.err(`partition ${e.partition}: offset ${e.from} is out of range (deleted by retention?); continuing at ${e.to}`)
  })
  const progress = new ProgressLine(io.stderrIsTty && !io.stdoutIsTty)
  const startedMs = systemRuntime.nowMs()
  const count = { records: 0, bytes: 0 }
  try {
    if (args.partition !== undefined) {
      consumer.pause([{ topic: args.topic, partitions: t.partitions.map((p) => p.partition).filter((p) => p !== args.partition) }])
    }
    for (const [partition, offset] of starts) consumer.seek(args.topic, partition, offset)
    await consumer.subscribe(args.topic)
    await printRecords(consumer, io, args, progress, count)
  } catch (error) {
    if (io.signal.aborted) return stopExitCode(io.stopReason())
    throw error instanceof RillClientError && error.code !== 'UNREACHABLE' ? new CliError(error.message.startsWith(error.code) ? error.message : `${error.code}: ${error.message}`) : error
  } finally {
    progress.clear()
    await closeWithin(consumer, stopGraceMs)
    // Not after a closed pipe: part of what was written was never read (`| head`), and the reader is done.
    if (io.stderrIsTty && !io.stdoutIsTty && io.stopReason() !== 'pipe') io.err(`consumed ${summary(count.records, count.bytes, systemRuntime.nowMs() - startedMs)}`)
  }
  return stopExitCode(io.stopReason() === 'pipe' ? null : io.stopReason())
}

/** Closes the consumer (commit, leave the group) but gives up after `ms`: a stop must not hang on a broker that went away. */
async function closeWithin(consumer: Consumer, ms: number): Promise<void> {
  const bound = new AbortController()
  await Promise.race([consumer.close().catch(() => undefined), systemRuntime.sleep(ms, bound.signal)])
  bound.abort()
}

/** The seeks --offset or --from-time need: partition ──▶ offset (none without them). */
async function startOffsets(meta: MetadataResponse, t: TopicMetadata, args: ConsumeArgs): Promise<Map<number, number>> {
  const seeks = new Map<number, number>()
  if (args.start === null) return seeks
  const partitions = args.partition === undefined ? t.partitions.map((p) => p.partition) : [args.partition]
  for (const p of partitions) seeks.set(p, await startOffset(args.target, meta, args.topic, p, args.start))
  return seeks
}

/** The topic's metadata, after the checks that fail the command at once (exit 1) rather than wait. */
function checkTopic(meta: MetadataResponse, args: ConsumeArgs): TopicMetadata {
  const t = meta.topics.find((x) => x.name === args.topic)
  if (t === undefined) throw new CliError(`UNKNOWN_TOPIC: no topic "${args.topic}"`)
  const fixed = args.partition
  if (fixed !== undefined && !t.partitions.some((p) => p.partition === fixed)) {
    throw new CliError(`UNKNOWN_PARTITION: topic ${args.topic} has ${t.partitions.length} partitions; --partition ${fixed} is not one`)
  }
  for (const p of t.partitions) {
    if (!args.follower || (fixed !== undefined && p.partition !== fixed)) continue
    if (!p.replicas.some((r) => r !== p.leader)) {
      throw new CliError(`partition ${p.partition} has no follower replica (replicas ${p.replicas.join(',')}, leader ${p.leader})`)
    }
  }
  return t
}

/** Prints records until --max, a stop signal or close; commits the position of the last record printed (--group). */
async function printRecords(consumer: Consumer, io: CliIo, args: ConsumeArgs, progress: ProgressLine, count: { records: number; bytes: number }): Promise<void> {
  let remaining = args.max
  const startedMs = systemRuntime.nowMs()
  for await (const batch of consumer.batches({ signal: io.signal })) {
    let next: number | null = null
    for (const r of batch.records) {
      if (remaining <= 0 || io.signal.aborted) break
      const line = formatRecord(args.format, batch.topic, batch.partition, r, args.keySeparator)
      await io.write(line)
      if (io.stopReason() === 'pipe') break // the reader went away: this line was not read
      remaining--
      count.records++
      count.bytes += line.byteLength
      next = r.offset + 1
    }
    progress.update(() => `consumed ${summary(count.records, count.bytes, systemRuntime.nowMs() - startedMs)}`)
    const whole = next === batch.records.at(-1)!.offset + 1
    if (whole && remaining > 0 && !io.signal.aborted) continue // processed when the loop asks for the next batch
    // Stopping inside (or at the end of) this batch: what was printed counts, the rest does not.
    if (args.group !== undefined && next !== null) {
      await consumer.commit([{ topic: batch.topic, partition: batch.partition, offset: next }]).catch((error: unknown) => io.err(`commit: ${(error as Error).message}`))
    }
    return
  }
}
