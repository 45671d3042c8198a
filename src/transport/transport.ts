/**
 * The broker-to-broker transport: one authenticated TCP connection per
 * broker pair carries the Raft messages of every group the two share.
 *
 *    broker tick                       Transport                       peer
 *   ─────────────                ┌───────────────────────┐
 *   send(g1, m) ─┐               │ peer 2: pending[]     │ one frame  ┌────────┐
 *   send(g7, m) ─┼─▶ by m.to ──▶ │ peer 3: pending[]     │ ─────────▶ │ broker │
 *   send(g1, m) ─┘               │   (bounded, count+B)  │  per flush │   2    │
 *   flush() ───────────────────▶ │ encode + write each   │            └────────┘
 *                                └───────────────────────┘
 *   onBatch(from, batch) ◀── strict decode ◀── frames from peers
 *
 * Who dials: the broker with the LOWER id dials the higher one; the higher
 * one only accepts, and only from lower ids it knows. So there is exactly
 * one connection per pair by construction (no simultaneous-dial race to
 * break), and a second connection from an already-connected peer is
 * refused. Outgoing sockets bind to `localHost` (the broker's own peer
 * host) so brokers sharing a machine (127.0.0.11, 127.0.0.12) are told apart.
 *
 * Coalescing: `send` only queues; `flush` (once per broker tick) writes
 * everything queued for a peer as ONE frame (raft-codec.ts packs the
 * heartbeats of all groups into columns). Groups with nothing to say add
 * nothing; the transport has no per-group timers. The only timers are per
 * connection: handshake timeout, a ping when the link has been silent for
 * `pingIntervalMs`, a close when nothing was heard for `idleTimeoutMs`
 * (how a half-dead connection is found), and the reconnect backoff.
 *
 * Backpressure: each peer's queue is bounded by messages and bytes; `send`
 * returns false and counts a drop when it is full (drop newest: Raft
 * retransmits what matters). While the socket asks to drain, queued
 * messages stay queued and go out as one frame on 'drain'. Messages queued
 * for a peer that is not connected at flush time are dropped: stale
 * appends are useless after a reconnect, and Raft re-sends from its
 * progress state.
 *
 * TLS (`options.tls`): the listener is a tls.Server that demands a client
 * certificate signed by the CA (a peer is a broker, and brokers have
 * certificates); the dialer checks the acceptor's certificate against the
 * CA and the address it dialed (an IP address must be in the certificate's
 * IP SANs, a name in its DNS SANs). The cluster-secret handshake runs
 * inside, unchanged: TLS says "a certificate of this CA", the secret says
 * "a broker of this cluster". `setTls` swaps the certificate, key and CA
 * for connections made from then on (SIGHUP); open ones keep theirs.
 */
import net from 'node:net'
import tls from 'node:tls'
import { pino, type Logger } from 'pino'
import type { Registry } from 'prom-client'
import { assert, ErrorCode, RillError, SeededRandom, isRillError, systemRuntime, type Random, type Runtime, type TimerHandle } from '../base/index.ts'
import type { Message } from '../raft/types.ts'
import { Connection, type CloseCause, type ConnectionHost } from './connection.ts'
import { FrameKind, frameBytesMaxDefault, frameHeaderBytes } from './frame.ts'
import { checkSecret } from './handshake.ts'
import { createTransportMetrics, type DropReason, type TransportMetrics } from './metrics.ts'
import {
  batchSize,
  encodedBytesMax,
  peerBatchFromValue,
  peerBatchValue,
  type GroupId,
  type GroupMessage,
  type PeerBatch,
} from './raft-codec.ts'

/** PEM certificate (leaf first, then intermediates), its key, and the CA peers' certificates must chain to. */
export interface TransportTls {
  readonly cert: string | Buffer
  readonly key: string | Buffer
  readonly ca: string | Buffer
}

/** Lines logged about peers refused in the TLS handshake, per `tlsRefusalLogWindowMs` (a stranger dialing in a loop must not flood the log; the metric counts all). */
export const tlsRefusalLogLinesMax = 10
export const tlsRefusalLogWindowMs = 60_000

/** Where a peer broker listens for broker connections. */
export interface PeerAddress {
  readonly host: string
  readonly port: number
}

