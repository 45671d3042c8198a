/**
 * One member of a consumer group (docs/groups.md): join, heartbeat with the
 * partitions still held, apply each answer's assignment, rejoin when
 * expired, leave on close. The coordinator computes assignments; this side
 * only reports what it holds and gives up what it is told to.
 *
 *   ┌──────── join ◀──────────── UNKNOWN_MEMBER (drop all, no commit)
 *   ▼                                  ▲
 *   assign ──▶ wait heartbeatIntervalMs (or a wake: revocation done)
 *   ▲                │
 *   └── heartbeat ◀──┘   no success for a whole session ──▶ drop all
 *
 * Group requests go to the coordinator (coordinator.ts). 503 and unreachable
 * brokers are retried with jittered backoff.
 */
import { ClientErrorCode, RillClientError, backoffMs, isRillClientError, sleep } from '../client/index.ts'
import type { HttpRequest } from '../client/index.ts'
import type { Coordinator } from './coordinator.ts'
import type { HeartbeatRequest, JoinGroupRequest, MemberAssignmentResponse, TopicPartitions } from '../src/wire/index.ts'

/** What the member needs from the consumer that holds the partitions. */
export interface GroupHost {
  /** Partitions held now: consuming, starting, or finishing a revocation. */
  held(): TopicPartitions[]
  /** The coordinator's answer: the member owns exactly `answer.assignment` now. */
  assign(answer: MemberAssignmentResponse): void
  /** Gives up every partition without committing: the coordinator may have given them away. */
  dropAll(reason: string): void
  /** A failed group request, for the application's error listeners (the member retries by itself). */
  warn(error: unknown): void
}

export interface GroupMemberOptions {
  readonly coordinator: Coordinator
  readonly groupId: string
  readonly clientId: string
  readonly rack: string | null
  readonly sessionTimeoutMs: number
  readonly requestTimeoutMs: number
}

const retryBackoff = { baseMs: 100, maxMs: 1_000 } as const
/** Attempts of the final leave; the coordinator expires the member anyway after a session. */
const leaveAttemptsMax = 3
/** How long close() waits for a join under way to answer (so it can leave) before giving up on it. */
const joinWaitOnCloseMs = 5_000

export class GroupMember {
  readonly groupId: string
  readonly #options: GroupMemberOptions
  readonly #host: GroupHost
  readonly #stop = new AbortController()
  /** Aborts a join under way; close() does so only after `joinWaitOnCloseMs`. */
  readonly #joinAbort = new AbortController()
  #memberId: string | null = null
  #generation = 0
  /** `memberEpoch` of the latest answer acted on: sent with heartbeats (releases count only with it), and older answers are stale. */
  #memberEpoch = 0
  #heartbeatIntervalMs: number
  /** When the last heartbeat (or join) that succeeded was sent (ms since the epoch). */
  #lastOkSentAtMs = 0
  #topics: string[] = []
  #topicsChanged = false
  #wakeRequested = false
  #wake: (() => void) | null = null
  #loop: Promise<void> | null = null

  constructor(options: GroupMemberOptions, host: GroupHost) {
    this.groupId = options.groupId
    this.#options = options
    this.#host = host
    this.#heartbeatIntervalMs = Math.min(3_000, Math.floor(options.sessionTimeoutMs / 3))
  }

  get memberId(): string | null {
    return this.#memberId
  }

  get generation(): number {
    return this.#generation
  }

