/**
 * The simulated network between whole brokers: each broker gets an
 * endpoint that is its `PeerNetwork` (Raft messages, batched per peer per
 * flush and carried through the real codec, so the strict decoder sees
 * every frame) and its `PeerCalls` (forwards to the controller leader,
 * leadership polls), delivered on the virtual clock with faults:
 *
 *   endpoint(a).flush ──encodePeerBatch──▶ link a→b: drop? delay, duplicate, reorder
 *                                              └──▶ endpoint(b): decodePeerBatch ─▶ broker b
 *   endpoint(a).controller(url) ──▶ link a→b ──▶ broker b's method ──▶ link b→a ──▶ answer
 *                                   (a blocked link: the call times out, and may have run)
 *
 * Partitions are per directed link (`block(a, b)` cuts a→b only), so
 * one-way and full partitions are both expressible. A crashed broker's
 * endpoint is detached: nothing reaches it, and its pending deliveries are
 * dropped with its process scope.
 */
import { ErrorCode, RillError } from '../base/index.ts'
import type { Random, Runtime } from '../base/index.ts'
import type { Message } from '../raft/index.ts'
import { createPackr, decodePeerBatch, encodePeerBatch } from '../transport/index.ts'
import type { BatchHandler, GroupId, GroupMessage, PeerAddress, PeerNetwork } from '../transport/index.ts'
import type { ControllerCall, Leadership, PeerCalls, TopicStatus } from '../broker/peer-calls.ts'
import type { IdentityAnswer } from '../broker/internal-auth.ts'

/** Fault rates and delays of the links; changed by the schedule while it runs. */
export interface LinkFaults {
  /** Fraction of frames and calls lost. */
  dropRate: number
  /** Fraction of frames delivered twice. */
  duplicateRate: number
  delayMsMin: number
  delayMsMax: number
  /** Fraction of frames held back much longer (reordering behind later frames). */
  longDelayRate: number
  longDelayMsMax: number
}

export const quietLinks: LinkFaults = { dropRate: 0, duplicateRate: 0, delayMsMin: 0.1, delayMsMax: 1, longDelayRate: 0, longDelayMsMax: 0 }

/** What the network needs from a simulated broker to route calls to it. */
export interface CallTarget {
  controller(call: ControllerCall): Promise<void>
  leaderships(): Leadership[]
  identity(nonce: string): IdentityAnswer
  topicStatus(name: string): TopicStatus
}

interface Attached {
  readonly runtime: Runtime
  handler: BatchHandler
  calls: CallTarget | null
}

/** Counters for the livelock detector and the report. */
export interface NetworkCounters {
  framesSent: number
  framesDelivered: number
  framesDropped: number
  callsSent: number
}

export class SimNetwork {
  readonly faults: LinkFaults = { ...quietLinks }
  readonly counters: NetworkCounters = { framesSent: 0, framesDelivered: 0, framesDropped: 0, callsSent: 0 }
  readonly #random: Random
  readonly #root: Runtime
  readonly #attached = new Map<number, Attached>()
  readonly #blocked = new Set<string>()
  readonly #urls = new Map<string, number>()
  readonly #packr = createPackr()
  readonly #trace: ((line: string) => void) | undefined

  constructor(options: { random: Random; runtime: Runtime; trace?: (line: string) => void }) {
    this.#random = options.random
    this.#root = options.runtime
    this.#trace = options.trace
  }

  /** Broker `id` answers at `url` (its HTTP base URL in the metadata). */
  setUrl(id: number, url: string): void {
    this.#urls.set(url, id)
  }

  /** A fresh endpoint for broker `id`'s process (after a restart, the old one is dead). */
  endpoint(id: number, runtime: Runtime): SimEndpoint {
    this.#attached.delete(id)
    return new SimEndpoint(this, id, runtime)
  }

  /** Broker `id`'s process is gone: nothing reaches it until a new endpoint starts. */
  detach(id: number): void {
    this.#attached.delete(id)
  }

  block(from: number, to: number): void {
    this.#blocked.add(`${from}>${to}`)
  }

  unblock(from: number, to: number): void {
    this.#blocked.delete(`${from}>${to}`)
  }

  /** Cuts `id` off from every other broker, both ways. */
  isolate(id: number, others: readonly number[]): void {
    for (const o of others) {
      if (o === id) continue
      this.block(id, o)
      this.block(o, id)
    }
  }

  heal(): void {
    this.#blocked.clear()
    Object.assign(this.faults, quietLinks)
  }

