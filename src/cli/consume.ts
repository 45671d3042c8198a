/**
 * `rill consume TOPIC`: prints one record value per line (the value's bytes
 * as stored, then a newline), polling every partition (or one, with
 * --partition) concurrently with long-polls.
 *
 *   metadata ──▶ per partition: a replica to read (the leader, or with --follower another replica)
 *            ──▶ start: --group's committed offset, else log start (--from-beginning), else the end
 *            ──▶ loop: GET .../records?offset=N&maxWaitMs=… (base64, so any bytes survive) ──▶ stdout
 *
 * Stops after --max records, on Ctrl-C / SIGTERM, or when stdout closes
 * (`| head`); exit 0. With --group, offsets are committed after each batch.
 */
import type { FetchResponseJson, GroupOffsetsResponse, MetadataResponse } from '../wire/index.ts'
import { CliError, baseUrl, expectPositionals, parseArgs, type FlagSpecs } from './args.ts'
import { ApiError, isRetriable, request, sleep } from './client.ts'
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
/** Records per fetch. */
const pollRecordsMax = 500
const backoffMsMax = 2000

export interface ConsumeIo {
  /** Writes one value and its newline; resolves when the output can take more. */
  readonly write: (bytes: Uint8Array) => Promise<void>
  /** Aborted on Ctrl-C, SIGTERM or a closed stdout. */
  readonly signal: AbortSignal
  readonly warn: (line: string) => void
}

interface Reader {
  readonly partition: number
  url: string
  offset: number
}

function replicaUrl(meta: MetadataResponse, topic: string, partition: number, follower: boolean): string | null {
  const p = meta.topics.find((t) => t.name === topic)?.partitions.find((x) => x.partition === partition)
  if (p === undefined) return null
  const urls = new Map(meta.brokers.map((b) => [b.id, b.url]))
  const id = follower ? p.replicas.find((r) => r !== p.leader) : (p.leader ?? p.replicas[0])
  return id === undefined ? null : (urls.get(id) ?? null)
}

function recordsPath(topic: string, partition: number, offset: number, recordsMax: number, waitMs: number): string {
  return `/v1/topics/${encodeURIComponent(topic)}/partitions/${partition}/records?offset=${offset}&maxRecords=${recordsMax}&maxWaitMs=${waitMs}&encoding=base64`
}

export async function consumeCommand(argv: readonly string[], io: ConsumeIo, out: (line: string) => void): Promise<number> {
  const parsed = parseArgs(argv, consumeFlags)
  if (parsed.flags.help === true) {
    out(consumeUsage.trimEnd())
    return 0
  }
  const [topic] = expectPositionals(parsed, ['TOPIC'])
  const f = parsed.flags
  const url = baseUrl(f)
  const follower = f.follower === true
  const group = f.group as string | undefined
  let remaining = (f.max as number | undefined) ?? Infinity
  let meta = await fetchMetadata(url)
  const t = meta.topics.find((x) => x.name === topic)
  if (t === undefined) throw new CliError(`UNKNOWN_TOPIC: no topic "${topic}"`)
  const fixed = f.partition as number | undefined
  if (fixed !== undefined && !t.partitions.some((p) => p.partition === fixed)) {
    throw new CliError(`UNKNOWN_PARTITION: topic ${topic} has ${t.partitions.length} partitions; --partition ${fixed} is not one`)
  }
  const committed = new Map<number, number>()
  if (group !== undefined) {
    const g = await request<GroupOffsetsResponse>(url, 'GET', `/v1/groups/${encodeURIComponent(group)}/offsets`)
    for (const o of g.offsets) if (o.topic === topic) committed.set(o.partition, o.offset)
  }
  const readers: Reader[] = []
  for (const p of t.partitions) {
    if (fixed !== undefined && p.partition !== fixed) continue
    const replica = replicaUrl(meta, topic!, p.partition, follower)
    if (replica === null) {
      throw new CliError(follower ? `partition ${p.partition} has no follower replica (replicas ${p.replicas.join(',')}, leader ${p.leader})` : `partition ${p.partition} has no replica with a known URL`)
    }
    const start = committed.get(p.partition) ?? (f['from-beginning'] === true ? 0 : p.highWatermark)
    readers.push({ partition: p.partition, url: replica, offset: start })
  }
  const stop = new AbortController()
  const stopped = AbortSignal.any([stop.signal, io.signal])

  const poll = async (reader: Reader): Promise<void> => {
    let backoffMs = 50
    while (!stopped.aborted && remaining > 0) {
      let answer: FetchResponseJson
      try {
        const path = recordsPath(topic!, reader.partition, reader.offset, Math.min(pollRecordsMax, remaining), pollWaitMs)
        answer = await request<FetchResponseJson>(reader.url, 'GET', path, { waitMs: pollWaitMs, signal: stopped })
      } catch (error) {
        if (stopped.aborted) return
        if (error instanceof ApiError && error.code === 'OFFSET_OUT_OF_RANGE') {
          const logStart = error.details.logStartOffset
          if (typeof logStart === 'number' && reader.offset < logStart) {
            io.warn(`partition ${reader.partition}: offset ${reader.offset} was deleted by retention; continuing at ${logStart}`)
            reader.offset = logStart
            continue
          }
          // Ahead of this replica's high watermark (a follower catching up): wait for it.
        } else if (!isRetriable(error)) throw error
        await sleep(backoffMs, stopped)
        backoffMs = Math.min(backoffMs * 2, backoffMsMax)
        meta = await fetchMetadata(url).catch(() => meta)
        reader.url = replicaUrl(meta, topic!, reader.partition, follower) ?? reader.url
        continue
      }
      backoffMs = 50
      for (const r of answer.records) {
        if (remaining <= 0 || stopped.aborted) break
        remaining--
        await io.write(Buffer.from(r.value, 'base64'))
        reader.offset = r.offset + 1
      }
      if (answer.records.length === 0) reader.offset = Math.max(reader.offset, answer.nextOffset)
      if (group !== undefined && answer.records.length > 0) {
        await request(url, 'POST', `/v1/groups/${encodeURIComponent(group)}/offsets`, { body: { offsets: [{ topic, partition: reader.partition, offset: reader.offset }] } })
      }
    }
    stop.abort()
  }
  await Promise.all(readers.map((r) => poll(r).catch((error: unknown) => {
    stop.abort()
    throw error
  })))
  return 0
}
