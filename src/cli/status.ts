/**
 * `rill status`: brokers (and whether each answers), the controller leader,
 * and every partition with its leader, replicas, high watermark and how far
 * each replica is behind its leader. That is read from each broker's own
 * /v1/metadata (its replica's high watermark) against the leader's:
 * `id:N` records behind, `id:?` when that broker does not answer,
 * `id:offline` when that broker says its replica is assigned but not open
 * (out of file descriptors, a failed open; retried).
 *
 * The column is BEHIND-LEADER, not LAG: Kafka users read LAG as consumer
 * lag (`kafka-consumer-groups`, `rill group describe`), and this is
 * replication. The name says what it counts, and from where.
 */
import { systemRuntime } from '../base/index.ts'
import type { MetadataResponse } from '../wire/index.ts'
import { expectPositionals, parseArgs, target, type Target } from './args.ts'
import { fetchMetadata, table } from './topic.ts'

export const statusUsage = `usage: rill status [--brokers URL,...]
  the controller leader; each broker and whether it answers; per partition its leader, replicas,
  high watermark and BEHIND-LEADER: records each replica's high watermark is behind the leader's
  (id:N; id:? when that broker does not answer; id:offline when its replica is not open)
`

/** Longest wait for one broker's metadata when measuring lag. */
const brokerProbeMs = 2000

type Out = (line: string) => void

async function probe(at: Target): Promise<MetadataResponse | null> {
  const timer = new Promise<null>((resolve) => systemRuntime.setTimer(() => resolve(null), brokerProbeMs, { background: true }))
  return Promise.race([fetchMetadata(at).catch(() => null), timer])
}

export async function statusCommand(argv: readonly string[], out: Out): Promise<number> {
  const parsed = parseArgs(argv, {})
  if (parsed.flags.help === true) {
    out(statusUsage.trimEnd())
    return 0
  }
  expectPositionals(parsed, [])
  const at = target(parsed.flags)
  const meta = await fetchMetadata(at)
  const views = new Map<number, MetadataResponse | null>()
  await Promise.all(meta.brokers.map(async (b) => views.set(b.id, await probe({ ...at, url: b.url, urls: [b.url] }))))
  out(`controller leader: ${meta.controller.leader ?? 'none (election under way)'}`)
  out('')
  out(table(['BROKER', 'URL', 'STATE'], meta.brokers.map((b) => [String(b.id), b.url, views.get(b.id) ? 'up' : 'unreachable'])))
  const rows: string[][] = []
  for (const t of meta.topics) {
    for (const p of t.partitions) {
      const replicaHw = (id: number | null): number | undefined =>
        id === null ? undefined : views.get(id)?.topics.find((x) => x.name === t.name)?.partitions.find((x) => x.partition === p.partition)?.highWatermark
      const leaderHw = replicaHw(p.leader) ?? p.highWatermark
      // A broker whose replica is assigned but not open says so (offlineReplicas): never counted in sync.
      const offline = (id: number): boolean =>
        views.get(id)?.topics.find((x) => x.name === t.name)?.partitions.find((x) => x.partition === p.partition)?.offlineReplicas?.includes(id) === true
      const behind = p.replicas.map((id) => {
        if (offline(id)) return `${id}:offline`
        const hw = replicaHw(id)
        return `${id}:${hw === undefined ? '?' : Math.max(0, leaderHw - hw)}`
      })
      rows.push([t.name, String(p.partition), p.leader === null ? '-' : String(p.leader), p.replicas.join(','), String(leaderHw), behind.join(' ')])
    }
  }
  out('')
  if (rows.length === 0) out('no topics')
  else out(table(['TOPIC', 'PARTITION', 'LEADER', 'REPLICAS', 'HIGH-WATERMARK', 'BEHIND-LEADER'], rows))
  return 0
}
