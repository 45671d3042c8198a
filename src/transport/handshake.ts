/**
 * Mutual challenge-response between two brokers of one cluster (DESIGN.md
 * decision 12). Both prove they hold the 32-byte cluster secret without
 * sending it; each proof covers the other side's fresh nonce, so a recorded
 * handshake cannot be replayed, and a direction label, so a proof cannot be
 * reflected back at its author.
 *
 *   dialer D                                    acceptor A
 *   Hello [v, clusterId, D, A, nD]  ──────────▶  checks v, clusterId, A is me,
 *                                                D is a known peer allowed to
 *                                                dial me, D not connected
 *                                 ◀──────────  Challenge [v, A, nA, macA]
 *   checks macA                                  macA = MAC(k, "rill/1/acceptor" ‖ T)
 *   Auth [macD]                     ──────────▶  checks macD
 *                                                macD = MAC(k, "rill/1/dialer" ‖ T)
 *                                 ◀──────────  Welcome []
 *   T = clusterId ‖ D ‖ A ‖ nD ‖ nA
 *
 * MAC is libsodium's crypto_auth (HMAC-SHA-512-256); nonces come from
 * randombytes_buf. Any failure is answered by Refuse [reason] and a close.
 */
import { createRequire } from 'node:module'
import { ErrorCode, RillError } from '../base/index.ts'
import { FrameKind } from './frame.ts'
import { nodeIdMax } from './raft-codec.ts'

/** Wire protocol version spoken by this build. */
export const protocolVersion = 1
/** Bytes of the cluster secret (crypto_auth_KEYBYTES). */
export const secretBytes = 32
/** Bytes of each side's challenge nonce. */
export const nonceBytes = 32
/** Bytes of a proof (crypto_auth_BYTES). */
export const macBytes = 32
/** Longest accepted cluster id, in UTF-8 bytes. */
export const clusterIdBytesMax = 128
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
  readonly clusterId: string
  readonly from: number
  readonly to: number
  readonly nonce: Uint8Array
}

export interface Challenge {
  readonly version: number
  readonly from: number
  readonly nonce: Uint8Array
  readonly mac: Uint8Array
}

/** Who proves what to whom: the inputs both sides put into the transcript. */
export interface Transcript {
  readonly clusterId: string
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
  ids.writeUInt32BE(t.dialerId, 2)
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
  return [FrameKind.Hello, h.version, h.clusterId, h.from, h.to, h.nonce]
}

export function parseHello(value: unknown): Hello {
  const f = handshakeFields(value, FrameKind.Hello, 5)
  const version = field(f, 0)
  if (version !== protocolVersion) refuse(`protocol version ${String(version)} (this broker speaks ${protocolVersion})`)
  const clusterId = field(f, 1)
  if (typeof clusterId !== 'string' || Buffer.byteLength(clusterId) > clusterIdBytesMax) refuse('cluster id is not a short string')
  return { version, clusterId, from: id(field(f, 2), 'sender'), to: id(field(f, 3), 'receiver'), nonce: blob(field(f, 4), nonceBytes, 'nonce') }
}

export function challengeValue(c: Challenge): unknown[] {
  return [FrameKind.Challenge, c.version, c.from, c.nonce, c.mac]
}

export function parseChallenge(value: unknown): Challenge {
  const f = handshakeFields(value, FrameKind.Challenge, 4)
  const version = field(f, 0)
  if (version !== protocolVersion) refuse(`protocol version ${String(version)}`)
  return { version, from: id(field(f, 1), 'acceptor'), nonce: blob(field(f, 2), nonceBytes, 'nonce'), mac: blob(field(f, 3), macBytes, 'proof') }
}

export function authValue(mac: Uint8Array): unknown[] {
  return [FrameKind.Auth, mac]
}

export function parseAuth(value: unknown): Uint8Array {
  return blob(field(handshakeFields(value, FrameKind.Auth, 1), 0), macBytes, 'proof')
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
