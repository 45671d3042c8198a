/**
 * Leader balancing. Placement spreads preferred replicas (replicas[0])
 * evenly, so leaders follow them: a leader here that is not the preferred
 * replica hands over once the preferred one is registered, unfenced and
 * fully caught up (a broker that comes back gets its leaderships back this
 * way). It keeps no state of its own: each pass reads the metadata and the
 * hosted replicas as they are then.
 */
import type { ControllerState } from '../controller/index.ts'
import { Role } from '../raft/index.ts'
import type { HostedPartition } from './hosted-groups.ts'

/** Ticks between passes that hand leadership back to preferred replicas. */
export const leaderBalanceTicks = 40

export class LeaderBalance {
  readonly #brokerId: number
  readonly #metadata: { readonly state: ControllerState }
  readonly #hosted: { values(): Iterable<HostedPartition> }

  constructor(options: { brokerId: number; metadata: { readonly state: ControllerState }; hosted: { values(): Iterable<HostedPartition> } }) {
    this.#brokerId = options.brokerId
    this.#metadata = options.metadata
    this.#hosted = options.hosted
  }

  /** One pass: each replica led here whose preferred replica is ready gets handed to it. */
  run(): void {
    const state = this.#metadata.state
    for (const h of this.#hosted.values()) {
      const raft = h.replica.raft
      if (raft.role !== Role.Leader || raft.leadTransferee !== 0) continue
      const preferred = state.topic(h.topic)?.partitions[h.partition]?.replicas[0]
      if (preferred === undefined || preferred === this.#brokerId || state.broker(preferred)?.fenced !== false) continue
      const pr = raft.progress.get(preferred)
      if (pr !== undefined && pr.match === raft.log.lastIndex() && pr.recentActive) h.replica.transferLeader(preferred)
    }
  }
}
