/**
 * Broker-to-broker HTTP calls (registration forwarding, the leadership poll)
 * carry a keyed MAC made with the cluster secret, so that a client on the
 * HTTP port cannot re-register a broker with another address (DESIGN.md
 * decision 12: brokers authenticate each other with the cluster secret).
 *
 *   x-rill-time:  ms since the epoch
 *   x-rill-nonce: 16 random bytes, hex
 *   x-rill-mac:   hex HMAC-SHA256(secret, time \n nonce \n method \n path \n body)
 *
 * `path` is the route's path as registered (the receiver checks against the
 * route the router matched, never the request target), `body` the bytes
 * sent (the receiver checks the bytes it received, before parsing them).
 *
 * A request is good for `internalSkewMsMax` either side of the receiver's
 * clock, and once: the receiver keeps the (time, nonce) of each request it
 * accepted within that window (`ReplayCache`) and refuses a second one.
 * Without the nonce a recorded request could be replayed for ±30 s.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { assert, systemRuntime } from '../base/index.ts'

/** How far a request's time may be from ours (clock skew plus transit), ms. */
export const internalSkewMsMax = 30_000
/**
 * Requests remembered against replay. Brokers send a few internal requests
 * per second each (leadership polls, forwards); 65,536 covers the ±30 s
 * window of a large cluster in about 10 MB at most.
 */
export const replayEntriesMax = 65_536
/** Expired entries dropped per accepted request (the work per request stays bounded). */
const replayPruneMax = 64

function mac(secret: Uint8Array, time: string, nonce: string, method: string, path: string, body: string | Uint8Array): Buffer {
  return createHmac('sha256', secret).update(`${time}\n${nonce}\n${method}\n${path}\n`).update(body).digest()
}

/** Headers that authenticate an internal request. */
export function internalHeaders(secret: Uint8Array, method: string, path: string, body: string): Record<string, string> {
  const time = String(systemRuntime.wallMs())
  const nonce = randomBytes(16).toString('hex')
  return { 'x-rill-time': time, 'x-rill-nonce': nonce, 'x-rill-mac': mac(secret, time, nonce, method, path, body).toString('hex') }
}

/** True if the MAC headers are present, well formed and recent (checked before the body is read). */
export function internalHeadersWellFormed(headers: Record<string, unknown>): boolean {
  const time = headers['x-rill-time']
  const nonce = headers['x-rill-nonce']
  const given = headers['x-rill-mac']
  if (typeof time !== 'string' || !/^\d{1,16}$/.test(time)) return false
  if (typeof nonce !== 'string' || !/^[0-9a-f]{32}$/.test(nonce)) return false
  if (typeof given !== 'string' || !/^[0-9a-f]{64}$/.test(given)) return false
  return Math.abs(systemRuntime.wallMs() - Number(time)) <= internalSkewMsMax
}

/**
 * Null if the headers authenticate this request and it was not seen before
 * (it is then remembered in `replay`), else why not. `path` is the matched
 * route's, `body` the bytes received.
 */
export function checkInternalRequest(options: {
  secret: Uint8Array
  replay: ReplayCache
  headers: Record<string, unknown>
  method: string
  path: string
  body: string | Uint8Array
}): string | null {
  const { headers } = options
  if (!internalHeadersWellFormed(headers)) return 'bad or missing cluster MAC'
  const time = headers['x-rill-time'] as string
  const nonce = headers['x-rill-nonce'] as string
  const given = Buffer.from(headers['x-rill-mac'] as string, 'hex')
  if (!timingSafeEqual(mac(options.secret, time, nonce, options.method, options.path, options.body), given)) return 'bad or missing cluster MAC'
  // Only authenticated requests are remembered: a stranger cannot fill the cache.
  if (!options.replay.admit({ timeMs: Number(time), nonce, nowMs: systemRuntime.wallMs() })) return 'request replayed (or too old to tell)'
  return null
}