/** Bounds and timings; every field has a default (transportLimitsDefault). */
export interface TransportLimits {
  /** Largest frame payload accepted or sent, bytes. A bigger incoming frame closes the connection. */
  readonly frameBytesMax: number
  /** Messages queued per peer between flushes (or while the socket drains) before `send` drops. */
  readonly queueMessagesMax: number
  /** Estimated encoded bytes queued per peer before `send` drops; at most half of frameBytesMax so a flush always fits one frame. */
  readonly queueBytesMax: number
  /** Time for TCP connect plus the whole handshake, ms. */
  readonly handshakeMs: number
  /** A connection with nothing written for this long gets a Ping, ms. */
  readonly pingIntervalMs: number
  /** A connection with nothing read for this long is closed (and redialed), ms. */
  readonly idleTimeoutMs: number
  /** First reconnect delay, ms (doubled per failed attempt, jittered). */
  readonly backoffMsMin: number
  /** Largest reconnect delay, ms. */
  readonly backoffMsMax: number
}

/** Messages per peer queue: a tick of 10k groups, each with a heartbeat and an answer or two. */
export const queueMessagesMaxDefault = 65_536
/** Bytes per peer queue: 32 MiB, half the frame bound. */
export const queueBytesMaxDefault = 32 * 1024 * 1024
export const handshakeMsDefault = 5_000
export const pingIntervalMsDefault = 1_000
export const idleTimeoutMsDefault = 10_000
export const backoffMsMinDefault = 50
export const backoffMsMaxDefault = 5_000
/** Doublings of the backoff before it stays at backoffMsMax (keeps 2^n finite). */
const backoffDoublingsMax = 16

export const transportLimitsDefault: TransportLimits = {
  frameBytesMax: frameBytesMaxDefault,
  queueMessagesMax: queueMessagesMaxDefault,
  queueBytesMax: queueBytesMaxDefault,
  handshakeMs: handshakeMsDefault,
  pingIntervalMs: pingIntervalMsDefault,
  idleTimeoutMs: idleTimeoutMsDefault,
  backoffMsMin: backoffMsMinDefault,
  backoffMsMax: backoffMsMaxDefault,
}

export interface TransportOptions {
  /** This broker's id (positive). */
  readonly brokerId: number
  /** Brokers of another cluster are refused. */
  readonly clusterId: string
  /** The 32-byte cluster secret both sides prove they hold. */
  readonly secret: Uint8Array
  /** Where to accept broker connections; port 0 picks a free port (see `address()`). */
  readonly listen: { readonly host: string; readonly port: number }
  /** Known peers by broker id (this broker's own id is ignored). Change later with setPeers. */
  readonly peers?: ReadonlyMap<number, PeerAddress>
  /** Local address outgoing connections bind to; defaults to listen.host unless that is a wildcard. */
  readonly localHost?: string
  /** Parent logger (default: silent). */
  readonly logger?: Logger
  /** prom-client registry for the transport's metrics (default: none kept). */
  readonly registry?: Registry
  /** Clock and timers (default: the process's). */
  readonly runtime?: Runtime
  /** Jitter of reconnect delays (default: seeded from the broker id, so runs repeat). */
  readonly random?: Random
  readonly limits?: Partial<TransportLimits>
  /** Serve and dial over TLS with these files' contents (see the head comment); plaintext TCP without. */
  readonly tls?: TransportTls
}

/** Called for each decoded, validated batch; `fromId` is the authenticated sender. */
export type BatchHandler = (fromId: number, batch: PeerBatch) => void

/**
 * What a broker needs from its links to the other brokers: `Transport`
 * (TCP, authenticated) on a real machine, the simulator's network in
 * src/sim. Messages queue per peer until `flush`, which sends one batch per
 * peer; `onBatch` receives the batches other brokers flushed here.
 */
export interface PeerNetwork {
  start(): Promise<void>
  close(): Promise<void>
  setPeers(peers: ReadonlyMap<number, PeerAddress>): void
  onBatch(handler: BatchHandler): void
  send(groupId: GroupId, message: Message): boolean
  flush(): void
  /** True if the link to `peerId` is up now (the failure detector of quiet groups and of fencing). */
  connected(peerId: number): boolean
}

