/**
 * Bearer tokens: made here, shown once, stored only as a keyed hash.
 *
 *   token  = "rill_" + id (8 random bytes, hex) + "_" + secret (32 random bytes, base64url)
 *   key    = BLAKE2b-256("rill/token-hash/v1", key = cluster secret)      (crypto_generichash)
 *   hash   = BLAKE2b-256(id || secret, key = key)                           → the metadata (CreateToken)
 *
 * The id is public (listed, part of the token: it finds the entry in one
 * lookup); the secret part never leaves the request that carried it. A
 * stolen copy of the metadata (a snapshot, a log) holds no token, and
 * without the cluster secret no hash can be checked offline either. The
 * check compares hashes with sodium_memcmp (constant time).
 */
import { createRequire } from 'node:module'
import type { TokenInfo } from '../controller/index.ts'

interface Sodium {
  crypto_generichash(out: Uint8Array, input: Uint8Array, key?: Uint8Array): void
  sodium_memcmp(a: Uint8Array, b: Uint8Array): boolean
  randombytes_buf(out: Uint8Array): void
}
const sodium = createRequire(import.meta.url)('sodium-native') as Sodium

/** Bytes of a token's secret part. */
export const tokenSecretBytes = 32
/** Bytes of a token id. */
const tokenIdBytes = 8
const hashBytes = 32
/** `rill_<16 hex>_<43 base64url>`. */
export const tokenPattern = /^rill_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/
/** Longest Authorization header value looked at (a token is 65 characters; "Bearer " on top). */
export const authorizationCharsMax = 512

/** The key token hashes are made with, derived from the cluster secret (every broker derives the same one). */
export function tokenHashKey(clusterSecret: Uint8Array): Uint8Array {
  const out = Buffer.alloc(hashBytes)
  sodium.crypto_generichash(out, Buffer.from('rill/token-hash/v1', 'ascii'), Buffer.from(clusterSecret))
  return out
}

/** The keyed hash of a token's id and secret part, as hex. */
export function tokenHash(key: Uint8Array, id: string, secret: Uint8Array): string {
  const out = Buffer.alloc(hashBytes)
  sodium.crypto_generichash(out, Buffer.concat([Buffer.from(id, 'ascii'), secret]), key)
  return out.toString('hex')
}

/** A fresh token: its text (shown once), id, and the hash the metadata keeps. */
export function newToken(key: Uint8Array): { token: string; id: string; hash: string } {
  const idBytes = Buffer.alloc(tokenIdBytes)
  sodium.randombytes_buf(idBytes)
  const secret = Buffer.alloc(tokenSecretBytes)
  sodium.randombytes_buf(secret)
  const id = idBytes.toString('hex')
  return { token: `rill_${id}_${secret.toString('base64url')}`, id, hash: tokenHash(key, id, secret) }
}

/** The id and secret part of a token's text, or null if it is not one. */
export function parseToken(text: string): { id: string; secret: Buffer } | null {
  const m = tokenPattern.exec(text)
  if (m === null) return null
  const secret = Buffer.from(m[2]!, 'base64url')
  if (secret.byteLength !== tokenSecretBytes) return null
  // One spelling per token: 43 base64url characters carry 258 bits for 256, and a
  // decoder drops the last character's low two; a token differing only there is another text.
  return secret.toString('base64url') === m[2] ? { id: m[1]!, secret } : null
}

/**
 * The principal `text` authenticates, or null: not a token, no such id
 * (never issued, or revoked), or the secret part does not hash to the stored
 * hash (compared in constant time).
 */
export function authenticateToken(key: Uint8Array, lookup: (id: string) => TokenInfo | undefined, text: string): string | null {
  const parsed = parseToken(text)
  if (parsed === null) return null
  const info = lookup(parsed.id)
  if (info === undefined) return null
  const presented = Buffer.from(tokenHash(key, parsed.id, parsed.secret), 'hex')
  const stored = Buffer.from(info.hash, 'hex')
  if (stored.byteLength !== presented.byteLength) return null
  return sodium.sodium_memcmp(presented, stored) ? info.principal : null
}
