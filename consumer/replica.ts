/**
 * Which replica of a partition to fetch from (DESIGN.md decision 8: any
 * replica serves records up to the commit index it knows).
 *
 *   leader    the leader (any replica while there is none)
 *   follower  a replica that is not the leader, else the leader
 *   nearest   a replica on the consumer's rack, else the leader
 *
 * Brokers that failed lately (`avoid`) are skipped while another replica is
 * there, so a dead follower costs one failed fetch, not a stall.
 */
import type { BrokerInfo } from '../client/index.ts'
import type { BrokerRef, PartitionMetadata } from '../src/wire/index.ts'
import type { ReadFrom } from './options.ts'

export interface ReplicaChoice {
  readonly readFrom: ReadFrom
  readonly rack: string | null
  /** Broker ids to skip while another replica is usable. */
  readonly avoid: ReadonlySet<number>
}

/** The broker to fetch `p` from, or null when no replica has a known URL. */
export function chooseReplica(p: PartitionMetadata, brokers: ReadonlyMap<number, BrokerInfo>, choice: ReplicaChoice): BrokerRef | null {
  const known = p.replicas.map((id) => brokers.get(id)).filter((b): b is BrokerInfo => b !== undefined && !b.fenced)
  const usable = known.filter((b) => !choice.avoid.has(b.id))
  const pool = usable.length > 0 ? usable : known
  if (pool.length === 0) return null
  const leader = pool.find((b) => b.id === p.leader)
  let pick: BrokerInfo | undefined
  if (choice.readFrom === 'follower') pick = pool.find((b) => b.id !== p.leader)
  if (choice.readFrom === 'nearest' && choice.rack !== null) {
    // On the rack, the leader first (it has every committed record at once), then the others.
    pick = (leader?.rack === choice.rack ? leader : undefined) ?? pool.find((b) => b.rack === choice.rack)
  }
  pick ??= leader ?? pool[0]!
  return { id: pick.id, url: pick.url }
}
