/**
 * Leaders of partitions not hosted here. Every broker answers /v1/metadata
 * from its own copy of the metadata, but Raft tells a broker the leaders of
 * only the partitions it hosts; for the rest it asks the other brokers which
 * partitions they lead and keeps their last answers.
 *
 *   poll ─▶ PeerCalls.leaderships(each unfenced peer, in parallel, bounded) ─▶ remote leaders
 *
 * The answers also wake a quiet follower whose leader's broker answered but
 * no longer leads its partition: a quiet group hears no heartbeats, so it
 * would not notice otherwise.
 */
import type { ControllerState } from '../controller/index.ts'
import { Role } from '../raft/index.ts'
import type { HostedPartition } from './hosted-groups.ts'
import type { PeerCalls } from './peer-calls.ts'

/** Ticks between polls of the other brokers for the partitions they lead (5 s at the default tick). */
export const leaderPollTicks = 100
/** A peer that does not answer the leadership poll within this is skipped for the round. */
const leaderPollTimeoutMs = 1000
/** Leaderships read from one peer's answer (more partitions than a cluster holds is garbage). */
const leaderPollEntriesMax = 200_000

/** A partition's leader as its leader reported it, with its high watermark then. */
export interface RemoteLeader {
  readonly leader: number
  readonly highWatermark: number
}

export class LeaderPoll {
  readonly #brokerId: number
  readonly #peerCalls: PeerCalls
  readonly #metadata: { readonly state: ControllerState }
  readonly #hosted: { entries(): Iterable<[number, HostedPartition]> }
  readonly #isStopped: () => boolean
  /** Leaders of partitions not hosted here, as their leaders reported at the last poll. */
  #remoteLeaders = new Map<number, RemoteLeader>()
  #polling = false

  constructor(options: {
    brokerId: number
    peerCalls: PeerCalls
    metadata: { readonly state: ControllerState }
    hosted: { entries(): Iterable<[number, HostedPartition]> }
    isStopped: () => boolean
  }) {
    this.#brokerId = options.brokerId
    this.#peerCalls = options.peerCalls
    this.#metadata = options.metadata
    this.#hosted = options.hosted
    this.#isStopped = options.isStopped
  }

  /** The leader of group `gid` at the last poll, if a peer reported leading it. */
  leaderOf(gid: number): RemoteLeader | undefined {
    return this.#remoteLeaders.get(gid)
  }

  /**
   * Every broker answers /v1/metadata from its own copy, but a broker knows
   * leaders only of the partitions it hosts: it asks the others (in
   * parallel, bounded) which partitions they lead, about once a second.
   */
  async poll(): Promise<void> {
    if (this.#polling || this.#isStopped()) return
    const peers = this.#metadata.state.brokers().filter((b) => b.id !== this.#brokerId && !b.fenced)
    if (peers.length === 0) return
    this.#polling = true
    try {
      const next = new Map<number, RemoteLeader>()
      const answered = new Set<number>()
      await Promise.all(
        peers.map(async (b) => {
          try {
            const leaderships = await this.#peerCalls.leaderships(b.httpUrl, leaderPollTimeoutMs, leaderPollEntriesMax)
            answered.add(b.id)
            for (const l of leaderships) next.set(l.group, { leader: b.id, highWatermark: l.highWatermark })
          } catch {
            // Unreachable: its leaderships are simply unknown until the next poll.
          }
        }),
      )
      this.#remoteLeaders = next
      this.#wakeOrphans(next, answered)
    } finally {
      this.#polling = false
    }
  }

  /**
   * A quiet follower whose leader's broker answered but no longer leads the partition
   * (its replica stopped, say after a disk error) wakes up to elect a new leader.
   */
  #wakeOrphans(next: ReadonlyMap<number, RemoteLeader>, answered: ReadonlySet<number>): void {
    for (const [gid, h] of this.#hosted.entries()) {
      const raft = h.replica.raft
      if (!raft.quiesced || raft.role === Role.Leader || !answered.has(raft.lead)) continue
      if (next.get(gid)?.leader !== raft.lead) raft.unquiesce()
    }
  }
}
