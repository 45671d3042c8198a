/**
 * Broker-to-broker HTTP calls (registration forwarding, the leadership poll)
 * carry a keyed MAC made with the cluster secret, so that a client on the
 * HTTP port cannot re-register a broker with another address (DESIGN.md
 * decision 12: brokers authenticate each other with the cluster secret).
 *
 *   x-rill-time: ms since the epoch     x-rill-mac: hex HMAC-SHA256(secret, time \n method \n path \n body)
 *
 * `path` is the route's path as registered (the receiver checks against the
 * route the router matched, never the request target), `body` the bytes
 * sent (the receiver checks the bytes it received, before parsing them).
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { systemRuntime } from '../base/index.ts'

/** How far a request's time may be from ours (clock skew plus transit), ms. */
export const internalSkewMsMax = 30_000

function mac(secret: Uint8Array, time: string, method: string, path: string, body: string | Uint8Array): Buffer {
  return createHmac('sha256', secret).update(`${time}\n${method}\n${path}\n`).update(body).digest()
}

/** Headers that authenticate an internal request. */
export function internalHeaders(secret: Uint8Array, method: string, path: string, body: string): Record<string, string> {
  const time = String(systemRuntime.wallMs())
  return { 'x-rill-time': time, 'x-rill-mac': mac(secret, time, method, path, body).toString('hex') }
}

/** True if the MAC headers are present, well formed and recent (checked before the body is read). */
export function internalHeadersWellFormed(headers: Record<string, unknown>): boolean {
  const time = headers['x-rill-time']
  const given = headers['x-rill-mac']
  if (typeof time !== 'string' || typeof given !== 'string' || !/^\d{1,16}$/.test(time) || !/^[0-9a-f]{64}$/.test(given)) return false
  return Math.abs(systemRuntime.wallMs() - Number(time)) <= internalSkewMsMax
}

/** True if the headers authenticate this request: `path` is the matched route's, `body` the bytes received. */
export function internalRequestValid(secret: Uint8Array, headers: Record<string, unknown>, method: string, path: string, body: string | Uint8Array): boolean {
  if (!internalHeadersWellFormed(headers)) return false
  const time = headers['x-rill-time'] as string
  const given = headers['x-rill-mac'] as string
  return timingSafeEqual(mac(secret, time, method, path, body), Buffer.from(given, 'hex'))
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
