/**
 * Byte-level helpers shared by the record batch codec and the JSON edge:
 * zigzag varints (as Kafka's), 64-bit integers as two u32 halves (no BigInt:
 * offsets, timestamps and producer ids stay below 2^53), UTF-8 without
 * allocation, and strict base64.
 *
 * Plain Uint8Array / DataView code, no `node:*` and no Buffer, so the same
 * module runs in the broker and in the SDKs.
 *
 * Readers here never throw: they return a sentinel (`badVarint`) and the
 * caller turns it into a RillError that names the field, so one place
 * builds every message.
 */

/** 2^32, the weight of the high half of a u64. */
export const twoPow32 = 4294967296
/** Largest high half of a u64 that keeps the value within 2^53 - 1. */
const u64HighMax = 0x1fffff

/** Returned by the varint readers when the bytes are not a valid varint. */
export const badVarint = Number.NaN

// ---- u64 -------------------------------------------------------------------

/**
 * Reads a little-endian u64 at `at`. Returns -1 for the all-ones sentinel
 * ("none", Kafka's -1), NaN when the value is above 2^53 - 1.
 */
export function readU64(view: DataView, at: number): number {
  const lo = view.getUint32(at, true)
  const hi = view.getUint32(at + 4, true)
  if (hi <= u64HighMax) return hi * twoPow32 + lo
  if (hi === 0xffffffff && lo === 0xffffffff) return -1
  return Number.NaN
}

/** Writes `value` (an integer in [-1, 2^53 - 1]; -1 as all ones) as a little-endian u64. */
export function writeU64(view: DataView, at: number, value: number): void {
  if (value === -1) {
    view.setUint32(at, 0xffffffff, true)
    view.setUint32(at + 4, 0xffffffff, true)
    return
  }
  const hi = Math.floor(value / twoPow32)
  view.setUint32(at, value - hi * twoPow32, true)
  view.setUint32(at + 4, hi, true)
}

// ---- zigzag varints ----------------------------------------------------------

/** Bytes a zigzag varint of the int32 `value` takes. */
export function varintBytes(value: number): number {
  let z = ((value << 1) ^ (value >> 31)) >>> 0
  let n = 1
  while (z >= 0x80) {
    z >>>= 7
    n++
  }
  return n
}

/** Writes the int32 `value` as a zigzag varint at `at`; returns the position after it. */
export function writeVarint(out: Uint8Array, at: number, value: number): number {
  let z = ((value << 1) ^ (value >> 31)) >>> 0
  while (z >= 0x80) {
    out[at++] = (z & 0x7f) | 0x80
    z >>>= 7
  }
  out[at++] = z
  return at
}

/** Zigzag of a safe integer with |value| < 2^52, as a non-negative safe integer. */
function zigzagLong(value: number): number {
  return value >= 0 ? value * 2 : -value * 2 - 1
}

/** Bytes a zigzag varlong of `value` (|value| < 2^52) takes. */
export function varlongBytes(value: number): number {
  let z = zigzagLong(value)
  let n = 1
  while (z >= 0x80) {
    z = Math.floor(z / 128)
    n++
  }
  return n
}

/** Writes `value` (|value| < 2^52) as a zigzag varlong at `at`; returns the position after it. */
export function writeVarlong(out: Uint8Array, at: number, value: number): number {
  let z = zigzagLong(value)
  while (z >= 0x80) {
    out[at++] = (z % 128) | 0x80
    z = Math.floor(z / 128)
  }
  out[at++] = z
  return at
}

/**
 * A read position over one byte array. Varint reads return `badVarint`
 * (NaN) on a truncated, over-long or non-canonical encoding rather than
 * throwing, and never read past `end`.
 */
export class ByteReader {
  pos: number

  constructor(
    readonly bytes: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start
  }