/**
 * The (time, nonce) of requests accepted within the skew window, bounded.
 * When full, the entry kept longest is dropped and `floorMs` rises to its
 * time: from then on a request that old or older is refused (it might be
 * the dropped one, replayed), instead of the cache growing.
 *
 *   admit(t, n): |now - t| > skew ─▶ refuse   t ≤ floorMs ─▶ refuse   n seen ─▶ refuse
 *                else remember (t, n), dropping expired entries and, when full, the oldest kept
 */
export class ReplayCache {
  readonly #entriesMax: number
  readonly #skewMs: number
  /** nonce → time, in insertion order. */
  readonly #seen = new Map<string, number>()
  /** Requests at or before this time are refused: an entry that old may have been dropped. */
  #floorMs = -Infinity

  constructor(options: { entriesMax?: number; skewMs?: number } = {}) {
    this.#entriesMax = options.entriesMax ?? replayEntriesMax
    this.#skewMs = options.skewMs ?? internalSkewMsMax
    assert(this.#entriesMax >= 1, 'replay cache holds at least one entry')
  }

  get size(): number {
    return this.#seen.size
  }

  /** The time at or before which requests are refused because the cache had to drop entries, ms. */
  get floorMs(): number {
    return this.#floorMs
  }

  /** True (and remembered) if a request of this time and nonce was not seen; false for a replay or one too old to tell. */
  admit(request: { timeMs: number; nonce: string; nowMs: number }): boolean {
    const { timeMs, nonce, nowMs } = request
    if (Math.abs(nowMs - timeMs) > this.#skewMs || timeMs <= this.#floorMs || this.#seen.has(nonce)) return false
    this.#prune(nowMs)
    if (this.#seen.size >= this.#entriesMax) {
      const [oldest, oldestMs] = this.#seen.entries().next().value as [string, number]
      this.#seen.delete(oldest)
      this.#floorMs = Math.max(this.#floorMs, oldestMs)
      if (timeMs <= this.#floorMs) return false
    }
    this.#seen.set(nonce, timeMs)
    assert(this.#seen.size <= this.#entriesMax, 'replay cache within its bound')
    return true
  }

  /** Drops entries past the window from the front (insertion order; at most `replayPruneMax`). */
  #prune(nowMs: number): void {
    let dropped = 0
    for (const [nonce, timeMs] of this.#seen) {
      if (dropped >= replayPruneMax || timeMs >= nowMs - this.#skewMs) return
      this.#seen.delete(nonce)
      dropped++
    }
  }
}

// ─────────────────────────── identity challenge ───────────────────────────

/**
 * Who a broker process says it is: its id, its incarnation (random, new on
 * every process start, as KRaft's incarnation id) and where it listens.
 */
export interface BrokerIdentity {
  readonly id: number
  readonly incarnation: string
  readonly httpUrl: string
  readonly peerUrl: string
}

/** A broker's answer to an identity challenge: its identity and a MAC over it and the challenge's nonce. */
export interface IdentityAnswer extends BrokerIdentity {
  /** hex HMAC-SHA256(secret, "rill/identity/1" \n nonce \n id \n incarnation \n httpUrl \n peerUrl) */
  readonly proof: string
}

/** Incarnation ids and challenge nonces: 16 random bytes as hex (unguessable, fixed length). */
export const incarnationPattern = /^[0-9a-f]{32}$/

function identityMac(secret: Uint8Array, nonce: string, who: BrokerIdentity): Buffer {
  // A label of its own: an identity proof is never a valid request MAC, nor one a request MAC.
  return createHmac('sha256', secret).update(`rill/identity/1\n${nonce}\n${who.id}\n${who.incarnation}\n${who.httpUrl}\n${who.peerUrl}`).digest()
}

/** This broker's answer to the challenge `nonce`. */
export function proveIdentity(secret: Uint8Array, nonce: string, who: BrokerIdentity): IdentityAnswer {
  return { ...who, proof: identityMac(secret, nonce, who).toString('hex') }
}

/** True if `answer` proves, with the cluster secret, the identity it states, over our challenge `nonce`. */
export function identityValid(secret: Uint8Array, nonce: string, answer: IdentityAnswer): boolean {
  if (!/^[0-9a-f]{64}$/.test(answer.proof)) return false
  return timingSafeEqual(identityMac(secret, nonce, answer), Buffer.from(answer.proof, 'hex'))
}
