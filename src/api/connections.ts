/**
 * What HTTP connections may hold of a broker (issue 10, hole 2). A client
 * that pipelines requests and never reads the answers made the broker build
 * every answer and keep it until the socket took it: 20 connections, each
 * pipelining 200 fetches of a 7 MB record, took a broker from 414 MB to
 * about 8 GB. Kafka mutes a connection while it has a request in flight;
 * over HTTP/1.1 the same idea is a bound on requests in flight per
 * connection, with the socket paused at the bound so the kernel's buffers
 * push back on the client, and a bound on the bytes of answers built and
 * not yet written, per connection and for the whole process.
 *
 *   request ─▶ in flight +1 ─┬─ below the cap: served
 *                            ├─ at the cap: served, socket paused (no more requests read)
 *                            └─ above (pipelined requests parsed before the pause took):
 *                               503 OVERLOADED + Connection: close; more than the cap of
 *                               those: the socket is destroyed
 *   fetch ─▶ grant: maxBytes clamped to what the connection and the process have left;
 *            nothing left ─▶ 503 OVERLOADED (Retry-After), the log is not read
 *         ─▶ after the read: the batches' bytes charged (the log returns at least one
 *            batch, so a read may pass its grant); the process cannot take them ─▶ 503
 *            OVERLOADED; the client is gone ─▶ no answer is built
 *   onSend ─▶ the answer's bytes charged until the response's 'finish' or 'close'
 *   socket 'close' ─▶ everything the connection held is released at once
 *
 * Every answer is charged once built (metadata, errors, produce results:
 * small, never refused); only fetches, which are sized by the client, are
 * clamped and refused. A connection with nothing charged may always take
 * one fetch up to what the process has left, so a record larger than the
 * per-connection bound can still be read. The process bound may be passed
 * by what answers inflate to when built (JSON, base64) beyond the batch
 * bytes that were charged for them: by a bounded factor of the answers in
 * flight, never by a client's choice.
 *
 * Connections themselves (issue 10, hole 4: idle connections were never
 * closed; 1,100 of them took every descriptor of a broker with 1,024 and
 * made it unreachable while placement went on giving it replicas):
 *
 *   accept ─▶ open < connectionsMax and this address < connectionsPerAddressMax ─▶ counted
 *          └─ otherwise ─▶ 503 OVERLOADED written at once and closed (over TLS: closed)
 *   no traffic for idleMs ─┬─ no request in flight (new, or kept alive) ─▶ closed
 *                          ├─ answers waiting for a client that does not read ─▶ closed
 *                          └─ a request being worked on (a long poll) ─▶ kept
 *   headers not in after headersMs, a request not in after requestMs ─▶ 408, closed (node)
 */
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Counter, Gauge, type Registry } from 'prom-client'
import { ErrorCode, RillError } from '../base/index.ts'
import type { ConnectionLimits } from './limits.ts'

/** A fetch granted less than this (or than it asked, if less) is refused instead: it would return next to nothing. */
export const fetchGrantBytesMin = 64 * 1024

/** One connection's share. */
class Connection {
  inflight = 0
  /** Requests refused for being beyond the in-flight cap. */
  refused = 0
  answerBytes = 0
  paused = false
  /** Told to close (an answer carried Connection: close): never resumed. */
  closing = false
  closed = false
  readonly charges = new Set<Charge>()
  readonly socket: Socket

  constructor(socket: Socket) {
    this.socket = socket
  }
}

/** What one request holds until its response is done. */
class Charge {
  bytes = 0
  readonly connection: Connection

  constructor(connection: Connection) {
    this.connection = connection
  }
}

