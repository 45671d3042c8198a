/**
 * `rill group describe NAME`: a consumer group as its coordinator sees it —
 * generation, members with what they own and what they are giving up — and
 * per partition, as `kafka-consumer-groups --describe` shows it: the
 * committed offset, the log end offset (the high watermark: the end a
 * consumer can read to) and LAG = end − committed, with the member that owns
 * the partition. A partition owned but never committed shows `-`.
 *
 * Any broker is asked first; a 421 names the coordinator, asked next. Each
 * log end offset is the partition leader's own (its /v1/metadata), so the
 * lag is not a follower's stale view. A group with no members and no
 * committed offsets does not exist: GROUP_NOT_FOUND, exit 1.
 */
import type { GroupDescription, MetadataResponse } from '../wire/index.ts'
import { CliError, UsageError, expectPositionals, parseArgs, target, type Target } from './args.ts'
import { ApiError, request } from './client.ts'
import { fetchMetadata, table } from './topic.ts'

export const groupUsage = `usage: rill group describe NAME [--brokers URL,...]
  the group's generation and members (what each owns and is giving up), then per partition
  COMMITTED (the group's committed offset), LOG-END-OFFSET (the high watermark), LAG (end - committed)
  and the owning MEMBER; exit 1 with GROUP_NOT_FOUND when the group has no members and no offsets
`

type Out = (line: string) => void

/** Redirects followed to reach the coordinator (it may move during an election). */
const redirectsMax = 3

export async function groupCommand(argv: readonly string[], out: Out): Promise<number> {
  const [sub, ...rest] = argv
  if (sub === undefined || sub === 'help' || sub === '--help' || sub === '-h') {
    out(groupUsage.trimEnd())
    return 0
  }
  if (sub !== 'describe') throw new UsageError(`unknown group command "${sub}"`)
  const parsed = parseArgs(rest, {})
  if (parsed.flags.help === true) {
    out(groupUsage.trimEnd())
    return 0
  }
  const [name] = expectPositionals(parsed, ['NAME'])
  const at = target(parsed.flags)
  const g = await describe(at, name!)
  if (g.members.length === 0 && g.offsets.length === 0) throw new CliError(`GROUP_NOT_FOUND: no group "${name}" (no members and no committed offsets)`)
  const ends = await logEndOffsets(at, await fetchMetadata(at))
  const list = (tps: GroupDescription['members'][number]['assignment']): string =>
    tps.map((tp) => `${tp.topic}:${tp.partitions.join(',')}`).join(' ') || '-'
  out(`group ${g.group}: generation ${g.generation}, coordinator broker ${g.coordinator}, ${g.members.length} member(s)`)
  out('')
  if (g.members.length > 0) {
    out(table(['MEMBER', 'CLIENT', 'RACK', 'OWNS', 'GIVING-UP'], g.members.map((m) => [m.memberId, m.clientId || '-', m.rack ?? '-', list(m.assignment), list(m.revoking)])))
    out('')
  }
  out(table(['TOPIC', 'PARTITION', 'COMMITTED', 'LOG-END-OFFSET', 'LAG', 'MEMBER'], partitionRows(g, ends)))
  return 0
}

/** One row per partition committed or owned, sorted by topic and partition. */
export function partitionRows(g: GroupDescription, ends: ReadonlyMap<string, number>): string[][] {
  const key = (topic: string, partition: number): string => `${topic}/${partition}`
  const owner = new Map<string, string>()
  for (const m of g.members) for (const tp of m.assignment) for (const p of tp.partitions) owner.set(key(tp.topic, p), m.memberId)
  const committed = new Map<string, number>()
  for (const o of g.offsets) committed.set(key(o.topic, o.partition), o.offset)
  const all = new Map<string, { topic: string; partition: number }>()
  for (const o of g.offsets) all.set(key(o.topic, o.partition), o)
  for (const m of g.members) for (const tp of m.assignment) for (const p of tp.partitions) all.set(key(tp.topic, p), { topic: tp.topic, partition: p })
  return [...all.values()]
    .sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1))
    .map(({ topic, partition }) => {
      const k = key(topic, partition)
      const end = ends.get(k)
      const done = committed.get(k)
      const lag = end === undefined || done === undefined ? '-' : String(Math.max(0, end - done))
      return [topic, String(partition), done === undefined ? '-' : String(done), end === undefined ? '?' : String(end), lag, owner.get(k) ?? '-']
    })
}

/** Each partition's high watermark as its leader says (the answering broker's view when the leader does not answer). */
async function logEndOffsets(at: Target, meta: MetadataResponse): Promise<Map<string, number>> {
  const ends = new Map<string, number>()
  for (const t of meta.topics) for (const p of t.partitions) ends.set(`${t.name}/${p.partition}`, p.highWatermark)
  const leaders = new Set(meta.topics.flatMap((t) => t.partitions.map((p) => p.leader)).filter((id): id is number => id !== null))
  await Promise.all(
    [...leaders].map(async (id) => {
      const url = meta.brokers.find((b) => b.id === id)?.url
      if (url === undefined) return
      const view = await fetchMetadata({ ...at, url, urls: [url] }).catch(() => null)
      for (const t of view?.topics ?? []) for (const p of t.partitions) if (p.leader === id) ends.set(`${t.name}/${p.partition}`, p.highWatermark)
    }),
  )
  return ends
}

async function describe(start: Target, name: string): Promise<GroupDescription> {
  let at = start
  for (let i = 0; ; i++) {
    try {
      return await request<GroupDescription>(at, 'GET', `/v1/groups/${encodeURIComponent(name)}`)
    } catch (error) {
      const leader = error instanceof ApiError && error.status === 421 ? (error.details['leader'] as { url?: unknown } | null) : null
      if (i >= redirectsMax || typeof leader?.url !== 'string') throw error
      at = { ...start, url: leader.url, urls: [leader.url] }
    }
  }
}
