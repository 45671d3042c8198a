/**
 * Mutual challenge-response between two brokers of one cluster (DESIGN.md
 * decision 12). Both prove they hold the 32-byte cluster secret without
 * sending it; each proof covers the other side's fresh nonce, so a recorded
 * handshake cannot be replayed, and a direction label, so a proof cannot be
 * reflected back at its author.
 *
 * Nothing identifying is sent to a side that has not proven it holds the
 * secret: the dialer speaks first with a bare nonce; the acceptor answers
 * with its proof (a MAC a stranger cannot check or invert, over a nonce of
 * its own, so it differs on every connection); only once that proof checks
 * does the dialer name itself. The cluster id and both broker ids are under
 * the MACs and never on the wire before then. (Version 1 opened with the
 * cluster id and both ids in the clear, and its refusals named them: anyone
 * who reached a peer port learned the cluster id.)
 *
 *   dialer D                                    acceptor A
 *   Hello [v, nD]                   ──────────▶  checks v
 *                                 ◀──────────  Challenge [v, nA, macA]
 *   checks macA (the A it dialed)                macA = MAC(k, "rill/2/acceptor" ‖ clusterId ‖ A ‖ nD ‖ nA)
 *   Auth [D, macD]                  ──────────▶  checks macD, then admits D
 *                                                macD = MAC(k, "rill/2/dialer" ‖ clusterId ‖ D ‖ A ‖ nD ‖ nA)
 *                                 ◀──────────  Welcome []
 *
 * A wrong secret, another cluster id, or another broker than the one dialed
 * at that address all show as a bad proof: telling them apart would need
 * one side to reveal something first. Reasons that name brokers (unknown
 * peer, wrong direction, already connected) are sent only after the
 * dialer's proof checked.
 *
 * MAC is libsodium's crypto_auth (HMAC-SHA-512-256); nonces come from
 * randombytes_buf. Any failure is answered by Refuse [reason] and a close.
 */
import { createRequire } from 'node:module'
import { ErrorCode, RillError } from '../base/index.ts'
import { FrameKind } from './frame.ts'
import { nodeIdMax } from './raft-codec.ts'

/** Wire protocol version spoken by this build (2: nothing identifying before a proof). */
export const protocolVersion = 2
/** Bytes of the cluster secret (crypto_auth_KEYBYTES). */
export const secretBytes = 32
/** Bytes of each side's challenge nonce. */
export const nonceBytes = 32
/** Bytes of a proof (crypto_auth_BYTES). */
export const macBytes = 32
/** Longest refusal reason sent to or accepted from the other side. */
export const reasonCharsMax = 200

/** The few sodium-native functions used here (the package ships no types). */
interface Sodium {
  crypto_auth(out: Uint8Array, input: Uint8Array, key: Uint8Array): void
  crypto_auth_verify(mac: Uint8Array, input: Uint8Array, key: Uint8Array): boolean
  randombytes_buf(out: Uint8Array): void
}
const sodium = createRequire(import.meta.url)('sodium-native') as Sodium

export interface Hello {
  readonly version: number
  /** The dialer's nonce: the only thing it says before the acceptor proved itself. */
  readonly nonce: Uint8Array
}

export interface Challenge {
  readonly version: number
  readonly nonce: Uint8Array
  /** The acceptor's proof (`prove('acceptor', ...)`). */
  readonly mac: Uint8Array
}

export interface Auth {
  /** The dialer's broker id, named only now that the acceptor has proven itself. */
  readonly from: number
  /** The dialer's proof (`prove('dialer', ...)`). */
  readonly mac: Uint8Array
}

/** Who proves what to whom: the inputs both sides put into the transcript. */
export interface Transcript {
  readonly clusterId: string
  /** Not under the acceptor's proof: the acceptor proves itself before the dialer has said who it is. */
  readonly dialerId: number
  readonly acceptorId: number
  readonly dialerNonce: Uint8Array
  readonly acceptorNonce: Uint8Array
}

export type Role = 'dialer' | 'acceptor'

/** A fresh random nonce. */
export function newNonce(): Uint8Array {
  const out = Buffer.alloc(nonceBytes)
  sodium.randombytes_buf(out)
  return out
}

/** Throws unless `secret` is usable as the cluster key (config check). */
export function checkSecret(secret: Uint8Array): void {
  if (!(secret instanceof Uint8Array) || secret.byteLength !== secretBytes) {
    throw new RillError(ErrorCode.INVALID_REQUEST, `cluster secret must be ${secretBytes} bytes`)
  }
}

