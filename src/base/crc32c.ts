/**
 * CRC32C (Castagnoli), the checksum of every entry, index file and WAL record
 * header. Pure TypeScript, slicing-by-16 with 32-bit word loads.
 *
 * Why CRC32C and not BLAKE2b: chosen by measurement (this VM, Node 20, one
 * core; MB/s over 256 MiB of input):
 *
 *   input      CRC32C slicing-by-8   slicing-by-8 +    slicing-by-16 +   BLAKE2b-128 (sodium-native
 *              (byte loads)          word loads        word loads        crypto_generichash)
 *   1 KiB      1159                  1549              1905              551
 *   16 KiB     1075                  1602              2107              602
 *   256 KiB    1004                  1619              2136              622
 *
 * The checksum is computed once per append on the event loop, so its speed is
 * a direct cap on `async` mode throughput; BLAKE2b would cap it near 600 MB/s
 * (the raw page-cache write rate here is 0.6–1.4 GB/s). A cryptographic hash
 * buys nothing here: the threat is torn writes and bit rot, not an adversary
 * (producers' batches carry their own checksum, DESIGN.md decision 3).
 * For reference, node:zlib's native `crc32` (CRC-32/IEEE, Node >= 20.15)
 * measured 3000–5800 MB/s; it is a different polynomial, so switching would
 * be a format version bump.
 *
 * Word loads read the platform's byte order; every platform Node ships on is
 * little-endian, and the module refuses to load otherwise.
 */
import { assert } from './assert.ts'

assert(new Uint8Array(new Uint16Array([1]).buffer)[0] === 1, 'crc32c: word loads assume a little-endian platform')

/** Castagnoli polynomial, reflected. */
const polynomial = 0x82f63b78
/** Slicing-by-16: 16 tables of 256 entries. */
const tableSlices = 16

const table = buildTable()

function buildTable(): Int32Array {
  const t = new Int32Array(tableSlices * 256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ polynomial : c >>> 1
    t[n] = c
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!
    for (let k = 1; k < tableSlices; k++) {
      c = t[c & 0xff]! ^ (c >>> 8)
      t[k * 256 + n] = c
    }
  }
  return t
}

/**
 * Extends `crc` (0 to start) over `bytes`; returns the CRC32C as an unsigned
 * 32-bit number. `crc32c(crc32c(0, a), b) === crc32c(0, a ++ b)`.
 */
export function crc32c(crc: number, bytes: Uint8Array): number {
  const t = table
  let c = ~crc
  let i = 0
  const n = bytes.length
  while (i < n && ((bytes.byteOffset + i) & 3) !== 0) {
    c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8)
    i++
  }
  const blocks = (n - i) >>> 4
  if (blocks > 0) {
    const w = new Int32Array(bytes.buffer, bytes.byteOffset + i, blocks * 4)
    for (let k = 0; k < w.length; k += 4) {
      const a = w[k]! ^ c
      const b1 = w[k + 1]!
      const b2 = w[k + 2]!
      const b3 = w[k + 3]!
      c =
        t[3840 + (a & 0xff)]! ^ t[3584 + ((a >>> 8) & 0xff)]! ^ t[3328 + ((a >>> 16) & 0xff)]! ^ t[3072 + (a >>> 24)]! ^
        t[2816 + (b1 & 0xff)]! ^ t[2560 + ((b1 >>> 8) & 0xff)]! ^ t[2304 + ((b1 >>> 16) & 0xff)]! ^ t[2048 + (b1 >>> 24)]! ^
        t[1792 + (b2 & 0xff)]! ^ t[1536 + ((b2 >>> 8) & 0xff)]! ^ t[1280 + ((b2 >>> 16) & 0xff)]! ^ t[1024 + (b2 >>> 24)]! ^
        t[768 + (b3 & 0xff)]! ^ t[512 + ((b3 >>> 8) & 0xff)]! ^ t[256 + ((b3 >>> 16) & 0xff)]! ^ t[b3 >>> 24]!
    }
    i += blocks * 16
  }
  for (; i < n; i++) c = t[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8)
  return ~c >>> 0
}