/** A snapshot of one peer's link, for status pages and tests. */
export interface PeerInfo {
  readonly connected: boolean
  /** Address the peer's socket comes from / goes to, when connected. */
  readonly remoteAddress: string | null
  readonly localAddress: string | null
  readonly queuedMessages: number
  readonly queuedBytes: number
  /** Failed connection attempts since the last success (this side dials). */
  readonly attempts: number
}

interface PeerCounters {
  readonly framesSent: { inc(n?: number): void }
  readonly framesReceived: { inc(n?: number): void }
  readonly bytesSent: { inc(n?: number): void }
  readonly bytesReceived: { inc(n?: number): void }
  readonly messagesSent: { inc(n?: number): void }
  readonly messagesReceived: { inc(n?: number): void }
}

class Peer {
  readonly id: number
  address: PeerAddress
  /** The authenticated connection, if any. */
  conn: Connection | null = null
  /** This side's connection attempt in progress (dialer only). */
  dialing: Connection | null = null
  pending: GroupMessage[] = []
  pendingBytes = 0
  /** Set once a drop was logged; cleared when the queue empties (one log line per episode). */
  dropLogged = false
  attempts = 0
  retryTimer: TimerHandle | null = null
  readonly counters: PeerCounters | null

  constructor(id: number, address: PeerAddress, counters: PeerCounters | null) {
    this.id = id
    this.address = address
    this.counters = counters
  }
}

const wildcardHosts: ReadonlySet<string> = new Set(['0.0.0.0', '::', ''])

/** Oldest TLS version spoken between brokers. */
const tlsMinVersion = 'TLSv1.2'

function tlsServerContextOptions(material: TransportTls): tls.SecureContextOptions {
  return { cert: material.cert, key: material.key, ca: material.ca }
}

/** The context dials use: our certificate (peers demand one) and the CA theirs must chain to. Throws INVALID_REQUEST on unusable material. */
function clientContext(material: TransportTls): tls.SecureContext {
  try {
    return tls.createSecureContext({ ...tlsServerContextOptions(material), minVersion: tlsMinVersion })
  } catch (error) {
    throw new RillError(ErrorCode.INVALID_REQUEST, `TLS material not usable: ${(error as Error).message}`, { cause: error })
  }
}

export class Transport implements PeerNetwork {
  readonly brokerId: number
  readonly #clusterId: string
  readonly #secret: Uint8Array
  readonly #listen: { readonly host: string; readonly port: number }
  readonly #localHost: string | undefined
  readonly #logger: Logger
  readonly #metrics: TransportMetrics | null
  readonly #random: Random
  readonly #limits: TransportLimits
  readonly #peers = new Map<number, Peer>()
  /** Accepted connections still in their handshake. */
  readonly #accepting = new Set<Connection>()
  readonly #host: ConnectionHost
  readonly #runtime: Runtime
  #server: net.Server | null = null
  /** TLS material of new connections, and the client context built from it (null: plaintext). */
  #tls: { readonly material: TransportTls; readonly clientContext: tls.SecureContext } | null
  #tlsRefusals = { windowStartMs: 0, lines: 0, suppressed: 0 }
  /**
   * TCP sockets the TLS listener accepted, until they close: on close those
   * still in their TLS handshake (no Connection yet) are destroyed too, else
   * server.close would wait for a silent stranger's handshake timeout.
   */
  readonly #tlsSockets = new Set<net.Socket>()
  #handler: BatchHandler = () => {}
  #started = false
  #closed = false

