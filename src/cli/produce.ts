/**
 * `rill produce TOPIC`: one record per stdin line, batched, sent to each
 * partition's leader as an idempotent producer so a retry can never write a
 * record twice.
 *
 *   stdin lines ──▶ pending (≤ recordsPerBatchMax, lingers lingerMs) ──▶ one batch
 *     ──▶ partition: --partition, else murmur2(--key), else the next one (round-robin per batch)
 *     ──▶ POST leader/v1/topics/T/partitions/P/records { records, producerId, producerEpoch, sequence }
 *           421 NOT_LEADER {leader} → retry at the leader's URL; 503 / unreachable → back off, refresh metadata
 *
 * Batches are sent one at a time, so per-partition order is stdin order.
 */
import { createInterface } from 'node:readline'
import type { Readable } from 'node:stream'
import type { InitProducerResponse, MetadataResponse, ProduceResponse } from '../wire/index.ts'
import { partitionForKey } from '../wire/index.ts'
import { CliError, baseUrl, expectPositionals, parseArgs, type FlagSpecs } from './args.ts'
import { ApiError, isRetriable, request, sleep } from './client.ts'
import { fetchMetadata } from './topic.ts'

export const produceUsage = `usage: rill produce TOPIC [--key K] [--partition P] [--acks all|leader] [--verbose] [--url URL]
  one record per stdin line; --verbose prints "partition P offset O" per record
`

const produceFlags: FlagSpecs = {
  key: { kind: 'string' },
  partition: { kind: 'int', min: 0, max: 9_999 },
  acks: { kind: 'string', values: ['all', 'leader'] },
  verbose: { kind: 'boolean' },
}

/** Records per request. */
const recordsPerBatchMax = 1000
/** Bytes of values per request (well under the broker's body limit). */
const batchBytesMax = 1024 * 1024
/** How long a partly filled batch waits for more lines (interactive typing is still sent at once). */
const lingerMs = 20
/** Attempts of one batch before giving up (redirects and back-offs alike). */
const attemptsMax = 30
const backoffMsMax = 2000

type Out = (line: string) => void

interface Target {
  readonly topic: string
  readonly partitionCount: number
  /** Where each partition's leader answers, as far as we know. */
  readonly leaderUrls: Map<number, string>
}

function targetOf(meta: MetadataResponse, topic: string, fallbackUrl: string): Target {
  const t = meta.topics.find((x) => x.name === topic)
  if (t === undefined) throw new CliError(`UNKNOWN_TOPIC: no topic "${topic}" (create it with: rill topic create ${topic})`)
  const urls = new Map(meta.brokers.map((b) => [b.id, b.url]))
  const leaderUrls = new Map<number, string>()
  for (const p of t.partitions) leaderUrls.set(p.partition, (p.leader === null ? undefined : urls.get(p.leader)) ?? fallbackUrl)
  return { topic, partitionCount: t.partitions.length, leaderUrls }
}

export async function produceCommand(argv: readonly string[], out: Out, input: Readable = process.stdin): Promise<number> {
  const parsed = parseArgs(argv, produceFlags)
  if (parsed.flags.help === true) {
    out(produceUsage.trimEnd())
    return 0
  }
  const [topic] = expectPositionals(parsed, ['TOPIC'])
  const f = parsed.flags
  const url = baseUrl(f)
  let target = targetOf(await fetchMetadata(url), topic!, url)
  const fixed = f.partition as number | undefined
  if (fixed !== undefined && fixed >= target.partitionCount) {
    throw new CliError(`UNKNOWN_PARTITION: topic ${topic} has ${target.partitionCount} partitions; --partition ${fixed} is not one`)
  }
  const key = f.key as string | undefined
  const keyed = key === undefined ? undefined : partitionForKey(new TextEncoder().encode(key), target.partitionCount)
  const identity = await request<InitProducerResponse>(url, 'POST', '/v1/producers', { body: {} })
  const sequences = new Map<number, number>()
  let roundRobin = Math.floor(Math.random() * target.partitionCount)
  const acks = (f.acks as 'all' | 'leader' | undefined) ?? 'all'

  const send = async (values: string[]): Promise<void> => {
    const partition = fixed ?? keyed ?? roundRobin++ % target.partitionCount
    const sequence = sequences.get(partition) ?? 0
    const body = {
      records: values.map((value) => (key === undefined ? { value } : { key, value })),
      acks,
      producerId: identity.producerId,
      producerEpoch: identity.producerEpoch,
      sequence,
    }
    let backoffMs = 50
    for (let attempt = 1; ; attempt++) {
      const leaderUrl = target.leaderUrls.get(partition) ?? url
      try {
        const r = await request<ProduceResponse>(leaderUrl, 'POST', `/v1/topics/${encodeURIComponent(topic!)}/partitions/${partition}/records`, { body, waitMs: 30_000 })
        sequences.set(partition, sequence + values.length)
        if (f.verbose === true) for (let o = r.baseOffset; o <= r.lastOffset; o++) out(`partition ${r.partition} offset ${o}`)
        return
      } catch (error) {
        if (!isRetriable(error) || attempt >= attemptsMax) throw error
        const leader = error instanceof ApiError ? (error.details.leader as { url?: string } | null | undefined) : undefined
        if (leader?.url !== undefined && leader.url !== leaderUrl) {
          target.leaderUrls.set(partition, leader.url)
          continue
        }
        await sleep(backoffMs)
        backoffMs = Math.min(backoffMs * 2, backoffMsMax)
        const meta = await fetchMetadata(url).catch(() => null)
        if (meta !== null && meta.topics.some((t) => t.name === topic)) target = targetOf(meta, topic!, url)
      }
    }
  }

  await pump(input, send)
  return 0
}

/**
 * Reads lines from `input` and hands them to `send` in batches, one batch in
 * flight at a time; reading pauses while the next batch is full.
 */
async function pump(input: Readable, send: (values: string[]) => Promise<void>): Promise<void> {
  const lines = createInterface({ input, crlfDelay: Infinity })
  let pending: string[] = []
  let pendingBytes = 0
  let ended = false
  let wake: (() => void) | null = null
  const notify = (): void => {
    wake?.()
    wake = null
  }
  lines.on('line', (line) => {
    pending.push(line)
    pendingBytes += line.length
    if (pending.length >= recordsPerBatchMax || pendingBytes >= batchBytesMax) lines.pause()
    notify()
  })
  lines.on('close', () => {
    ended = true
    notify()
  })
  for (;;) {
    if (pending.length === 0) {
      if (ended) return
      await new Promise<void>((resolve) => (wake = resolve))
      continue
    }
    if (!ended && pending.length < recordsPerBatchMax && pendingBytes < batchBytesMax) await sleep(lingerMs)
    const values = pending.slice(0, recordsPerBatchMax)
    pending = pending.slice(values.length)
    pendingBytes = pending.reduce((n, v) => n + v.length, 0)
    try {
      await send(values)
    } catch (error) {
      lines.close()
      throw error
    }
    if (pending.length < recordsPerBatchMax) lines.resume()
  }
}