function transcriptBytes(role: Role, t: Transcript): Buffer {
  const cluster = Buffer.from(t.clusterId, 'utf8')
  const label = Buffer.from(`rill/${protocolVersion}/${role}\0`, 'ascii')
  const ids = Buffer.alloc(2 + 4 + 4)
  ids.writeUInt16BE(cluster.byteLength, 0)
  ids.writeUInt32BE(role === 'acceptor' ? 0 : t.dialerId, 2)
  ids.writeUInt32BE(t.acceptorId, 6)
  return Buffer.concat([label, ids, cluster, t.dialerNonce, t.acceptorNonce])
}

/** The proof `role` sends over transcript `t`. */
export function prove(role: Role, t: Transcript, secret: Uint8Array): Uint8Array {
  const out = Buffer.alloc(macBytes)
  sodium.crypto_auth(out, transcriptBytes(role, t), secret)
  return out
}

/** True if `mac` is `role`'s proof over `t` (constant time). */
export function verify(role: Role, t: Transcript, mac: Uint8Array, secret: Uint8Array): boolean {
  if (mac.byteLength !== macBytes) return false
  return sodium.crypto_auth_verify(mac, transcriptBytes(role, t), secret)
}

// ---- frames ----------------------------------------------------------------

function refuse(what: string): never {
  throw new RillError(ErrorCode.UNAUTHORIZED, `bad handshake: ${what}`)
}

function field(v: unknown[], i: number): unknown {
  return v[i]
}

function id(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0 || v > nodeIdMax) refuse(`${what} is not a broker id`)
  return v
}

function blob(v: unknown, length: number, what: string): Uint8Array {
  if (!(v instanceof Uint8Array) || v.byteLength !== length) refuse(`${what} is not ${length} bytes`)
  return v
}

/** Checks the shape of a handshake frame of `kind` and returns its fields (after the kind). */
export function handshakeFields(value: unknown, kind: FrameKind, length: number): unknown[] {
  if (!Array.isArray(value)) refuse('frame is not an array')
  if (value[0] === FrameKind.Refuse) {
    const reason = typeof value[1] === 'string' ? value[1].slice(0, reasonCharsMax) : '?'
    throw new RillError(ErrorCode.UNAUTHORIZED, `refused by peer: ${reason}`, { details: { refusedByPeer: true } })
  }
  if (value.length !== length + 1) refuse(`frame is not a ${length + 1}-tuple`)
  if (value[0] !== kind) refuse(`expected frame kind ${kind}, got ${String(value[0])}`)
  return value.slice(1)
}

export function helloValue(h: Hello): unknown[] {
  return [FrameKind.Hello, h.version, h.nonce]
}

/** The version first: a peer of another version is told so, whatever its frame's shape. */
function checkVersion(f: unknown[]): number {
  const version = field(f, 0)
  if (version !== protocolVersion) refuse(`protocol version ${String(version)} (this broker speaks ${protocolVersion})`)
  return version
}

export function parseHello(value: unknown): Hello {
  if (Array.isArray(value) && value[0] === FrameKind.Hello) checkVersion(value.slice(1))
  const f = handshakeFields(value, FrameKind.Hello, 2)
  return { version: checkVersion(f), nonce: blob(field(f, 1), nonceBytes, 'nonce') }
}

export function challengeValue(c: Challenge): unknown[] {
  return [FrameKind.Challenge, c.version, c.nonce, c.mac]
}

export function parseChallenge(value: unknown): Challenge {
  if (Array.isArray(value) && value[0] === FrameKind.Challenge) checkVersion(value.slice(1))
  const f = handshakeFields(value, FrameKind.Challenge, 3)
  return { version: checkVersion(f), nonce: blob(field(f, 1), nonceBytes, 'nonce'), mac: blob(field(f, 2), macBytes, 'proof') }
}

export function authValue(a: Auth): unknown[] {
  return [FrameKind.Auth, a.from, a.mac]
}

export function parseAuth(value: unknown): Auth {
  const f = handshakeFields(value, FrameKind.Auth, 2)
  return { from: id(field(f, 0), 'sender'), mac: blob(field(f, 1), macBytes, 'proof') }
}

export function welcomeValue(): unknown[] {
  return [FrameKind.Welcome]
}

export function parseWelcome(value: unknown): void {
  handshakeFields(value, FrameKind.Welcome, 0)
}

export function refuseValue(reason: string): unknown[] {
  return [FrameKind.Refuse, reason.slice(0, reasonCharsMax)]
}