  constructor(options: TransportOptions) {
    if (!Number.isInteger(options.brokerId) || options.brokerId <= 0 || options.brokerId > 0xffff_ffff) {
      throw new RillError(ErrorCode.INVALID_REQUEST, `broker id ${options.brokerId} is not a positive 32-bit integer`)
    }
    checkSecret(options.secret)
    this.brokerId = options.brokerId
    this.#clusterId = options.clusterId
    this.#secret = Buffer.from(options.secret)
    this.#listen = options.listen
    this.#localHost = options.localHost ?? (wildcardHosts.has(options.listen.host) ? undefined : options.listen.host)
    this.#logger = (options.logger ?? pino({ level: 'silent' })).child({ component: 'transport', broker: this.brokerId })
    this.#metrics = options.registry === undefined ? null : createTransportMetrics(options.registry)
    this.#random = options.random ?? new SeededRandom(this.brokerId)
    this.#limits = { ...transportLimitsDefault, ...options.limits }
    const l = this.#limits
    if (l.queueBytesMax * 2 > l.frameBytesMax || l.backoffMsMin <= 0 || l.backoffMsMax < l.backoffMsMin || l.idleTimeoutMs <= l.pingIntervalMs) {
      throw new RillError(ErrorCode.INVALID_REQUEST, `inconsistent transport limits ${JSON.stringify(l)}`)
    }
    this.#runtime = options.runtime ?? systemRuntime
    this.#tls = options.tls === undefined ? null : { material: options.tls, clientContext: clientContext(options.tls) }
    this.#host = this.#connectionHost()
    if (options.peers !== undefined) this.setPeers(options.peers)
  }

  // ---- lifecycle -------------------------------------------------------------

