/**
 * One TCP connection to one peer broker: framing, the handshake state
 * machine (handshake.ts), then batches and pings both ways.
 *
 *   dialer:   connecting ─▶ challenge ─▶ welcome ─▶ ready ─▶ closed
 *   acceptor: hello ─▶ auth ─▶ ready ─▶ closed
 *
 * An acceptor does not know who dialed until the dialer's proof checked
 * (handshake.ts): `peerId` is 0 until then.
 *
 * The connection knows nothing about queues or Raft; it calls its host (the
 * Transport) to admit a peer, to announce readiness, to hand over batch
 * payloads and to report the close, exactly once.
 *
 * Over TLS the socket is a TLSSocket: the dialer says Hello once the TLS
 * handshake is done ('secureConnect', certificates checked both ways), the
 * acceptor is handed sockets whose handshake is done; the cluster-secret
 * handshake then runs inside TLS, unchanged.
 */
import type { Socket } from 'node:net'
import type { Logger } from 'pino'
import type { Packr } from 'msgpackr'
import { ErrorCode, RillError, isRillError, noTimer } from '../base/index.ts'
import type { Runtime, TimerHandle } from '../base/index.ts'
import { FrameKind, FrameReader, encodeFrame, handshakeFrameBytesMax } from './frame.ts'
import {
  authValue,
  challengeValue,
  helloValue,
  newNonce,
  parseAuth,
  parseChallenge,
  parseHello,
  parseWelcome,
  protocolVersion,
  prove,
  refuseValue,
  verify,
  welcomeValue,
  type Role,
  type Transcript,
} from './handshake.ts'
import { createPackr, unpackValue } from './raft-codec.ts'

/** What a connection needs from its transport. */
export interface ConnectionHost {
  readonly brokerId: number
  readonly clusterId: string
  readonly secret: Uint8Array
  readonly logger: Logger
  /** Clock and timers (handshake deadline, pings, idle close). */
  readonly runtime: Runtime
  readonly frameBytesMax: number
  readonly handshakeMs: number
  readonly pingIntervalMs: number
  readonly idleTimeoutMs: number
  /** Acceptor: may broker `from` (its proof checked) connect now? A refusal reason, or null to go on. */
  admit(from: number): string | null
  /** The handshake succeeded; a refusal reason (a duplicate won the race), or null. */
  ready(conn: Connection): string | null
  /** A Batch frame's value (already msgpack-decoded, still untrusted) arrived on a ready connection. */
  batch(conn: Connection, value: unknown, frameBytes: number): void
  /** Bytes are writable again after backpressure. */
  drained(conn: Connection): void
  /** The connection is gone; `cause` says why (for logs and metrics). */
  closed(conn: Connection, cause: CloseCause): void
}

/** Why a connection ended. */
export type CloseCause =
  | 'local' // closed by this broker (shutdown, peer removed)
  | 'remote' // the other side closed or reset it
  | 'connect' // TCP connect failed
  | 'timeout' // handshake did not finish in time
  | 'refused' // the other side refused the handshake
  | 'unauthorized' // this side refused the handshake
  | 'bad-frame' // oversized or malformed frame
  | 'idle' // nothing received for idleTimeoutMs

type State = 'connecting' | 'hello' | 'challenge' | 'auth' | 'welcome' | 'ready' | 'closed'

export class Connection {
  readonly role: Role
  readonly socket: Socket
  /** The peer's broker id: the dial target, or (acceptor) known once the dialer's proof checked; 0 before. */
  peerId: number
  #state: State
  readonly #host: ConnectionHost
  readonly #reader = new FrameReader(handshakeFrameBytesMax)
  /** Encoder of this connection's outgoing frames. */
  readonly #packr: Packr = createPackr()
  /** Decoder of this connection's incoming frames. */
  readonly #unpackr: Packr = createPackr()
  #transcript: Transcript | null = null
  #timer: TimerHandle = noTimer
  #readAtMs: number
  #writtenAtMs: number
  #needDrain = false

