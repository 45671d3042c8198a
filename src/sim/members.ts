/**
 * Simulated consumer-group members, calling the group coordinator the HTTP
 * layer calls (join, heartbeat, commit, leave) on whichever broker
 * coordinates the group (following NOT_LEADER), as the consumer SDK does:
 *
 * - a member holds the partitions of its latest assignment; one missing
 *   from an answer is given up at once (before the next heartbeat says so);
 * - a member that has had no answer for most of its session gives up
 *   everything it holds (its partitions are about to go to others) — on a
 *   timer, also while a call to a paused coordinator still waits — and one
 *   told UNKNOWN_MEMBER / FENCED_MEMBER joins again;
 * - holders commit the partitions they hold, and some members leave and
 *   join again.
 *
 * The check (Holdings): no partition is held by two members at any moment.
 * The coordinator hands a partition over only once its holder confirmed it
 * gave it up, or after the holder's session expired — which the holder,
 * having heard nothing for most of that session, has given up by then.
 */
import { ErrorCode, isRillError, noTimer, type TimerHandle } from '../base/index.ts'
import type { Broker } from '../broker/broker.ts'
import type { MemberAssignmentResponse } from '../wire/index.ts'
import type { SimBrokerCluster } from './brokers.ts'
import { SimViolation, type Ledger } from './ledger.ts'
import { clientCallMsMax, expectOperatingError, simTopic, withDeadline } from './workload.ts'
import type { RuntimeScope } from './runtime.ts'

export const simGroup = 'sim-group'
/** Members' session: long enough that the schedule's faults (a few seconds) test both expiry and survival. */
const sessionTimeoutMs = 6000
/** Give everything up after this share of the session without an answer. */
const giveUpShare = 0.6

/** Who holds which partition now, across all members. */
export class Holdings {
  readonly #holder = new Map<number, string>()
  handOvers = 0

  take(member: string, partition: number): void {
    const other = this.#holder.get(partition)
    if (other !== undefined && other !== member) throw new SimViolation(`partition ${partition} held by two group members at once: ${other} and ${member}`)
    if (other === undefined) this.handOvers++
    this.#holder.set(partition, member)
  }

  release(member: string, partition: number): void {
    if (this.#holder.get(partition) === member) this.#holder.delete(partition)
  }
}

export class SimMember {
  readonly name: string
  #memberId: string | null = null
  #coordinator = 0
  #memberEpoch = -1
  #held = new Set<number>()
  #lastAnswerMs = 0
  /** Gives everything up when no answer came for most of the session, even while a call is still waiting. */
  #giveUpTimer: TimerHandle = noTimer

  constructor(name: string) {
    this.name = name
  }

