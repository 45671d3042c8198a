/**
 * Liveness and fencing, run on the controller leader: a broker it has had
 * no peer link with for a whole session is fenced, so placement stops
 * choosing it and it leads nothing. The fenced broker unfences itself by
 * registering again once it is back (controller-client.ts).
 *
 *   link up ──────────────▶ seen = now
 *   link down, now - seen ≥ brokerSessionMsMax ──▶ propose FenceBroker (one at a time per broker)
 *
 * What was seen is the leader's own knowledge: a new controller leader
 * starts afresh (`reset`) and gives every broker a full session.
 */
import type { Logger } from 'pino'
import type { Runtime } from '../base/index.ts'
import type { Command, ControllerState } from '../controller/index.ts'
import { CommandType } from '../controller/types.ts'
import type { PeerNetwork } from '../transport/index.ts'

/**
 * The controller leader fences a broker it has had no peer connection with
 * for this long (the transport pings every second and drops a silent link
 * after ten), so placement stops choosing it; the broker unfences itself by
 * registering again when it is back.
 */
export const brokerSessionMsMax = 6000

/** What liveness needs of the controller client. */
export interface LivenessController {
  readonly state: ControllerState
  isLeader(): boolean
  propose(cmd: Command): Promise<void>
}

export class Liveness {
  readonly #brokerId: number
  readonly #logger: Logger
  readonly #runtime: Runtime
  readonly #network: Pick<PeerNetwork, 'connected'>
  readonly #controller: LivenessController
  /** Controller leader: when each broker's peer link was last seen up (ms, monotonic). */
  readonly #seenMs = new Map<number, number>()
  /** Brokers with a FenceBroker proposal under way. */
  readonly #fencing = new Set<number>()

  constructor(options: { brokerId: number; logger: Logger; runtime: Runtime; network: Pick<PeerNetwork, 'connected'>; controller: LivenessController }) {
    this.#brokerId = options.brokerId
    this.#logger = options.logger
    this.#runtime = options.runtime
    this.#network = options.network
    this.#controller = options.controller
  }

  /** The controller's leader changed: a new controller leader gives every broker a full session before fencing it. */
  reset(): void {
    this.#seenMs.clear()
  }

  /** Controller leader: fence brokers whose peer link has been down for a whole session. */
  check(): void {
    if (!this.#controller.isLeader()) return
    const now = this.#runtime.nowMs()
    for (const b of this.#controller.state.brokers()) {
      if (b.id === this.#brokerId || this.#network.connected(b.id)) {
        this.#seenMs.set(b.id, now)
        continue
      }
      const seen = this.#seenMs.get(b.id)
      if (seen === undefined) {
        this.#seenMs.set(b.id, now)
        continue
      }
      if (b.fenced || this.#fencing.has(b.id) || now - seen < brokerSessionMsMax) continue
      this.#fence(b.id, now - seen)
    }
  }

  #fence(id: number, silentMs: number): void {
    this.#fencing.add(id)
    this.#logger.warn({ event: 'broker_fenced', fenced: id, silentMs: Math.round(silentMs) }, `fencing broker ${id}: no peer link for ${Math.round(silentMs)} ms`)
    this.#controller
      .propose({ type: CommandType.FenceBroker, id })
      .catch((error: unknown) => this.#logger.debug({ event: 'fence_retry', err: error }, 'fencing will be retried'))
      .finally(() => this.#fencing.delete(id))
  }
}