  /** Starts (or updates) the subscription; the first call joins. */
  subscribe(topics: readonly string[]): void {
    this.#topics = [...topics]
    this.#topicsChanged = this.#memberId !== null
    if (this.#loop === null) this.#loop = this.#run()
    else this.heartbeatSoon()
  }

  /** Heartbeats at once (a revocation finished: the coordinator can move the partition on). */
  heartbeatSoon(): void {
    this.#wakeRequested = true
    const w = this.#wake
    this.#wake = null
    w?.()
  }

  /** The member expired or was fenced out: give up everything and join again. */
  rejoin(reason: string): void {
    if (this.#memberId === null) return
    this.#memberId = null
    this.#memberEpoch = 0
    this.#host.dropAll(reason)
    this.heartbeatSoon()
  }

  /**
   * Stops heartbeating and leaves the group (bounded); the caller commits
   * first. A join under way gets up to `joinWaitOnCloseMs` to answer, so a
   * member the coordinator already took is left rather than abandoned.
   */
  async close(): Promise<void> {
    this.#stop.abort()
    this.heartbeatSoon()
    const giveUp = setTimeout(() => this.#joinAbort.abort(), joinWaitOnCloseMs)
    await this.#loop
    clearTimeout(giveUp)
    const memberId = this.#memberId
    this.#memberId = null
    if (memberId === null) return
    for (let attempt = 0; attempt < leaveAttemptsMax; attempt++) {
      try {
        await this.request({ method: 'DELETE', path: `${this.#groupPath()}/members/${encodeURIComponent(memberId)}` })
        return
      } catch (error) {
        if (!isRetriable(error)) return
        await sleep(backoffMs(attempt, retryBackoff))
      }
    }
  }

  /** Sends a group request to the coordinator. */
  request<T>(req: Omit<HttpRequest, 'url'>): Promise<T> {
    return this.#options.coordinator.request<T>(req)
  }

  #groupPath(): string {
    return `/v1/groups/${encodeURIComponent(this.groupId)}`
  }

  async #run(): Promise<void> {
    let failures = 0
    while (!this.#stop.signal.aborted) {
      const ok = await this.#step()
      failures = ok ? 0 : failures + 1
      this.#checkSession()
      if (this.#stop.signal.aborted) return
      await this.#sleep(ok ? this.#heartbeatIntervalMs : backoffMs(failures - 1, { ...retryBackoff, maxMs: Math.min(retryBackoff.maxMs, this.#heartbeatIntervalMs) }))
    }
  }

  /** One join or heartbeat; false if it failed and should be retried after a backoff. */
  async #step(): Promise<boolean> {
    const sentAtMs = Date.now()
    const joining = this.#memberId === null
    try {
      const answer = joining ? await this.#join() : await this.#heartbeat()
      if (this.#stop.signal.aborted) {
        // Closing: a join the coordinator took must still be left, or the member would hold
        // its partitions (and keep them from everyone else) for a whole session timeout.
        if (joining && typeof answer?.memberId === 'string') this.#memberId = answer.memberId
        return true
      }
      this.#accept(answer, sentAtMs)
      return true
    } catch (error) {
      if (isRillClientError(error, ClientErrorCode.UNKNOWN_MEMBER)) {
        this.rejoin('the coordinator no longer knows this member')
        return true
      }
      if (isRillClientError(error, ClientErrorCode.CLOSED)) return true
      this.#host.warn(error)
      return false
    }
  }

  #join(): Promise<MemberAssignmentResponse> {
    const body: JoinGroupRequest = {
      topics: this.#topics,
      clientId: this.#options.clientId,
      sessionTimeoutMs: this.#options.sessionTimeoutMs,
      ...(this.#options.rack === null ? {} : { rack: this.#options.rack }),
    }
    this.#topicsChanged = false
    // Not aborted by close(): once sent, the coordinator may have taken it, and only its answer
    // names the member close() must then remove (bounded by the request timeout).
    return this.request({ method: 'POST', path: `${this.#groupPath()}/members`, body, timeoutMs: this.#options.requestTimeoutMs, signal: this.#joinAbort.signal })
  }

  #heartbeat(): Promise<MemberAssignmentResponse> {
    const body: HeartbeatRequest = { owned: this.#host.held(), memberEpoch: this.#memberEpoch, ...(this.#topicsChanged ? { topics: this.#topics } : {}) }
    this.#topicsChanged = false
    const path = `${this.#groupPath()}/members/${encodeURIComponent(this.#memberId!)}/heartbeat`
    return this.request({ method: 'POST', path, body, timeoutMs: this.#options.requestTimeoutMs, signal: this.#stop.signal })
  }

  #accept(answer: MemberAssignmentResponse, sentAtMs: number): void {
    if (typeof answer?.memberId !== 'string' || !Number.isSafeInteger(answer.generation) || !Array.isArray(answer.assignment)) {
      throw new RillClientError(ClientErrorCode.BAD_RESPONSE, `group ${this.groupId}: membership answer without memberId, generation and assignment`)
    }
    this.#lastOkSentAtMs = sentAtMs
    // The coordinator says how often; never let a bad answer make us silent for longer than a third of the session.
    this.#heartbeatIntervalMs = Math.max(10, Math.min(answer.heartbeatIntervalMs, Math.floor(this.#options.sessionTimeoutMs / 3)))
    const epoch = answer.memberEpoch ?? answer.generation
    // Heartbeats can cross: an answer older than one acted on says nothing new (it kept the session alive, that is all).
    if (this.#memberId === answer.memberId && epoch < this.#memberEpoch) return
    this.#memberId = answer.memberId
    this.#generation = Math.max(this.#generation, answer.generation)
    this.#memberEpoch = epoch
    this.#host.assign(answer)
  }

  /** No heartbeat succeeded for a whole session: the coordinator may have expired us and given our partitions away. */
  #checkSession(): void {
    if (this.#memberId === null || this.#lastOkSentAtMs === 0) return
    if (Date.now() - this.#lastOkSentAtMs <= this.#options.sessionTimeoutMs) return
    if (this.#host.held().length === 0) return
    this.#host.dropAll(`no successful heartbeat for ${this.#options.sessionTimeoutMs} ms`)
  }

  #sleep(ms: number): Promise<void> {
    if (this.#wakeRequested) {
      this.#wakeRequested = false
      return Promise.resolve()
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms)
      const self = this
      function done(): void {
        clearTimeout(timer)
        self.#wakeRequested = false
        if (self.#wake === done) self.#wake = null
        resolve()
      }
      this.#wake = done
    })
  }
}

function isRetriable(error: unknown): boolean {
  return error instanceof RillClientError && error.retriable
}
