/**
 * `rill consume TOPIC`: prints one record value per line (the value's bytes
 * as stored, then a newline), through the consumer SDK (consumer/).
 *
 *   metadata check (topic, --partition, --follower has a follower everywhere)
 *     ──▶ Consumer: --group joins the group (partitions shared with its other
 *         members, starting at its committed offsets); without --group every
 *         partition; --partition P reads only P (acting for --group without
 *         joining it)
 *     ──▶ for each batch: values to stdout ──▶ commit what was printed
 *
 * Starts at the end unless --from-beginning (or --group has offsets). Stops
 * after --max records, on Ctrl-C / SIGTERM, or when stdout closes
 * (`| head`); exit 0. With --group the position of the last printed record
 * is committed before the consumer leaves.
 */
import { Consumer, RillClientError } from '../../consumer/index.ts'
import type { MetadataResponse, TopicMetadata } from '../wire/index.ts'
import { CliError, expectPositionals, parseArgs, target, type FlagSpecs, type Target } from './args.ts'
import { fetchMetadata } from './topic.ts'

export const consumeUsage = `usage: rill consume TOPIC [--from-beginning] [--follower] [--max N] [--partition P] [--group G] [--url URL]
  prints one record value per line; starts at the end unless --from-beginning (or --group has offsets)
`

const consumeFlags: FlagSpecs = {
  'from-beginning': { kind: 'boolean' },
  follower: { kind: 'boolean' },
  max: { kind: 'int', min: 1, max: Number.MAX_SAFE_INTEGER },
  partition: { kind: 'int', min: 0, max: 9_999 },
  group: { kind: 'string' },
}

/** Long-poll of one fetch. */
const pollWaitMs = 1000
/** The group's stored offsets trail what was printed by at most this much when the command is killed. */
const autoCommitIntervalMs = 1000

export interface ConsumeIo {
  /** Writes one value and its newline; resolves when the output can take more. */
  readonly write: (bytes: Uint8Array) => Promise<void>
  /** Aborted on Ctrl-C, SIGTERM or a closed stdout. */
  readonly signal: AbortSignal
  readonly warn: (line: string) => void
}

interface ConsumeArgs {
  readonly topic: string
  readonly target: Target
  readonly group: string | undefined
  readonly partition: number | undefined
  readonly follower: boolean
  readonly fromBeginning: boolean
  readonly max: number
}

export async function consumeCommand(argv: readonly string[], io: ConsumeIo, out: (line: string) => void): Promise<number> {
  const parsed = parseArgs(argv, consumeFlags)
  if (parsed.flags.help === true) {
    out(consumeUsage.trimEnd())
    return 0
  }
  const [topic] = expectPositionals(parsed, ['TOPIC'])
  const f = parsed.flags
  const args: ConsumeArgs = {
    topic: topic!,
    target: target(f),
    group: f.group as string | undefined,
    partition: f.partition as number | undefined,
    follower: f.follower === true,
    fromBeginning: f['from-beginning'] === true,
    max: (f.max as number | undefined) ?? Infinity,
  }
  const t = checkTopic(await fetchMetadata(args.target), args)
  const consumer = new Consumer({
    brokers: [args.target.url],
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
    if (e.from !== null) io.warn(`partition ${e.partition}: offset ${e.from} is out of range (deleted by retention?); continuing at ${e.to}`)
  })
  try {
    if (args.partition !== undefined) {
      consumer.pause([{ topic: args.topic, partitions: t.partitions.map((p) => p.partition).filter((p) => p !== args.partition) }])
    }
    await consumer.subscribe(args.topic)
    await printValues(consumer, io, args)
  } catch (error) {
    throw error instanceof RillClientError ? new CliError(error.message.startsWith(error.code) ? error.message : `${error.code}: ${error.message}`) : error
  } finally {
    await consumer.close()
  }
  return 0
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

/** Prints values until --max, a stop signal or close; commits the position of the last value printed (--group). */
async function printValues(consumer: Consumer, io: ConsumeIo, args: ConsumeArgs): Promise<void> {
  let remaining = args.max
  for await (const batch of consumer.batches({ signal: io.signal })) {
    let next: number | null = null
    for (const r of batch.records) {
      if (remaining <= 0 || io.signal.aborted) break
      await io.write(r.value)
      remaining--
      next = r.offset + 1
    }
    const whole = next === batch.records.at(-1)!.offset + 1
    if (whole && remaining > 0 && !io.signal.aborted) continue // processed when the loop asks for the next batch
    // Stopping inside (or at the end of) this batch: what was printed counts, the rest does not.
    if (args.group !== undefined && next !== null) {
      await consumer.commit([{ topic: batch.topic, partition: batch.partition, offset: next }]).catch((error: unknown) => io.warn(`commit: ${(error as Error).message}`))
    }
    return
  }
}