  /** Runs until `stopping()`: join, heartbeat, commit, sometimes leave and join again. */
  async run(c: SimBrokerCluster, client: RuntimeScope, ledger: Ledger, holdings: Holdings, stopping: () => boolean): Promise<void> {
    while (!stopping()) {
      await client.sleep(200 + c.random.int(400))
      if (this.#memberId !== null && client.nowMs() - this.#lastAnswerMs > sessionTimeoutMs * giveUpShare) this.#giveUpAll(holdings)
      if (this.#memberId === null) await this.#join(c, client, holdings)
      else if (c.random.next() < 0.005) await this.#leave(c, client, holdings)
      else {
        await this.#heartbeat(c, client, holdings)
        if (this.#held.size > 0 && c.random.next() < 0.3) await this.#commit(c, client, ledger)
      }
    }
    if (this.#memberId !== null) await this.#leave(c, client, holdings)
  }

  #giveUpAll(holdings: Holdings): void {
    for (const p of this.#held) holdings.release(this.#key(), p)
    this.#held.clear()
  }

  #key(): string {
    return `${this.name}(${this.#memberId ?? 'none'})`
  }

  /** The coordinator we believe in, or some broker that is up. */
  #target(c: SimBrokerCluster): { id: number; broker: Broker } | null {
    const b = c.brokers.get(this.#coordinator)
    if (b?.broker != null && b.up) return { id: b.id, broker: b.broker }
    const up = c.up()
    if (up.length === 0) return null
    const pick = up[c.random.int(up.length)]!
    return { id: pick.id, broker: pick.broker! }
  }

  /** Calls the coordinator; learns where it is from NOT_LEADER; null when the call failed (already handled). */
  async #call<T>(c: SimBrokerCluster, client: RuntimeScope, what: string, fn: (broker: Broker) => Promise<T>): Promise<T | null> {
    const t = this.#target(c)
    if (t === null) return null
    try {
      return await withDeadline(client, clientCallMsMax, () => fn(t.broker), c.brokers.get(t.id)!.scope)
    } catch (error) {
      if (isRillError(error, ErrorCode.UNKNOWN_MEMBER) || isRillError(error, ErrorCode.FENCED_MEMBER)) throw error
      const e = expectOperatingError(error, `${this.name}: ${what} at broker ${t.id}`)
      const l = e.details['leader']
      this.#coordinator = l !== null && typeof l === 'object' && typeof (l as { id?: unknown }).id === 'number' ? (l as { id: number }).id : 0
      return null
    }
  }

  async #join(c: SimBrokerCluster, client: RuntimeScope, holdings: Holdings): Promise<void> {
    const r = await this.#call(c, client, 'join', (b) => b.groups.join(simGroup, { topics: [simTopic], clientId: this.name, sessionTimeoutMs }))
    if (r === null) return
    this.#memberId = r.memberId
    this.#memberEpoch = -1
    c.trace(`${this.name} joined ${simGroup} as ${r.memberId}`)
    this.#accept(r, client, holdings)
  }

  async #heartbeat(c: SimBrokerCluster, client: RuntimeScope, holdings: Holdings): Promise<void> {
    const memberId = this.#memberId!
    const owned = [{ topic: simTopic, partitions: [...this.#held].sort((a, b) => a - b) }]
    try {
      const r = await this.#call(c, client, 'heartbeat', (b) => b.groups.heartbeat(simGroup, memberId, { owned, memberEpoch: this.#memberEpoch }))
      if (r !== null && this.#memberId === memberId) this.#accept(r, client, holdings)
    } catch (error) {
      if (!isRillError(error, ErrorCode.UNKNOWN_MEMBER) && !isRillError(error, ErrorCode.FENCED_MEMBER)) throw error
      // Expired (a zombie) or fenced: it holds nothing any more, and joins again.
      c.trace(`${this.name}: ${(error as Error).message}; joining again`)
      this.#giveUpAll(holdings)
      this.#memberId = null
    }
  }

  /** Acts on an answer: gives up what it no longer has, then takes what is new. Stale answers are ignored. */
  #accept(r: MemberAssignmentResponse, client: RuntimeScope, holdings: Holdings): void {
    if (r.memberEpoch < this.#memberEpoch) return
    this.#memberEpoch = r.memberEpoch
    this.#lastAnswerMs = client.nowMs()
    this.#giveUpTimer.cancel()
    this.#giveUpTimer = client.setTimer(() => this.#giveUpAll(holdings), sessionTimeoutMs * giveUpShare)
    const assigned = new Set(r.assignment.filter((tp) => tp.topic === simTopic).flatMap((tp) => tp.partitions))
    for (const p of [...this.#held]) {
      if (assigned.has(p)) continue
      this.#held.delete(p)
      holdings.release(this.#key(), p)
    }
    for (const p of assigned) {
      if (this.#held.has(p)) continue
      holdings.take(this.#key(), p)
      this.#held.add(p)
    }
  }

  async #commit(c: SimBrokerCluster, client: RuntimeScope, ledger: Ledger): Promise<void> {
    const memberId = this.#memberId!
    const offsets = [...this.#held].map((p) => ({ topic: simTopic, partition: p, offset: ledger.ackedEnd(p) + 1 }))
    try {
      await this.#call(c, client, 'commit', (b) => b.groups.commit(simGroup, { memberId, offsets }))
    } catch (error) {
      // A commit of a partition the coordinator gave away is refused: the holder is a zombie; the heartbeat finds out.
      if (!isRillError(error, ErrorCode.FENCED_MEMBER) && !isRillError(error, ErrorCode.UNKNOWN_MEMBER)) throw error
    }
  }

  async #leave(c: SimBrokerCluster, client: RuntimeScope, holdings: Holdings): Promise<void> {
    const memberId = this.#memberId!
    // Stop consuming first, then tell the coordinator.
    this.#giveUpAll(holdings)
    this.#memberId = null
    try {
      await this.#call(c, client, 'leave', (b) => b.groups.leave(simGroup, memberId))
      c.trace(`${this.name} left ${simGroup}`)
    } catch (error) {
      if (!isRillError(error, ErrorCode.UNKNOWN_MEMBER) && !isRillError(error, ErrorCode.FENCED_MEMBER)) throw error
    }
  }
}