/** Answer bytes, in-flight requests and refusals of a server's connections; see the top comment. */
export class ConnectionGuard {
  readonly #limits: ConnectionLimits
  readonly #connections = new WeakMap<Socket, Connection>()
  readonly #charges = new WeakMap<IncomingMessage, Charge>()
  #answerBytes = 0
  readonly #refusals: Counter<'reason'>
  /** Connections open now, over all addresses and per client address. */
  #open = 0
  readonly #openByAddress = new Map<string, number>()
  readonly #connectionsRefused: Counter<'reason'>
  readonly #connectionsClosed: Counter<'reason'>
  /** False under TLS: a refused connection is closed without an answer (the answer would have to go through a handshake). */
  readonly #plaintext: boolean

  constructor(options: { limits: ConnectionLimits; registry: Registry; plaintext: boolean }) {
    this.#limits = options.limits
    this.#plaintext = options.plaintext
    const guard = this
    new Gauge({
      name: 'rill_http_connections_open',
      help: 'HTTP connections open now',
      registers: [options.registry],
      collect() {
        this.set(guard.connectionsOpen)
      },
    })
    this.#connectionsRefused = new Counter({
      name: 'rill_http_connections_refused_total',
      help: 'Connections refused at accept: connections (connectionsMax reached), connections_per_address (connectionsPerAddressMax reached for the client address)',
      labelNames: ['reason'] as const,
      registers: [options.registry],
    })
    this.#connectionsClosed = new Counter({
      name: 'rill_http_connections_closed_total',
      help: 'Connections the broker closed: idle (no request in flight for idleMs), stalled (answers not read for idleMs)',
      labelNames: ['reason'] as const,
      registers: [options.registry],
    })
    new Gauge({
      name: 'rill_http_answer_bytes_queued',
      help: 'Bytes of HTTP answers built (or granted to fetches being built) and not yet written to a socket',
      registers: [options.registry],
      collect() {
        this.set(guard.answerBytes)
      },
    })
    this.#refusals = new Counter({
      name: 'rill_http_requests_refused_total',
      help: 'Requests refused before any work: inflight (beyond the per-connection cap), answer_bytes (no memory left for the answer), destroyed (a connection that kept pipelining past its refusals)',
      labelNames: ['reason'] as const,
      registers: [options.registry],
    })
  }

  /** Connections open now. */
  get connectionsOpen(): number {
    return this.#open
  }

  /**
   * The options of the node server that bound request time (headers,
   * whole request) and idle keep-alive connections: given to fastify when
   * the server is created (node reads `connectionsCheckingInterval` only
   * then).
   */
  static serverOptions(limits: ConnectionLimits): { connectionTimeout: number; keepAliveTimeout: number; requestTimeout: number; node: { headersTimeout: number; requestTimeout: number; connectionsCheckingInterval: number; keepAliveTimeout: number } } {
    const headersTimeout = Math.min(limits.headersMs, limits.requestMs)
    // Node checks both timeouts on an interval (30 s by default): a quarter of the headers bound keeps them close to what they say.
    const connectionsCheckingInterval = Math.max(50, Math.min(5000, Math.floor(headersTimeout / 4)))
    return {
      // The socket inactivity timeout: its 'timeout' goes to the server listener installed below, which decides.
      connectionTimeout: limits.idleMs,
      keepAliveTimeout: limits.idleMs,
      requestTimeout: limits.requestMs,
      node: { headersTimeout, requestTimeout: limits.requestMs, connectionsCheckingInterval, keepAliveTimeout: limits.idleMs },
    }
  }

  /** Bytes of answers charged now, over every connection. */
  get answerBytes(): number {
    return this.#answerBytes
  }

  /**
   * Installs the hooks on `app`; call it before any other hook is added, so
   * a refused request costs nothing more. `refuse` answers a refused request
   * (an error answer, sent at once).
   */
  install(app: FastifyInstance, refuse: (request: FastifyRequest, reply: FastifyReply, error: RillError) => void): void {
    // The raw TCP socket (also under TLS, before its handshake): counted, or refused before it costs more.
    app.server.on('connection', (socket: Socket) => this.#accept(socket))
    // With a listener here node does not destroy a socket on its inactivity timeout: #timedOut decides.
    app.server.on('timeout', (socket: Socket) => this.#timedOut(socket))
    app.addHook('onRequest', (request, reply, done) => {
      const admitted = this.#admit(request.raw, reply)
      if (admitted === 'serve') return done()
      // Dropped: the socket is destroyed and nothing is answered; the request goes no further.
      if (admitted !== 'drop') refuse(request, reply, admitted)
    })
    app.addHook('onSend', (request, _reply, payload, done) => {
      const charge = this.#charges.get(request.raw)
      if (charge !== undefined) this.#setCharge(charge, Math.max(charge.bytes, payloadBytes(payload)))
      done(null, payload)
    })
  }

  /**
   * Bytes a fetch that asked for `askedBytes` may read: clamped to what its
   * connection and the process have left. Throws OVERLOADED when that is
   * too little to be worth a read.
   */
  grantFetch(raw: IncomingMessage, askedBytes: number): number {
    const charge = this.#liveCharge(raw)
    const c = charge.connection
    const processLeft = this.#limits.answerBytesMax - (this.#answerBytes - charge.bytes)
    const connectionLeft = this.#limits.answerBytesPerConnectionMax - (c.answerBytes - charge.bytes)
    // A connection with nothing else queued may take one answer up to what the process has left (progress).
    const left = c.answerBytes - charge.bytes === 0 ? processLeft : Math.min(processLeft, connectionLeft)
    const grant = Math.min(askedBytes, left)
    if (grant < Math.min(askedBytes, fetchGrantBytesMin)) {
      this.#refusals.inc({ reason: 'answer_bytes' })
      const scope = left === processLeft ? 'this broker' : 'this connection'
      throw overloaded(`no memory left for the answer: ${scope} has ${Math.max(0, left)} bytes of answers left unwritten of its bound; read the answers already sent, then retry`)
    }
    this.#setCharge(charge, grant)
    return grant
  }

  /**
   * The fetch read `bytes` of batches (maybe more than granted: the log
   * returns at least one batch). Throws OVERLOADED if the process cannot
   * take them, and when the client is gone (nothing is built for it).
   */
  fetched(raw: IncomingMessage, bytes: number): void {
    const charge = this.#liveCharge(raw)
    const extra = bytes - charge.bytes
    if (extra > 0 && this.#answerBytes + extra > this.#limits.answerBytesMax) {
      this.#refusals.inc({ reason: 'answer_bytes' })
      throw overloaded(`no memory left for the answer: a ${bytes}-byte read passes what this broker has left for answers not yet written; retry`)
    }
    this.#setCharge(charge, Math.max(charge.bytes, bytes))
  }

  /** A new connection: counted, or refused when the broker or its client address has as many as allowed. */
  #accept(socket: Socket): void {
    const address = socket.remoteAddress ?? 'unknown'
    const fromAddress = this.#openByAddress.get(address) ?? 0
    const reason = this.#open >= this.#limits.connectionsMax ? 'connections' : fromAddress >= this.#limits.connectionsPerAddressMax ? 'connections_per_address' : null
    if (reason !== null) return this.#refuseConnection(socket, reason, address)
    this.#open++
    this.#openByAddress.set(address, fromAddress + 1)
    socket.once('close', () => {
      this.#open--
      const left = (this.#openByAddress.get(address) ?? 1) - 1
      if (left === 0) this.#openByAddress.delete(address)
      else this.#openByAddress.set(address, left)
    })
  }

  #refuseConnection(socket: Socket, reason: 'connections' | 'connections_per_address', address: string): void {
    this.#connectionsRefused.inc({ reason })
    socket.on('error', () => undefined)
    if (!this.#plaintext) {
      socket.destroy()
      return
    }
    const message = reason === 'connections'
      ? `this broker has ${this.#limits.connectionsMax} connections open, its bound: retry later`
      : `${address} has ${this.#limits.connectionsPerAddressMax} connections open to this broker, the bound per client address: close some or retry later`
    const body = JSON.stringify({ error: { code: ErrorCode.OVERLOADED, message } })
    const head = `HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json; charset=utf-8\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n`
    // A few hundred bytes into the kernel's buffer, then the descriptor is given back at once.
    socket.end(head + body, () => socket.destroy())
  }

  /** No traffic on `socket` for idleMs: closed unless a request on it is being worked on. */
  #timedOut(socket: Socket): void {
    const c = this.#connections.get(socket)
    if (c !== undefined && c.inflight > 0 && socket.writableLength === 0) return
    this.#connectionsClosed.inc({ reason: c !== undefined && c.inflight > 0 ? 'stalled' : 'idle' })
    socket.destroy()
  }

  /** Counts the request in: serve it, refuse it with an error answer, or drop it (its socket destroyed). */
  #admit(raw: IncomingMessage, reply: FastifyReply): 'serve' | 'drop' | RillError {
    const socket = raw.socket
    let c = this.#connections.get(socket)
    if (c === undefined) {
      c = new Connection(socket)
      this.#connections.set(socket, c)
      const connection = c
      socket.once('close', () => this.#closed(connection))
    }
    const charge = new Charge(c)
    c.inflight++
    c.charges.add(charge)
    this.#charges.set(raw, charge)
    reply.raw.once('close', () => this.#release(charge))
    reply.raw.once('finish', () => this.#release(charge))
    const max = this.#limits.requestsInflightPerConnectionMax
    if (c.inflight < max) return 'serve'
    // At the cap: read no more requests from this client until its answers go out.
    if (!c.paused) {
      c.paused = true
      socket.pause()
    }
    if (c.inflight === max) return 'serve'
    c.refused++
    c.closing = true
    if (c.refused > max) {
      // A client that keeps pipelining past its refusals: each costs memory, none is read.
      this.#refusals.inc({ reason: 'destroyed' })
      socket.destroy()
      return 'drop'
    }
    this.#refusals.inc({ reason: 'inflight' })
    reply.header('connection', 'close')
    return overloaded(`more than ${max} requests in flight on one connection: read the answers before sending more; this connection closes`)
  }

  /** A charge that may still be answered; throws when its client is gone. */
  #liveCharge(raw: IncomingMessage): Charge {
    const charge = this.#charges.get(raw)
    if (charge === undefined) throw new RillError(ErrorCode.INTERNAL, 'request not admitted by the connection guard')
    if (charge.connection.closed || charge.connection.socket.destroyed) {
      throw overloaded('the client closed its connection: nothing is built for it')
    }
    return charge
  }

  #setCharge(charge: Charge, bytes: number): void {
    if (!charge.connection.charges.has(charge)) return
    const delta = bytes - charge.bytes
    charge.bytes = bytes
    charge.connection.answerBytes += delta
    this.#answerBytes += delta
  }

  /** The response is done (written, or its socket gone). Idempotent. */
  #release(charge: Charge): void {
    const c = charge.connection
    if (!c.charges.delete(charge)) return
    c.inflight--
    c.answerBytes -= charge.bytes
    this.#answerBytes -= charge.bytes
    charge.bytes = 0
    if (c.paused && !c.closing && !c.closed && c.inflight < this.#limits.requestsInflightPerConnectionMax) {
      c.paused = false
      c.socket.resume()
    }
  }

  /** The client left (or was told to): everything its connection held is released at once. */
  #closed(c: Connection): void {
    c.closed = true
    for (const charge of [...c.charges]) this.#release(charge)
  }
}

function overloaded(message: string): RillError {
  return new RillError(ErrorCode.OVERLOADED, message)
}

/** Bytes an answer's payload takes (fastify hands onSend a string, a buffer, or nothing). */
function payloadBytes(payload: unknown): number {
  if (typeof payload === 'string') return Buffer.byteLength(payload)
  if (payload instanceof Uint8Array) return payload.byteLength
  return 0
}