  blockedLinks(): string[] {
    return [...this.#blocked].sort()
  }

  linkUp(from: number, to: number): boolean {
    return !this.#blocked.has(`${from}>${to}`) && this.#attached.has(to) && this.#attached.has(from)
  }

  /** Used by endpoints. */
  attach(id: number, a: Attached): void {
    this.#attached.set(id, a)
  }

  attached(id: number, runtime: Runtime): Attached | undefined {
    const a = this.#attached.get(id)
    return a !== undefined && a.runtime === runtime ? a : undefined
  }

  #delayMs(): number {
    const f = this.faults
    if (f.longDelayRate > 0 && this.#random.next() < f.longDelayRate) return f.delayMsMin + this.#random.next() * f.longDelayMsMax
    return f.delayMsMin + this.#random.next() * (f.delayMsMax - f.delayMsMin)
  }

  /** Sends one batch frame from→to; the receiver decodes it with the real (strict) decoder. */
  sendFrame(from: number, to: number, items: readonly GroupMessage[]): void {
    this.counters.framesSent++
    if (!this.linkUp(from, to) || this.#random.next() < this.faults.dropRate) {
      this.counters.framesDropped++
      return
    }
    const payload = encodePeerBatch(this.#packr, items, { from, to })
    const copies = this.#random.next() < this.faults.duplicateRate ? 2 : 1
    const target = this.#attached.get(to)!
    for (let i = 0; i < copies; i++) {
      target.runtime.setTimer(() => {
        // The receiver may have crashed and restarted meanwhile: deliver only to the process it was sent to.
        if (this.attached(to, target.runtime) === undefined || this.#blocked.has(`${from}>${to}`)) return
        this.counters.framesDelivered++
        let batch
        try {
          batch = decodePeerBatch(this.#packr, payload, { from, to })
        } catch (error) {
          throw new Error(`sim: broker ${to} refused a frame from ${from} its own encoder wrote: ${(error as Error).message}`)
        }
        target.handler(from, batch)
      }, this.#delayMs())
    }
  }

  /**
   * A request from→(the broker at url) and its answer, each crossing its
   * link. A lost request or answer shows as a timeout after `timeoutMs`
   * (the request may have run): the caller cannot tell which.
   */
  call<T>(from: number, fromRuntime: Runtime, url: string, timeoutMs: number, run: (target: CallTarget) => Promise<T> | T): Promise<T> {
    this.counters.callsSent++
    const to = this.#urls.get(url)
    return new Promise<T>((resolve, reject) => {
      let settled = false
      const timer = fromRuntime.setTimer(() => {
        if (settled) return
        settled = true
        reject(new RillError(ErrorCode.NO_QUORUM, `broker at ${url} unreachable (no answer within ${timeoutMs} ms)`))
      }, timeoutMs)
      const answer = (fn: () => void): void => {
        if (to === undefined || !this.linkUp(to, from) || this.#random.next() < this.faults.dropRate) return
        this.#root.setTimer(() => {
          if (settled || this.attached(from, fromRuntime) === undefined) return
          settled = true
          timer.cancel()
          fn()
        }, this.#delayMs())
      }
      if (to === undefined || !this.linkUp(from, to) || this.#random.next() < this.faults.dropRate) return
      const target = this.#attached.get(to)!
      target.runtime.setTimer(() => {
        const t = this.attached(to, target.runtime)
        if (t === undefined || t.calls === null || this.#blocked.has(`${from}>${to}`)) return
        this.#trace?.(`call ${from}->${to} ${url}`)
        Promise.resolve()
          .then(() => run(t.calls!))
          .then(
            (value) => answer(() => resolve(value)),
            (error: unknown) => answer(() => reject(error)),
          )
      }, this.#delayMs())
    })
  }
}

/** One broker process's view of the simulated network. */
export class SimEndpoint implements PeerNetwork {
  readonly #net: SimNetwork
  readonly #id: number
  readonly #runtime: Runtime
  #peers = new Set<number>()
  #pending = new Map<number, GroupMessage[]>()
  #closed = false
  #handler: BatchHandler = () => {}
  #calls: CallTarget | null = null

  constructor(net: SimNetwork, id: number, runtime: Runtime) {
    this.#net = net
    this.#id = id
    this.#runtime = runtime
  }

  /** The broker that answers calls sent to this endpoint. */
  serveCalls(target: CallTarget): void {
    this.#calls = target
    const a = this.#net.attached(this.#id, this.#runtime)
    if (a !== undefined) a.calls = target
  }

  async start(): Promise<void> {
    this.#net.attach(this.#id, { runtime: this.#runtime, handler: (from, batch) => this.#handler(from, batch), calls: this.#calls })
  }

  async close(): Promise<void> {
    this.#closed = true
    if (this.#net.attached(this.#id, this.#runtime) !== undefined) this.#net.detach(this.#id)
  }

  setPeers(peers: ReadonlyMap<number, PeerAddress>): void {
    this.#peers = new Set([...peers.keys()].filter((id) => id !== this.#id))
  }

  onBatch(handler: BatchHandler): void {
    this.#handler = handler
  }

  send(groupId: GroupId, message: Message): boolean {
    if (this.#closed || !this.#peers.has(message.to)) return false
    let q = this.#pending.get(message.to)
    if (q === undefined) this.#pending.set(message.to, (q = []))
    q.push({ groupId, message })
    return true
  }

  flush(): void {
    if (this.#closed) return
    const pending = this.#pending
    this.#pending = new Map()
    for (const [to, items] of pending) this.#net.sendFrame(this.#id, to, items)
  }

  connected(peerId: number): boolean {
    return !this.#closed && this.#peers.has(peerId) && this.#net.linkUp(this.#id, peerId) && this.#net.linkUp(peerId, this.#id)
  }

  /** This process's calls to other brokers. */
  peerCalls(): PeerCalls {
    return {
      controller: (url, call, timeoutMs) => this.#net.call(this.#id, this.#runtime, url, timeoutMs, (t) => t.controller(call)),
      leaderships: (url, timeoutMs, entriesMax) => this.#net.call(this.#id, this.#runtime, url, timeoutMs, (t) => t.leaderships().slice(0, entriesMax)),
      identity: (url, nonce, timeoutMs) => this.#net.call(this.#id, this.#runtime, url, timeoutMs, (t) => t.identity(nonce)),
      topicStatus: (url, name, timeoutMs) => this.#net.call(this.#id, this.#runtime, url, timeoutMs, (t) => t.topicStatus(name)),
    }
  }
}
