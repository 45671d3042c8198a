/**
 * Every Raft group on a broker talks to its peers through one router:
 *
 *   controller group ─┐ send(gid, msgs)            ┌─▶ controller.step(m)   (gid 0)
 *   partition groups ─┴─▶ PeerNetwork ─ batch ─▶ route ─┴─▶ hosted.step(gid, m)
 *
 * Outgoing messages of all groups queue on the network and go out in one
 * frame per peer, flushed once after the work already queued (a hundred
 * groups sending in one turn cost one flush, not a hundred). Incoming
 * batches are split by group id; until the controller group is open there
 * is nowhere to deliver them, so they are dropped (Raft sends again).
 */
import type { Runtime } from '../base/index.ts'
import { stageTrace } from '../base/stage-trace.ts'
import type { Message } from '../raft/index.ts'
import { forEachMessage } from '../transport/index.ts'
import type { PeerAddress, PeerBatch, PeerNetwork } from '../transport/index.ts'
import type { BrokerConfig } from './config.ts'
import { controllerGroupId } from './names.ts'

/** Where incoming messages go once the broker's groups are open. */
export interface GroupTargets {
  controller(m: Message): void
  partition(gid: number, m: Message): void
}

export class PeerRouter {
  readonly #brokerId: number
  readonly #network: PeerNetwork
  readonly #runtime: Runtime
  #flushScheduled = false
  /** Set once the controller group is open (peer messages before that are dropped). */
  #targets: GroupTargets | null = null

  constructor(options: { brokerId: number; network: PeerNetwork; runtime: Runtime }) {
    this.#brokerId = options.brokerId
    this.#network = options.network
    this.#runtime = options.runtime
  }

  /** Starts delivering incoming messages. */
  open(targets: GroupTargets): void {
    this.#targets = targets
  }

  /** Queues `msgs` of group `gid`; one flush after the current work sends everything queued. */
  send(gid: number, msgs: readonly Message[]): void {
    for (const m of msgs) this.#network.send(gid, m)
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      const queuedMs = stageTrace.enabled ? stageTrace.now() : 0
      this.#runtime.defer(() => {
        this.#flushScheduled = false
        if (stageTrace.enabled) stageTrace.sinceMs('transport.queue_to_flush', queuedMs)
        this.#network.flush()
      })
    }
  }

  /** One batch from peer `fromId`, to the groups it addresses. */
  route(fromId: number, batch: PeerBatch): void {
    // Peers can reach us while the controller group is still opening: drop, Raft sends again.
    const targets = this.#targets
    if (targets === null) return
    forEachMessage(batch, { from: fromId, to: this.#brokerId }, (gid, m) => {
      if (m.from !== fromId || m.to !== this.#brokerId) return
      if (gid === controllerGroupId) {
        targets.controller(m)
        return
      }
      targets.partition(gid, m)
    })
  }
}

/** The seed brokers other than this one: the peers known before any metadata. */
export function seedPeers(config: BrokerConfig): Map<number, PeerAddress> {
  const peers = new Map<number, PeerAddress>()
  for (const s of config.seeds) if (s.id !== config.id) peers.set(s.id, { host: s.host, port: s.port })
  return peers
}

/** The seeds plus every broker in the metadata (its peer URL is `host:port`, IPv6 hosts in brackets). */
export function metadataPeers(config: BrokerConfig, brokers: Iterable<{ readonly id: number; readonly peerUrl: string }>): Map<number, PeerAddress> {
  const peers = seedPeers(config)
  for (const b of brokers) {
    if (b.id === config.id) continue
    const m = /^(.*):(\d+)$/.exec(b.peerUrl)
    if (m !== null) peers.set(b.id, { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) })
  }
  return peers
}
