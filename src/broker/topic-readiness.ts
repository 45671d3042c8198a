/**
 * When a new topic is ready: the wait behind `POST /v1/topics` (issue 12).
 *
 * The controller commits a topic long before anyone can use it: every broker
 * has to apply the creation from the controller log, open its replicas, and
 * each partition has to elect a leader. A client that produced the moment it
 * had its 201 got 404 UNKNOWN_TOPIC from a broker that had not applied the
 * creation yet, 421 with no leader from a replica still electing, or "no
 * replica" from a broker still opening it. Kafka's clients paper over this
 * by retrying on metadata errors; curl does not. So the broker that answers
 * the create waits, bounded, until the topic is usable everywhere:
 *
 *   every live broker (unfenced, and something listens at its address)
 *     ── topicStatus (its own copy, or the internal route) ──▶
 *     knows the topic, and each replica it hosts is open and follows a leader
 *   and for each partition: all its live replicas follow the same leader, that
 *   leader is ready (its first entry applied), and it is the preferred replica
 *   when that one is live (else the leader balance would move it a moment later)
 *
 * Asking every broker is what makes "produce to any broker, fetch from any
 * replica" hold right after the 201, which a wait for this broker's own copy
 * alone could not promise. The alternative — every broker waiting for its
 * own metadata to catch up whenever it does not know a topic — would put a
 * controller round trip in front of every genuine 404, and cannot make a
 * replica open any sooner.
 */
import { RillError, type Runtime } from '../base/index.ts'
import type { ControllerState } from '../controller/index.ts'
import type { PeerCalls, TopicStatus } from './peer-calls.ts'

/** Longest a create waits for its topic to be ready, ms (under the CLI's 10 s request bound, with room for the create itself). */
export const topicReadyWaitMsMax = 8000
/** Between two rounds of status calls, ms. */
const topicReadyPollMs = 50
/** One status call's bound, ms: a broker that does not answer in time is asked again next round. */
const topicStatusTimeoutMs = 1000

export interface TopicReadinessOptions {
  readonly brokerId: number
  /** This broker's metadata (read it each time: a snapshot install replaces it). */
  readonly state: () => ControllerState
  /** This broker's own answer (what the internal route answers for it). */
  readonly localStatus: (name: string) => TopicStatus
  readonly peerCalls: PeerCalls
  readonly runtime: Runtime
  readonly isStopped: () => boolean
}

/**
 * Resolves true once topic `name` is ready on every live broker (see the
 * header), false if it is not within `waitMs` (it exists all the same) or it
 * was deleted meanwhile.
 */
export async function waitTopicReady(options: TopicReadinessOptions, name: string, waitMs = topicReadyWaitMsMax): Promise<boolean> {
  const { runtime } = options
  const deadline = runtime.nowMs() + waitMs
  for (;;) {
    if (options.isStopped()) return false
    const state = options.state()
    if (state.topic(name) === undefined) return false
    const live = state.brokers().filter((b) => !b.fenced)
    const statuses = new Map<number, TopicStatus | null>()
    await Promise.all(
      live.map(async (b) => {
        if (b.id === options.brokerId) {
          statuses.set(b.id, options.localStatus(name))
          return
        }
        try {
          statuses.set(b.id, await options.peerCalls.topicStatus(b.httpUrl, name, topicStatusTimeoutMs))
        } catch (error) {
          // A broker whose process is gone (not fenced yet: that takes seconds) is not waited for; a slow one is.
          if (!isRefused(error)) statuses.set(b.id, null)
        }
      }),
    )
    if (topicReady(options.state(), name, statuses)) return true
    if (runtime.nowMs() >= deadline) return false
    await runtime.sleep(topicReadyPollMs)
  }
}

function isRefused(error: unknown): boolean {
  return error instanceof RillError && error.details['refused'] === true
}

/** Whether the statuses of the live brokers (`statuses`, by broker id; null: no answer) show topic `name` ready (exported for tests). */
export function topicReady(state: ControllerState, name: string, statuses: ReadonlyMap<number, TopicStatus | null>): boolean {
  const topic = state.topic(name)
  if (topic === undefined) return false
  for (const status of statuses.values()) if (status === null || !status.known) return false
  const leaderAt = (broker: number, partition: number): number => statuses.get(broker)?.partitions.find((p) => p.partition === partition)?.leader ?? 0
  return topic.partitions.every((p, partition) => {
    const live = p.replicas.filter((r) => statuses.has(r))
    if (live.length === 0) return false
    const leader = leaderAt(live[0]!, partition)
    if (leader === 0 || !live.includes(leader)) return false
    if (statuses.has(p.replicas[0]!) && leader !== p.replicas[0]) return false
    return live.every((r) => leaderAt(r, partition) === leader)
  })
}
