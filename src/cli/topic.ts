/**
 * `rill topic create|list|describe|delete`.
 */
import type { CreateTopicRequest, CreateTopicResponse, MetadataResponse, TopicDescription, TopicListResponse } from '../wire/index.ts'
import { UsageError, expectPositionals, parseArgs, target, type FlagSpecs, type Target } from './args.ts'
import { request } from './client.ts'
import { replicationFactorMax, topicPartitionsMax } from '../api/limits.ts'

export const topicUsage = `usage:
  rill topic create NAME [--partitions 3] [--replicas 3] [--persistence sync|async|memory]
                         [--retention-ms N] [--retention-bytes N]
  rill topic list
  rill topic describe NAME
  rill topic delete NAME
(all take --brokers URL,... (RILL_BROKERS; --url is the same))
`

const createFlags: FlagSpecs = {
  partitions: { kind: 'int', min: 1, max: topicPartitionsMax },
  replicas: { kind: 'int', min: 1, max: replicationFactorMax },
  persistence: { kind: 'string', values: ['sync', 'async', 'memory'] },
  'retention-ms': { kind: 'int', min: -1, max: Number.MAX_SAFE_INTEGER },
  'retention-bytes': { kind: 'int', min: -1, max: Number.MAX_SAFE_INTEGER },
}

type Out = (line: string) => void

export async function topicCommand(argv: readonly string[], out: Out): Promise<number> {
  const sub = argv[0]
  const rest = argv.slice(1)
  switch (sub) {
    case 'create':
      return create(rest, out)
    case 'list': {
      const parsed = parseArgs(rest, {})
      if (parsed.flags.help === true) return help(out)
      expectPositionals(parsed, [])
      const list = await request<TopicListResponse>(target(parsed.flags), 'GET', '/v1/topics')
      for (const t of list.topics) out(t.name)
      return 0
    }
    case 'describe': {
      const parsed = parseArgs(rest, {})
      if (parsed.flags.help === true) return help(out)
      const [name] = expectPositionals(parsed, ['NAME'])
      const t = await request<TopicDescription>(target(parsed.flags), 'GET', `/v1/topics/${encodeURIComponent(name!)}`)
      describe(t, out)
      return 0
    }
    case 'delete': {
      const parsed = parseArgs(rest, {})
      if (parsed.flags.help === true) return help(out)
      const [name] = expectPositionals(parsed, ['NAME'])
      await request(target(parsed.flags), 'DELETE', `/v1/topics/${encodeURIComponent(name!)}`)
      out(`deleted topic ${name}`)
      return 0
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      return help(out)
    default:
      throw new UsageError(`unknown topic command "${sub}" (create, list, describe, delete)`)
  }
}

function help(out: Out): number {
  out(topicUsage.trimEnd())
  return 0
}

async function create(argv: readonly string[], out: Out): Promise<number> {
  const parsed = parseArgs(argv, createFlags)
  if (parsed.flags.help === true) return help(out)
  const [name] = expectPositionals(parsed, ['NAME'])
  const f = parsed.flags
  const config: NonNullable<CreateTopicRequest['config']> = {
    ...(f.persistence === undefined ? {} : { persistence: f.persistence as 'sync' | 'async' | 'memory' }),
    ...(f['retention-ms'] === undefined ? {} : { retentionMs: f['retention-ms'] as number }),
    ...(f['retention-bytes'] === undefined ? {} : { retentionBytes: f['retention-bytes'] as number }),
  }
  const body: CreateTopicRequest = {
    name: name!,
    partitions: (f.partitions as number | undefined) ?? 3,
    replicationFactor: (f.replicas as number | undefined) ?? 3,
    ...(Object.keys(config).length === 0 ? {} : { config }),
  }
  const created = await request<CreateTopicResponse>(target(f), 'POST', '/v1/topics', { body })
  out(`created topic ${created.name} with ${created.partitions} partitions, replication factor ${body.replicationFactor}`)
  return 0
}

function describe(t: TopicDescription, out: Out): void {
  const config = Object.entries(t.config ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(' ')
  out(`topic ${t.name}  partitions ${t.partitions.length}  replication ${t.replicationFactor}${config === '' ? '' : `  ${config}`}`)
  out(table(['PARTITION', 'LEADER', 'REPLICAS', 'HIGH-WATERMARK'], t.partitions.map((p) => [String(p.partition), p.leader === null ? '-' : String(p.leader), p.replicas.join(','), String(p.highWatermark)])))
}

/** Left-aligned columns separated by two spaces. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: readonly string[]): string => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')
  return [line(header), ...rows.map(line)].join('\n')
}

/** The metadata of one broker, for status and the data commands. */
export function fetchMetadata(at: Target): Promise<MetadataResponse> {
  return request<MetadataResponse>(at, 'GET', '/v1/metadata')
}
