/**
 * `rill group describe NAME`: a consumer group as its coordinator sees it —
 * generation, members with what they own and what they are giving up, and
 * committed offsets with the lag behind each partition's high watermark.
 * Any broker is asked first; a 421 names the coordinator, asked next.
 */
import type { GroupDescription } from '../wire/index.ts'
import { UsageError, expectPositionals, parseArgs, target, type Target } from './args.ts'
import { ApiError, request } from './client.ts'
import { fetchMetadata, table } from './topic.ts'

export const groupUsage = 'usage: rill group describe NAME [--url URL]\n'

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
  const meta = await fetchMetadata(at)
  const hw = new Map<string, number>()
  for (const t of meta.topics) for (const p of t.partitions) hw.set(`${t.name}/${p.partition}`, p.highWatermark)
  const list = (tps: GroupDescription['members'][number]['assignment']): string =>
    tps.map((tp) => `${tp.topic}:${tp.partitions.join(',')}`).join(' ') || '-'
  out(`group ${g.group}: generation ${g.generation}, coordinator broker ${g.coordinator}, ${g.members.length} member(s)`)
  out('')
  out(table(['MEMBER', 'CLIENT', 'RACK', 'OWNS', 'GIVING UP'], g.members.map((m) => [m.memberId, m.clientId || '-', m.rack ?? '-', list(m.assignment), list(m.revoking)])))
  out('')
  const rows = [...g.offsets]
    .sort((a, b) => (a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1))
    .map((o) => {
      const h = hw.get(`${o.topic}/${o.partition}`)
      return [o.topic, String(o.partition), String(o.offset), h === undefined ? '?' : String(h), h === undefined ? '?' : String(Math.max(0, h - o.offset))]
    })
  out(table(['TOPIC', 'PARTITION', 'COMMITTED', 'HIGH WATERMARK', 'LAG'], rows))
  return 0
}

async function describe(start: Target, name: string): Promise<GroupDescription> {
  let at = start
  for (let i = 0; ; i++) {
    try {
      return await request<GroupDescription>(at, 'GET', `/v1/groups/${encodeURIComponent(name)}`)
    } catch (error) {
      const leader = error instanceof ApiError && error.status === 421 ? (error.details['leader'] as { url?: unknown } | null) : null
      if (i >= redirectsMax || typeof leader?.url !== 'string') throw error
      at = { ...start, url: leader.url }
    }
  }
}
