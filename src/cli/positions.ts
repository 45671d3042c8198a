/**
 * Where `rill consume` starts in a partition: `--offset N|beginning|end`
 * or `--from-time T`, turned into an offset through the fetch route
 * (docs/api.md has no timestamp lookup, and needs none):
 *
 *   bounds: GET .../records?offset=0&maxRecords=1 ──▶ logStartOffset, highWatermark
 *           (a 416 when the log no longer starts at 0 carries both as well)
 *   --from-time T: binary search over [logStart, hw) for the first offset
 *           whose record's timestamp ≥ T, one maxRecords=1 fetch per step
 *           (≤ 54 steps: offsets are below 2^53); none ──▶ hw (the end)
 *
 * The search assumes timestamps do not go down within a partition: true of
 * the broker's clock (records sent without a timestamp). Records a producer
 * stamped out of order make it land on a record at or after T whose
 * predecessor is before T, not necessarily the first such one (Kafka's time
 * index answers the same way, by the largest timestamp so far).
 */
import type { FetchResponseJson, MetadataResponse } from '../wire/index.ts'
import { CliError, UsageError, type Target } from './args.ts'
import { ApiError, request } from './client.ts'

/** What the user asked for in one partition. */
export type StartSpec = { readonly kind: 'offset'; readonly offset: number } | { readonly kind: 'beginning' } | { readonly kind: 'end' } | { readonly kind: 'time'; readonly ms: number }

/** Steps of the timestamp search: 2^54 > any offset (they stay below 2^53). */
const timeSearchStepsMax = 54
/** NOT_LEADER redirects followed for one fetch (a leader may move once during an election). */
const redirectsMax = 2

export interface Bounds {
  readonly logStartOffset: number
  readonly highWatermark: number
}

/** Parses `--offset`: a non-negative integer, `beginning` or `end`. */
export function parseOffsetFlag(raw: string): StartSpec {
  if (raw === 'beginning' || raw === 'end') return { kind: raw }
  if (!/^[0-9]+$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw new UsageError(`--offset expects an offset (0 and up), beginning or end, got "${raw}"`)
  return { kind: 'offset', offset: Number(raw) }
}

/** Parses `--from-time`: ms since the epoch, or an ISO 8601 date/time (`2026-12-05T10:00:00Z`; without a zone it is UTC). */
export function parseTimeFlag(raw: string): number {
  if (/^[0-9]{1,15}$/.test(raw)) return Number(raw)
  if (!/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?)?(Z|[+-]\d{2}:?\d{2})?$/.test(raw)) {
    throw new UsageError(`--from-time expects ms since the epoch or an ISO time like 2026-12-05T10:00:00Z, got "${raw}"`)
  }
  const zoned = /(Z|[+-]\d{2}:?\d{2})$/.test(raw) || raw.length === 10 ? raw : `${raw}Z`
  const ms = Date.parse(zoned.replace(' ', 'T'))
  if (!Number.isFinite(ms) || ms < 0) throw new UsageError(`--from-time: "${raw}" is not a valid time`)
  return ms
}

/** The broker to read partition `p` of `topic` from: its leader (else the target's broker, which redirects). */
function leaderTarget(at: Target, meta: MetadataResponse, topic: string, partition: number): Target {
  const leader = meta.topics.find((t) => t.name === topic)?.partitions.find((p) => p.partition === partition)?.leader ?? null
  const url = leader === null ? undefined : meta.brokers.find((b) => b.id === leader)?.url
  // A list of its own, the leader first: the broker that answered last (client.ts) must not come before the leader.
  return url === undefined ? at : { ...at, url, urls: [url, ...at.urls.filter((u) => u !== url)] }
}

/** One record fetch at `offset` (base64: any bytes); OFFSET_OUT_OF_RANGE as an ApiError with the bounds. */
async function fetchOne(at: Target, topic: string, partition: number, offset: number): Promise<FetchResponseJson> {
  let to = at
  for (let i = 0; ; i++) {
    try {
      return await request<FetchResponseJson>(to, 'GET', `/v1/topics/${encodeURIComponent(topic)}/partitions/${partition}/records?offset=${offset}&maxRecords=1&encoding=base64`)
    } catch (error) {
      const leader = error instanceof ApiError && error.status === 421 ? (error.details['leader'] as { url?: unknown } | null) : null
      if (i >= redirectsMax || typeof leader?.url !== 'string') throw error
      to = { ...at, url: leader.url, urls: [leader.url] }
    }
  }
}

/** The partition's log start offset and high watermark, as its leader says now. */
export async function partitionBounds(at: Target, topic: string, partition: number): Promise<Bounds> {
  try {
    const answer = await fetchOne(at, topic, partition, 0)
    return { logStartOffset: answer.logStartOffset, highWatermark: answer.highWatermark }
  } catch (error) {
    const d = error instanceof ApiError && error.code === 'OFFSET_OUT_OF_RANGE' ? error.details : null
    if (d !== null && typeof d['logStartOffset'] === 'number' && typeof d['highWatermark'] === 'number') {
      return { logStartOffset: d['logStartOffset'], highWatermark: d['highWatermark'] }
    }
    throw error
  }
}

/** The first offset in [bounds) whose record's timestamp is at or after `ms` (the high watermark when none). */
export async function offsetForTime(at: Target, topic: string, partition: number, ms: number, bounds: Bounds): Promise<number> {
  let lo = bounds.logStartOffset
  let hi = bounds.highWatermark
  for (let step = 0; lo < hi && step < timeSearchStepsMax; step++) {
    const mid = lo + Math.floor((hi - lo) / 2)
    let answer: FetchResponseJson
    try {
      answer = await fetchOne(at, topic, partition, mid)
    } catch (error) {
      // Retention deleted the start under us: search what is left.
      if (error instanceof ApiError && error.code === 'OFFSET_OUT_OF_RANGE' && typeof error.details['logStartOffset'] === 'number' && error.details['logStartOffset'] > mid) {
        lo = error.details['logStartOffset']
        continue
      }
      throw error
    }
    const record = answer.records[0]
    if (record === undefined) {
      hi = mid // nothing there any more (cannot shrink from above, but a bound that holds)
      continue
    }
    if (record.timestamp >= ms) hi = Math.min(mid, record.offset)
    else lo = record.offset + 1
  }
  return lo
}

/** The offset to start partition `partition` at, checked against its bounds (OFFSET_OUT_OF_RANGE otherwise, exit 1). */
export async function startOffset(at: Target, meta: MetadataResponse, topic: string, partition: number, spec: StartSpec): Promise<number> {
  const to = leaderTarget(at, meta, topic, partition)
  const bounds = await partitionBounds(to, topic, partition)
  switch (spec.kind) {
    case 'beginning':
      return bounds.logStartOffset
    case 'end':
      return bounds.highWatermark
    case 'time':
      return offsetForTime(to, topic, partition, spec.ms, bounds)
    case 'offset':
      if (spec.offset < bounds.logStartOffset || spec.offset > bounds.highWatermark) {
        throw new CliError(`OFFSET_OUT_OF_RANGE: ${topic}/${partition} holds offsets ${bounds.logStartOffset} to ${bounds.highWatermark} (the end); --offset ${spec.offset} is outside`)
      }
      return spec.offset
  }
}