  /** A zigzag varint of at most 5 bytes (an int32), canonical (no trailing zero group). */
  varint(): number {
    const b = this.bytes
    const end = this.end
    let pos = this.pos
    if (pos >= end) return badVarint
    let byte = b[pos++]!
    if (byte < 0x80) {
      this.pos = pos
      return (byte >>> 1) ^ -(byte & 1)
    }
    let z = byte & 0x7f
    for (let shift = 7; ; shift += 7) {
      if (pos >= end) return badVarint
      byte = b[pos++]!
      if (shift === 28) {
        if (byte > 0x0f || byte === 0) return badVarint
        z = (z | (byte << 28)) >>> 0
        break
      }
      z |= (byte & 0x7f) << shift
      if (byte < 0x80) {
        if (byte === 0) return badVarint
        break
      }
    }
    this.pos = pos
    return (z >>> 1) ^ -(z & 1)
  }

  /**
   * A zigzag varlong of at most 8 bytes whose zigzag value is at most
   * 2^53 - 1, canonical. Returns a safe integer.
   */
  varlong(): number {
    const b = this.bytes
    const end = this.end
    let pos = this.pos
    if (pos >= end) return badVarint
    let byte = b[pos++]!
    if (byte < 0x80) {
      this.pos = pos
      return byte & 1 ? -((byte + 1) / 2) : byte / 2
    }
    let z = byte & 0x7f
    let weight = 128
    for (let i = 1; ; i++) {
      if (pos >= end || i === 8) return badVarint
      byte = b[pos++]!
      z += (byte & 0x7f) * weight
      weight *= 128
      if (byte < 0x80) {
        if (byte === 0) return badVarint
        break
      }
    }
    if (z > Number.MAX_SAFE_INTEGER) return badVarint
    this.pos = pos
    return z % 2 === 1 ? -((z + 1) / 2) : z / 2
  }
}

// ---- UTF-8 -----------------------------------------------------------------

/** Matches a lone surrogate: a string TextEncoder would silently alter. */
const loneSurrogate = /\p{Surrogate}/u

/** True if `s` has no lone surrogates (is well-formed UTF-16). */
export function isWellFormed(s: string): boolean {
  return !loneSurrogate.test(s)
}

/** UTF-8 length of a well-formed string, without encoding it. */
export function utf8Length(s: string): number {
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c < 0x80) n += 1
    else if (c < 0x800) n += 2
    else if (c >= 0xd800 && c <= 0xdbff) {
      n += 4
      i++
    } else n += 3
  }
  return n
}

/** Writes the well-formed string `s` as UTF-8 at `at`; returns the position after it. */
export function writeUtf8(out: Uint8Array, at: number, s: string): number {
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i)
    if (c < 0x80) {
      out[at++] = c
    } else if (c < 0x800) {
      out[at++] = 0xc0 | (c >> 6)
      out[at++] = 0x80 | (c & 0x3f)
    } else if (c >= 0xd800 && c <= 0xdbff) {
      c = 0x10000 + ((c - 0xd800) << 10) + (s.charCodeAt(++i) - 0xdc00)
      out[at++] = 0xf0 | (c >> 18)
      out[at++] = 0x80 | ((c >> 12) & 0x3f)
      out[at++] = 0x80 | ((c >> 6) & 0x3f)
      out[at++] = 0x80 | (c & 0x3f)
    } else {
      out[at++] = 0xe0 | (c >> 12)
      out[at++] = 0x80 | ((c >> 6) & 0x3f)
      out[at++] = 0x80 | (c & 0x3f)
    }
  }
  return at
}

/**
 * True if bytes [start, end) are valid UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF). Allocates nothing.
 */
export function isValidUtf8(b: Uint8Array, start: number, end: number): boolean {
  let i = start
  while (i < end) {
    const c = b[i]!
    if (c < 0x80) {
      i++
      continue
    }
    let need: number
    let min: number
    let cp: number
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1
      min = 0x80
      cp = c & 0x1f
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2
      min = 0x800
      cp = c & 0x0f
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3
      min = 0x10000
      cp = c & 0x07
    } else return false
    if (i + need >= end) return false
    for (let k = 1; k <= need; k++) {
      const cc = b[i + k]!
      if ((cc & 0xc0) !== 0x80) return false
      cp = (cp << 6) | (cc & 0x3f)
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false
    i += need + 1
  }
  return true
}

const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true })
const utf8Encoder = new TextEncoder()

/** Decodes UTF-8; throws a TypeError on invalid input (callers map it to a RillError). */
export function decodeUtf8(bytes: Uint8Array): string {
  return utf8Decoder.decode(bytes)
}