  /** Listens for peers and starts dialing the peers this broker dials. */
  async start(): Promise<void> {
    assert(!this.#started && !this.#closed, 'transport started twice')
    const server = this.#tls === null ? net.createServer((socket) => this.#onAccept(socket)) : this.#tlsServer(this.#tls.material)
    this.#server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({ host: this.#listen.host, port: this.#listen.port }, () => {
        server.off('error', reject)
        resolve()
      })
    })
    server.on('error', (error) => this.#logger.error({ err: error }, 'listener error'))
    this.#started = true
    this.#logger.info({ address: this.address() }, 'transport listening')
    for (const peer of this.#peers.values()) this.#dial(peer)
  }

  /** The address actually listened on (the port when 0 was asked for). */
  address(): PeerAddress {
    const a = this.#server?.address()
    assert(a !== null && a !== undefined && typeof a === 'object', 'transport is not listening')
    return { host: a.address, port: a.port }
  }

  /** True if peer connections are made over TLS. */
  get tlsEnabled(): boolean {
    return this.#tls !== null
  }

  /**
   * New TLS material (a reloaded certificate, key or CA) for connections
   * accepted or dialed from now on; open connections keep theirs. Throws
   * INVALID_REQUEST on a transport without TLS (TLS is chosen at start) or
   * on material node:tls cannot use (nothing changes then).
   */
  setTls(material: TransportTls): void {
    if (this.#tls === null) throw new RillError(ErrorCode.INVALID_REQUEST, 'this transport was started without TLS')
    const next = { material, clientContext: clientContext(material) }
    if (this.#server !== null) (this.#server as tls.Server).setSecureContext(tlsServerContextOptions(material))
    this.#tls = next
  }

  /** Stops listening, closes every connection and cancels reconnects. Queued messages are dropped. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const peer of this.#peers.values()) this.#forget(peer)
    for (const conn of [...this.#accepting]) conn.close('local', 'transport closing')
    for (const socket of this.#tlsSockets) socket.destroy()
    const server = this.#server
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()))
    this.#logger.info('transport closed')
  }

  /**
   * Replaces the set of known peers (membership changes). New peers are
   * dialed (if this broker dials them), removed ones disconnected and their
   * queues dropped, moved ones redialed at the new address.
   */
  setPeers(peers: ReadonlyMap<number, PeerAddress>): void {
    if (this.#closed) return
    for (const [id, peer] of this.#peers) {
      if (peers.has(id)) continue
      this.#forget(peer)
      this.#peers.delete(id)
    }
    for (const [id, address] of peers) {
      if (id === this.brokerId) continue
      assert(Number.isInteger(id) && id > 0, () => `peer id ${id} is not a positive integer`)
      const known = this.#peers.get(id)
      if (known === undefined) {
        const peer = new Peer(id, address, this.#counters(id))
        this.#peers.set(id, peer)
        if (this.#started) this.#dial(peer)
      } else if (known.address.host !== address.host || known.address.port !== address.port) {
        known.address = address
        if (this.#dials(id)) {
          known.dialing?.close('local', 'peer address changed')
          known.conn?.close('local', 'peer address changed')
        }
      }
    }
  }

  /** Registers the receiver of decoded batches (one handler; a later call replaces it). */
  onBatch(handler: BatchHandler): void {
    this.#handler = handler
  }

  // ---- sending ---------------------------------------------------------------

  /**
   * Queues `message` of group `groupId` for broker `message.to` until the
   * next flush. Returns false (and counts a drop) if the peer is unknown,
   * its queue is full, or the message alone is larger than the queue bound.
   */
  send(groupId: GroupId, message: Message): boolean {
    assert(message.from === this.brokerId, () => `message from ${message.from} sent by broker ${this.brokerId}`)
    const peer = this.#peers.get(message.to)
    if (peer === undefined) return this.#drop(null, message.to, 'unknown_peer', 1)
    const bytes = encodedBytesMax(message)
    if (bytes > this.#limits.queueBytesMax) return this.#drop(peer, peer.id, 'too_large', 1)
    if (peer.pending.length >= this.#limits.queueMessagesMax || peer.pendingBytes + bytes > this.#limits.queueBytesMax) {
      return this.#drop(peer, peer.id, 'queue_full', 1)
    }
    peer.pending.push({ groupId, message })
    peer.pendingBytes += bytes
    return true
  }

  /** Writes everything queued for each peer as one frame per peer (call once per tick). */
  flush(): void {
    for (const peer of this.#peers.values()) {
      if (peer.pending.length > 0) this.#flushPeer(peer)
    }
  }

  /** True if `peerId` has an authenticated connection now. */
  connected(peerId: number): boolean {
    return this.#peers.get(peerId)?.conn?.isReady === true
  }

  /** The state of the link to `peerId`, or null for an unknown peer. */
  peerInfo(peerId: number): PeerInfo | null {
    const peer = this.#peers.get(peerId)
    if (peer === undefined) return null
    const socket = peer.conn?.socket
    return {
      connected: peer.conn !== null,
      remoteAddress: socket?.remoteAddress ?? null,
      localAddress: socket?.localAddress ?? null,
      queuedMessages: peer.pending.length,
      queuedBytes: peer.pendingBytes,
      attempts: peer.attempts,
    }
  }

  #flushPeer(peer: Peer): void {
    const conn = peer.conn
    if (conn === null) {
      this.#drop(peer, peer.id, 'disconnected', peer.pending.length)
      this.#clearQueue(peer)
      return
    }
    // The socket is full: keep queuing (bounded); 'drain' flushes.
    if (conn.needDrain) return
    const items = peer.pending
    const value = [FrameKind.Batch, peerBatchValue(items, { from: this.brokerId, to: peer.id })]
    this.#clearQueue(peer)
    const frameBytes = conn.send(value)
    assert(frameBytes - frameHeaderBytes <= this.#limits.frameBytesMax, () => `frame of ${frameBytes} bytes to ${peer.id} above the bound`)
    const c = peer.counters
    if (c !== null) {
      c.framesSent.inc()
      c.bytesSent.inc(frameBytes)
      c.messagesSent.inc(items.length)
    }
  }

  #clearQueue(peer: Peer): void {
    peer.pending = []
    peer.pendingBytes = 0
    peer.dropLogged = false
  }

  #drop(peer: Peer | null, peerId: number, reason: DropReason, n: number): false {
    this.#metrics?.messagesDropped.inc({ broker: this.brokerId, peer: peerId, reason }, n)
    if (peer !== null && !peer.dropLogged && reason !== 'disconnected') {
      peer.dropLogged = true
      this.#logger.warn({ peer: peerId, reason, queued: peer.pending.length, queuedBytes: peer.pendingBytes }, 'dropping messages to peer')
    }
    return false
  }

  // ---- connections -------------------------------------------------------------

  /** The lower id dials. */
  #dials(peerId: number): boolean {
    return this.brokerId < peerId
  }

  #dial(peer: Peer): void {
    if (this.#closed || !this.#started || !this.#dials(peer.id)) return
    if (peer.conn !== null || peer.dialing !== null || peer.retryTimer !== null) return
    this.#metrics?.connectAttempts.inc({ broker: this.brokerId, peer: peer.id })
    const { host, port } = peer.address
    const secure = this.#tls !== null
    let socket: net.Socket
    if (secure) {
      // tls.connect hands localAddress to its TCP connect (its types leave it out).
      const options: tls.ConnectionOptions & { localAddress?: string } = {
        host,
        port,
        localAddress: this.#localHost,
        secureContext: this.#tls!.clientContext,
        // The certificate is checked against the dialed address: SNI carries names only, never an IP address.
        ...(net.isIP(host) === 0 ? { servername: host } : {}),
        minVersion: tlsMinVersion,
      }
      socket = tls.connect(options)
    } else {
      socket = net.connect({ host, port, localAddress: this.#localHost })
    }
    peer.dialing = new Connection({ socket, role: 'dialer', host: this.#host, peerId: peer.id, secure })
  }

  /** The TLS listener: a handshake bounded by handshakeMs, a client certificate of the CA required. */
  #tlsServer(material: TransportTls): tls.Server {
    const server = tls.createServer({ ...tlsServerContextOptions(material), requestCert: true, rejectUnauthorized: true, handshakeTimeout: this.#limits.handshakeMs, minVersion: tlsMinVersion })
    server.on('connection', (raw: net.Socket) => {
      this.#tlsSockets.add(raw)
      raw.once('close', () => this.#tlsSockets.delete(raw))
    })
    server.on('secureConnection', (socket) => this.#onAccept(socket))
    server.on('tlsClientError', (error: NodeJS.ErrnoException, socket) => this.#onTlsRefused(error, socket))
    return server
  }

  /** A dialer that failed the TLS handshake here (no certificate, another CA, a plaintext client, a timeout): counted, and logged within a budget. */
  #onTlsRefused(error: NodeJS.ErrnoException, socket: tls.TLSSocket): void {
    socket.destroy()
    this.#metrics?.connectionsRejected.inc({ broker: this.brokerId, reason: 'tls' })
    const now = this.#runtime.nowMs()
    if (now - this.#tlsRefusals.windowStartMs >= tlsRefusalLogWindowMs) {
      const suppressed = this.#tlsRefusals.suppressed
      if (suppressed > 0) this.#logger.warn({ suppressed }, `${suppressed} more peer connections refused in the TLS handshake`)
      this.#tlsRefusals = { windowStartMs: now, lines: 0, suppressed: 0 }
    }
    if (this.#tlsRefusals.lines >= tlsRefusalLogLinesMax) {
      this.#tlsRefusals.suppressed++
      return
    }
    this.#tlsRefusals.lines++
    this.#logger.warn({ remote: socket.remoteAddress, code: error.code }, `peer connection refused in the TLS handshake: ${error.code ?? ''} ${error.message}`.trim())
  }

  /** Jittered exponential backoff: a delay in [d/2, d], d = min(max, min·2^attempts). */
  #backoffMs(attempts: number): number {
    const { backoffMsMin, backoffMsMax } = this.#limits
    const d = Math.min(backoffMsMax, backoffMsMin * 2 ** Math.min(attempts, backoffDoublingsMax))
    return Math.floor(d / 2) + this.#random.int(Math.floor(d / 2) + 1)
  }

  #scheduleDial(peer: Peer): void {
    if (this.#closed || peer.retryTimer !== null || this.#peers.get(peer.id) !== peer) return
    const delayMs = this.#backoffMs(peer.attempts)
    peer.attempts++
    this.#logger.debug({ peer: peer.id, delayMs, attempts: peer.attempts }, 'reconnecting later')
    peer.retryTimer = this.#runtime.setTimer(
      () => {
        peer.retryTimer = null
        this.#dial(peer)
      },
      delayMs,
      { background: true },
    )
  }

  /** Disconnects `peer` for good (removed or shutting down). */
  #forget(peer: Peer): void {
    peer.retryTimer?.cancel()
    peer.retryTimer = null
    const conns = [peer.dialing, peer.conn]
    peer.dialing = null
    peer.conn = null
    for (const c of conns) c?.close('local', 'peer removed or transport closing')
    this.#clearQueue(peer)
  }

  #onAccept(socket: net.Socket): void {
    if (this.#closed) {
      socket.destroy()
      return
    }
    const conn = new Connection({ socket, role: 'acceptor', host: this.#host, peerId: 0 })
    this.#accepting.add(conn)
  }

  #connectionHost(): ConnectionHost {
    const l = this.#limits
    return {
      brokerId: this.brokerId,
      clusterId: this.#clusterId,
      secret: this.#secret,
      logger: this.#logger,
      runtime: this.#runtime,
      frameBytesMax: l.frameBytesMax,
      handshakeMs: l.handshakeMs,
      pingIntervalMs: l.pingIntervalMs,
      idleTimeoutMs: l.idleTimeoutMs,
      admit: (from) => this.#admit(from),
      ready: (conn) => this.#ready(conn),
      batch: (conn, value, frameBytes) => this.#onBatchFrame(conn, value, frameBytes),
      drained: (conn) => this.#onDrained(conn),
      closed: (conn, cause) => this.#onClosed(conn, cause),
    }
  }

  /** Acceptor, once broker `from` proved it holds the secret: may it connect now? */
  #admit(from: number): string | null {
    const peer = this.#peers.get(from)
    if (peer === undefined) return `broker ${from} is not a known peer`
    if (!(from < this.brokerId)) return `broker ${from} must be dialed by broker ${this.brokerId} (the lower id dials)`
    if (peer.conn !== null) return `broker ${from} is already connected`
    return null
  }

  #ready(conn: Connection): string | null {
    const peer = this.#peers.get(conn.peerId)
    if (this.#closed || peer === undefined) return 'peer unknown or transport closing'
    if (conn.role === 'acceptor') {
      if (peer.conn !== null) return `broker ${conn.peerId} is already connected`
      this.#accepting.delete(conn)
    } else if (peer.dialing !== conn) {
      return 'connection attempt superseded'
    } else {
      peer.dialing = null
    }
    peer.conn = conn
    peer.attempts = 0
    this.#metrics?.peersConnected.inc({ broker: this.brokerId })
    return null
  }

  #onClosed(conn: Connection, cause: CloseCause): void {
    this.#accepting.delete(conn)
    if (cause === 'unauthorized' || cause === 'bad-frame' || cause === 'idle') {
      this.#metrics?.connectionsRejected.inc({ broker: this.brokerId, reason: cause })
    }
    const peer = this.#peers.get(conn.peerId)
    if (peer === undefined) return
    if (peer.conn === conn) {
      peer.conn = null
      this.#metrics?.peersConnected.dec({ broker: this.brokerId })
      this.#scheduleDial(peer)
      return
    }
    if (peer.dialing === conn) {
      peer.dialing = null
      const reason = cause === 'connect' || cause === 'timeout' || cause === 'refused' ? cause : 'handshake'
      this.#metrics?.connectFailures.inc({ broker: this.brokerId, peer: peer.id, reason })
      this.#scheduleDial(peer)
    }
  }

  #onDrained(conn: Connection): void {
    const peer = this.#peers.get(conn.peerId)
    if (peer !== undefined && peer.conn === conn && peer.pending.length > 0) this.#flushPeer(peer)
  }

  #onBatchFrame(conn: Connection, value: unknown, frameBytes: number): void {
    const peer = this.#peers.get(conn.peerId)
    if (peer === undefined || peer.conn !== conn) return
    let batch: PeerBatch
    try {
      batch = peerBatchFromValue(value, { from: peer.id, to: this.brokerId })
    } catch (error) {
      if (!isRillError(error)) throw error
      conn.close('bad-frame', error.message)
      return
    }
    const c = peer.counters
    if (c !== null) {
      c.framesReceived.inc()
      c.bytesReceived.inc(frameBytes + frameHeaderBytes)
      c.messagesReceived.inc(batchSize(batch))
    }
    this.#handler(peer.id, batch)
  }

  #counters(peerId: number): PeerCounters | null {
    const m = this.#metrics
    if (m === null) return null
    const labels = { broker: this.brokerId, peer: peerId }
    return {
      framesSent: m.framesSent.labels(labels),
      framesReceived: m.framesReceived.labels(labels),
      bytesSent: m.bytesSent.labels(labels),
      bytesReceived: m.bytesReceived.labels(labels),
      messagesSent: m.messagesSent.labels(labels),
      messagesReceived: m.messagesReceived.labels(labels),
    }
  }
}