  /** `secure`: the socket is a TLSSocket being dialed; Hello waits for its 'secureConnect'. */
  constructor(options: { socket: Socket; role: Role; host: ConnectionHost; peerId: number; secure?: boolean }) {
    this.socket = options.socket
    this.role = options.role
    this.#host = options.host
    this.#readAtMs = this.#host.runtime.nowMs()
    this.#writtenAtMs = this.#readAtMs
    this.peerId = options.peerId
    this.#state = this.role === 'dialer' ? 'connecting' : 'hello'
    this.socket.setNoDelay(true)
    this.#timer = this.#host.runtime.setTimer(() => this.close('timeout', 'handshake timed out'), this.#host.handshakeMs, { background: true })
    this.socket.on(options.secure === true ? 'secureConnect' : 'connect', () => this.#onConnect())
    this.socket.on('data', (chunk: Buffer) => this.#onData(chunk))
    this.socket.on('drain', () => {
      this.#needDrain = false
      if (this.#state === 'ready') this.#host.drained(this)
    })
    this.socket.on('error', (error: NodeJS.ErrnoException) => {
      const cause: CloseCause = this.#state === 'connecting' ? 'connect' : 'remote'
      // TLS failures carry a code (UNABLE_TO_VERIFY_LEAF_SIGNATURE, ERR_TLS_CERT_ALTNAME_INVALID) and a message that says more.
      this.close(cause, `socket error: ${error.code === undefined ? error.message : `${error.code}: ${error.message}`}`)
    })
    this.socket.on('close', () => this.close('remote', 'closed by peer'))
  }

  /** True once the handshake succeeded and until the connection closes. */
  get isReady(): boolean {
    return this.#state === 'ready'
  }

  get isClosed(): boolean {
    return this.#state === 'closed'
  }

  /** True while the socket's buffer is over its high-water mark (wait for drained()). */
  get needDrain(): boolean {
    return this.#needDrain
  }

  /** Writes one frame; returns false if the socket now needs to drain. */
  writeFrame(frame: Buffer): boolean {
    if (this.#state === 'closed') return false
    this.#writtenAtMs = this.#host.runtime.nowMs()
    const ok = this.socket.write(frame)
    if (!ok) this.#needDrain = true
    return ok
  }

  /** Encodes and writes `value` as one frame; returns the frame's bytes. */
  send(value: unknown): number {
    const frame = encodeFrame(this.#packr, value)
    this.writeFrame(frame)
    return frame.byteLength
  }

  /**
   * Ends the connection once. With `refusal` (a handshake refusal) the other
   * side is told why before the close.
   */
  close(cause: CloseCause, detail: string, refusal?: string): void {
    if (this.#state === 'closed') return
    const wasReady = this.#state === 'ready'
    this.#state = 'closed'
    this.#timer.cancel()
    this.#timer = noTimer
    if (refusal !== undefined && !this.socket.destroyed) {
      this.socket.end(encodeFrame(this.#packr, refuseValue(refusal)))
      // A peer that never reads must not keep the socket open.
      this.#host.runtime.setTimer(() => this.socket.destroy(), this.#host.handshakeMs, { background: true })
    } else {
      this.socket.destroy()
    }
    const level = cause === 'local' || (cause === 'remote' && !wasReady) ? 'debug' : cause === 'remote' ? 'info' : 'warn'
    this.#host.logger[level]({ peer: this.peerId, role: this.role, cause, remote: this.socket.remoteAddress }, `peer connection closed: ${detail}`)
    this.#host.closed(this, cause)
  }

  // ---- handshake -------------------------------------------------------------

  #onConnect(): void {
    if (this.#state !== 'connecting') return
    const host = this.#host
    const nonce = newNonce()
    this.#transcript = { clusterId: host.clusterId, dialerId: host.brokerId, acceptorId: this.peerId, dialerNonce: nonce, acceptorNonce: new Uint8Array(0) }
    this.#state = 'challenge'
    // A bare nonce: whoever listens here has proven nothing yet.
    this.send(helloValue({ version: protocolVersion, nonce }))
  }

  #onHello(value: unknown): void {
    const host = this.#host
    const hello = parseHello(value)
    const acceptorNonce = newNonce()
    this.#transcript = { clusterId: host.clusterId, dialerId: 0, acceptorId: host.brokerId, dialerNonce: hello.nonce, acceptorNonce }
    this.#state = 'auth'
    this.send(challengeValue({ version: protocolVersion, nonce: acceptorNonce, mac: prove('acceptor', this.#transcript, host.secret) }))
  }

  #onChallenge(value: unknown): void {
    const challenge = parseChallenge(value)
    const t: Transcript = { ...this.#transcript!, acceptorNonce: challenge.nonce }
    this.#transcript = t
    if (!verify('acceptor', t, challenge.mac, this.#host.secret)) {
      return this.#refuse('bad proof', `bad proof: wrong cluster secret or cluster id, or not broker ${this.peerId} at this address`)
    }
    this.#state = 'welcome'
    this.send(authValue({ from: this.#host.brokerId, mac: prove('dialer', t, this.#host.secret) }))
  }

  #onAuth(value: unknown): void {
    const auth = parseAuth(value)
    const t: Transcript = { ...this.#transcript!, dialerId: auth.from }
    if (!verify('dialer', t, auth.mac, this.#host.secret)) return this.#refuse('bad proof', 'bad proof: wrong cluster secret or cluster id')
    // Proven: from here on the dialer may hear why it is refused.
    this.#transcript = t
    this.peerId = auth.from
    const refusal = this.#host.admit(auth.from)
    if (refusal !== null) return this.#refuse(refusal)
    if (!this.#becomeReady()) return
    this.send(welcomeValue())
  }

  #onWelcome(value: unknown): void {
    parseWelcome(value)
    this.#becomeReady()
  }

  #becomeReady(): boolean {
    const refusal = this.#host.ready(this)
    if (refusal !== null) {
      this.#refuse(refusal)
      return false
    }
    this.#state = 'ready'
    this.#reader.bytesMax = this.#host.frameBytesMax
    this.#timer.cancel()
    this.#readAtMs = this.#host.runtime.nowMs()
    this.#timer = this.#host.runtime.setRepeating(() => this.#onInterval(), this.#host.pingIntervalMs, { background: true })
    this.#host.logger.info({ peer: this.peerId, role: this.role, remote: this.socket.remoteAddress, local: this.socket.localAddress }, 'peer connected')
    return true
  }

  /** Refuses the handshake: `reason` goes to the other side, `detail` (default: the reason) to our log. */
  #refuse(reason: string, detail = reason): void {
    this.close('unauthorized', `refused ${this.peerId === 0 ? 'a peer not yet identified' : `broker ${this.peerId}`}: ${detail}`, reason)
  }

  // ---- frames ----------------------------------------------------------------

  #onData(chunk: Buffer): void {
    if (this.#state === 'closed') return
    this.#readAtMs = this.#host.runtime.nowMs()
    const oversized = this.#reader.push(chunk, (payload) => this.#onFrame(payload))
    if (oversized !== null) {
      const cause: CloseCause = this.#state === 'ready' ? 'bad-frame' : 'unauthorized'
      this.close(cause, oversized.message)
    }
  }

  /** Handles one payload; false stops the reader (the connection closed). */
  #onFrame(payload: Buffer): boolean {
    if (this.#state === 'closed') return false
    let value: unknown
    try {
      value = unpackValue(this.#unpackr, payload)
      if (this.#state !== 'ready') {
        this.#onHandshakeFrame(value)
        return !this.isClosed
      }
    } catch (error) {
      if (!isRillError(error)) throw error
      const cause: CloseCause = error.details['refusedByPeer'] === true ? 'refused' : this.#state === 'ready' ? 'bad-frame' : 'unauthorized'
      this.close(cause, error.message)
      return false
    }
    if (!Array.isArray(value) || value.length === 0) {
      this.close('bad-frame', 'frame is not a [kind, ...] array')
      return false
    }
    if (value[0] === FrameKind.Ping && value.length === 1) return true
    if (value[0] === FrameKind.Batch && value.length === 2) {
      this.#host.batch(this, value[1], payload.byteLength)
      return !this.isClosed
    }
    this.close('bad-frame', `unexpected frame kind ${String(value[0])}`)
    return false
  }

  #onHandshakeFrame(value: unknown): void {
    switch (this.#state) {
      case 'hello':
        return this.#onHello(value)
      case 'challenge':
        return this.#onChallenge(value)
      case 'auth':
        return this.#onAuth(value)
      case 'welcome':
        return this.#onWelcome(value)
      default:
        throw new RillError(ErrorCode.UNAUTHORIZED, `frame before the connection was open (${this.#state})`)
    }
  }

  #onInterval(): void {
    const now = this.#host.runtime.nowMs()
    if (now - this.#readAtMs > this.#host.idleTimeoutMs) {
      this.close('idle', `nothing received for ${Math.round(now - this.#readAtMs)} ms`)
      return
    }
    if (now - this.#writtenAtMs >= this.#host.pingIntervalMs && !this.#needDrain) this.send([FrameKind.Ping])
  }
}