/** Encodes a well-formed string as UTF-8. */
export function encodeUtf8(s: string): Uint8Array {
  return utf8Encoder.encode(s)
}

// ---- base64 ----------------------------------------------------------------

const base64Alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
/** Character code -> 6-bit value, or -1. */
const base64Values = (() => {
  const t = new Int8Array(128).fill(-1)
  for (let i = 0; i < 64; i++) t[base64Alphabet.charCodeAt(i)] = i
  return t
})()

/** Standard base64 (RFC 4648 section 4, with padding) of `bytes`. */
export function toBase64(bytes: Uint8Array): string {
  const parts: string[] = []
  /** Characters per String.fromCharCode call: bounded to stay clear of argument limits. */
  const chunkChars = 8192
  const chars = new Uint16Array(Math.min(chunkChars, Math.ceil(bytes.length / 3) * 4))
  let n = 0
  const flush = (): void => {
    parts.push(String.fromCharCode.apply(null, chars.subarray(0, n) as unknown as number[]))
    n = 0
  }
  const a = base64Alphabet
  let i = 0
  for (; i + 3 <= bytes.length; i += 3) {
    const v = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!
    if (n + 4 > chars.length) flush()
    chars[n++] = a.charCodeAt(v >> 18)
    chars[n++] = a.charCodeAt((v >> 12) & 63)
    chars[n++] = a.charCodeAt((v >> 6) & 63)
    chars[n++] = a.charCodeAt(v & 63)
  }
  const rest = bytes.length - i
  if (rest > 0) {
    if (n + 4 > chars.length) flush()
    const v = (bytes[i]! << 16) | (rest === 2 ? bytes[i + 1]! << 8 : 0)
    chars[n++] = a.charCodeAt(v >> 18)
    chars[n++] = a.charCodeAt((v >> 12) & 63)
    chars[n++] = rest === 2 ? a.charCodeAt((v >> 6) & 63) : 61
    chars[n++] = 61
  }
  if (n > 0) flush()
  return parts.join('')
}

/**
 * Decodes strict standard base64: alphabet `A-Z a-z 0-9 + /`, padding with
 * `=` optional but correct when present, no whitespace. Unused trailing
 * bits are ignored, as Node's and most decoders do (RFC 4648 lets a decoder
 * refuse them; refusing would only turn away other tools' output). Returns
 * null when `s` is not such a string.
 */
export function fromBase64(s: string): Uint8Array | null {
  let len = s.length
  if (len % 4 === 0 && len > 0 && s.charCodeAt(len - 1) === 61) {
    len--
    if (s.charCodeAt(len - 1) === 61) len--
  }
  if (len % 4 === 1) return null
  const out = new Uint8Array(Math.floor((len * 3) / 4))
  const t = base64Values
  let o = 0
  let i = 0
  for (; i + 4 <= len; i += 4) {
    const c0 = s.charCodeAt(i)
    const c1 = s.charCodeAt(i + 1)
    const c2 = s.charCodeAt(i + 2)
    const c3 = s.charCodeAt(i + 3)
    if ((c0 | c1 | c2 | c3) >= 128) return null
    const v0 = t[c0]!
    const v1 = t[c1]!
    const v2 = t[c2]!
    const v3 = t[c3]!
    if ((v0 | v1 | v2 | v3) < 0) return null
    const v = (v0 << 18) | (v1 << 12) | (v2 << 6) | v3
    out[o++] = v >> 16
    out[o++] = (v >> 8) & 0xff
    out[o++] = v & 0xff
  }
  const rest = len - i
  if (rest >= 2) {
    const c0 = s.charCodeAt(i)
    const c1 = s.charCodeAt(i + 1)
    const c2 = rest === 3 ? s.charCodeAt(i + 2) : 65
    if ((c0 | c1 | c2) >= 128) return null
    const v0 = t[c0]!
    const v1 = t[c1]!
    const v2 = t[c2]!
    if ((v0 | v1 | v2) < 0) return null
    const v = (v0 << 18) | (v1 << 12) | (v2 << 6)
    out[o++] = v >> 16
    if (rest === 3) out[o++] = (v >> 8) & 0xff
  }
  return out
}
