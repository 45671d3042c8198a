/**
 * Frames on a broker-to-broker TCP connection.
 *
 *   ┌────────────────┬──────────────────────────────────────────┐
 *   │ u32 BE length  │ msgpack payload (length bytes)           │
 *   └────────────────┴──────────────────────────────────────────┘
 *   payload = [kind, ...fields]   (kind: FrameKind)
 *
 * The length is written into 4 bytes msgpackr reserves in front of its own
 * output (RESERVE_START_SPACE), so a frame is one buffer built with no copy
 * besides msgpackr's. The reader accepts a frame only up to a bound: the
 * bound is small until the handshake is done, so a stranger cannot make
 * the broker buffer megabytes, and `frameBytesMax` afterwards.
 */
import { RESERVE_START_SPACE, type Packr } from 'msgpackr'
import { assert, ErrorCode, RillError } from '../base/index.ts'

/** Bytes of the length prefix. */
export const frameHeaderBytes = 4
/** Default bound of one frame's payload after the handshake (64 MiB). */
export const frameBytesMaxDefault = 64 * 1024 * 1024
/** Bound of one frame's payload during the handshake. */
export const handshakeFrameBytesMax = 1024

/** The first field of every payload. */
export const FrameKind = {
  /** Dialer → acceptor: protocol version and the dialer's nonce (nothing identifying: handshake.ts). */
  Hello: 1,
  /** Acceptor → dialer: protocol version, the acceptor's nonce and its proof over both nonces. */
  Challenge: 2,
  /** Dialer → acceptor: the dialer's id and its proof over both nonces. */
  Auth: 3,
  /** Acceptor → dialer: accepted; batches may flow both ways. */
  Welcome: 4,
  /** Either side: refused (reason text for the other side's log), then close. */
  Refuse: 5,
  /** A PeerBatch (raft-codec.ts). */
  Batch: 6,
  /** Keeps an otherwise silent connection alive (no payload). */
  Ping: 7,
} as const
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind]

/** Encodes `payload` as one frame (length prefix included) in a single buffer. */
export function encodeFrame(packr: Packr, payload: unknown): Buffer {
  const out = packr.pack(payload, RESERVE_START_SPACE | frameHeaderBytes)
  assert(out.byteLength >= frameHeaderBytes, 'msgpackr reserved no header space')
  out.writeUInt32BE(out.byteLength - frameHeaderBytes, 0)
  return out
}

/**
 * Cuts a byte stream into frame payloads. Payloads that lie within one
 * received chunk are views of it (no copy); a payload spread over chunks is
 * gathered into one buffer of its exact size.
 */
export class FrameReader {
  /** Current bound of one payload; raised after the handshake. */
  bytesMax: number
  #chunks: Buffer[] = []
  #buffered = 0

  constructor(bytesMax: number) {
    this.bytesMax = bytesMax
  }

  /** Bytes received and not yet returned as a payload. */
  get buffered(): number {
    return this.#buffered
  }

  /**
   * Adds `chunk` and calls `onFrame` for each complete payload; stops early
   * when `onFrame` returns false. Returns a TOO_LARGE RillError (and buffers
   * nothing more) for a length above the bound: the caller closes the
   * connection, since the stream cannot be resynchronised. Errors thrown by
   * `onFrame` pass through.
   */
  push(chunk: Buffer, onFrame: (payload: Buffer) => boolean): RillError | null {
    this.#chunks.push(chunk)
    this.#buffered += chunk.byteLength
    while (this.#buffered >= frameHeaderBytes) {
      const length = this.#peekLength()
      if (length > this.bytesMax) {
        this.#chunks = []
        this.#buffered = 0
        return new RillError(ErrorCode.TOO_LARGE, `frame of ${length} bytes is above the bound of ${this.bytesMax}`)
      }
      if (this.#buffered < frameHeaderBytes + length) return null
      this.#consume(frameHeaderBytes)
      if (!onFrame(this.#consume(length))) return null
    }
    return null
  }

  #peekLength(): number {
    const first = this.#chunks[0]!
    if (first.byteLength >= frameHeaderBytes) return first.readUInt32BE(0)
    const head = Buffer.alloc(frameHeaderBytes)
    let at = 0
    for (const c of this.#chunks) {
      at += c.copy(head, at, 0, Math.min(c.byteLength, frameHeaderBytes - at))
      if (at === frameHeaderBytes) break
    }
    return head.readUInt32BE(0)
  }

  /** Removes and returns the next `n` buffered bytes (a view when they lie in one chunk). */
  #consume(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0)
    this.#buffered -= n
    const first = this.#chunks[0]!
    if (first.byteLength > n) {
      this.#chunks[0] = first.subarray(n)
      return first.subarray(0, n)
    }
    if (first.byteLength === n) {
      this.#chunks.shift()
      return first
    }
    // Gather; drop the used chunks with one splice (a peer trickling
    // single bytes must not make this quadratic).
    const out = Buffer.allocUnsafe(n)
    let at = 0
    let i = 0
    while (at < n) {
      const c = this.#chunks[i]!
      const take = Math.min(c.byteLength, n - at)
      c.copy(out, at, 0, take)
      at += take
      if (take === c.byteLength) i++
      else this.#chunks[i] = c.subarray(take)
    }
    this.#chunks.splice(0, i)
    return out
  }
}
