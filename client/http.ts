/**
 * HTTP to the brokers: one undici `Pool` of kept-alive connections per
 * broker URL, msgpack bodies both ways (the API's binary form: keys, values
 * and record batches travel as bytes), every request with a timeout.
 *
 *   request({ url, method, path, body }) ──▶ pool(url) ──▶ broker
 *       2xx            → the decoded answer
 *       error body     → RillClientError(code, status, details)   (NOT_LEADER carries `leader`)
 *       no answer      → RillClientError UNREACHABLE / TIMEOUT    (retriable; the request may have been applied)
 *
 * undici's `Pool` rather than the global `fetch`: fetch retries a 421 by
 * itself on a new connection (docs/api.md), and the SDKs follow NOT_LEADER
 * themselves.
 *
 * https:// brokers (`--tls-*` on the broker): `tls.ca` is the cluster's CA
 * certificate the brokers' certificates are checked against (and each must
 * name the host in its URL); `tls.cert` + `tls.key` are a client certificate
 * for brokers that ask for one. A failed handshake is a TLS_ERROR saying
 * what to change, never retried.
 */
import { Pool } from 'undici'
import { Packr, Unpackr } from 'msgpackr'
import { contentType } from '../src/wire/index.ts'
import { ClientErrorCode, RillClientError } from './errors.ts'

/** Plain maps, no msgpackr records: the same settings as the broker's edge (src/api/msgpack.ts). */
const packr = new Packr({ useRecords: false, moreTypes: false })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', moreTypes: false })

/** TLS settings for https:// brokers: PEM contents (e.g. `readFileSync('ca.crt')`), as node:tls takes them. */
export interface ClientTlsOptions {
  /** CA certificate(s) the brokers' certificates must chain to; without it, Node's built-in public CAs. */
  readonly ca?: string | Uint8Array | readonly (string | Uint8Array)[]
  /** Client certificate (PEM, leaf first), shown to brokers that ask for one (`--tls-client-auth`). */
  readonly cert?: string | Uint8Array
  /** The client certificate's private key (PEM). */
  readonly key?: string | Uint8Array
}

export interface HttpOptions {
  /** Longest a request may take, connect to last byte, unless the request says otherwise (ms). */
  readonly requestTimeoutMs: number
  /** Kept-alive connections per broker. Bounds the sockets; more requests queue in undici. */
  readonly connectionsPerBroker: number
  /** Requests in flight or queued over all brokers; one more waits in `request`, up to `requestWaitersMax`. */
  readonly requestsInFlightMax: number
  /** Callers waiting for a request slot; beyond it `request` throws BUSY. */
  readonly requestWaitersMax: number
  /** Largest answer body accepted (bytes); a fetch answer is at most 16 MiB of batches. */
  readonly responseBytesMax: number
  /** Distinct broker URLs with a pool; the least recently used pool is closed beyond it. */
  readonly poolsMax: number
  /** Sent as `user-agent`, so broker logs can tell clients apart. */
  readonly clientId: string
  /** TLS settings for https:// broker URLs (none by default). */
  readonly tls?: ClientTlsOptions
  /** Bearer token sent with every request (`authorization: Bearer TOKEN`); none by default. */
  readonly token?: string
}

export const defaultHttpOptions: HttpOptions = {
  requestTimeoutMs: 30_000,
  connectionsPerBroker: 8,
  requestsInFlightMax: 1024,
  requestWaitersMax: 65_536,
  responseBytesMax: 64 * 1024 * 1024,
  poolsMax: 256,
  clientId: 'rill-client',
}

/**
 * A msgpack map whose last field is a large byte string, as two chunks:
 * the encoded head (`{ ...fields, bytesKey: <bin header>`) and the bytes
 * themselves, written to the socket as they are. `packr.pack` would copy
 * them into a fresh buffer of their size (for a 1 MiB record batch: a
 * megabyte of new memory touched per request, and garbage for the GC).
 */
export class MsgpackWithBytes {
  readonly chunks: readonly Uint8Array[]
  readonly byteLength: number

  constructor(fields: Readonly<Record<string, unknown>>, bytesKey: string, bytes: Uint8Array) {
    const entries = Object.entries(fields)
    const count = entries.length + 1
    if (count > 15) throw new RillClientError(ClientErrorCode.INVALID_REQUEST, `MsgpackWithBytes: ${count} fields (a fixmap holds 15)`)
    const parts: Uint8Array[] = [Uint8Array.of(0x80 | count)]
    for (const [key, value] of entries) parts.push(packr.pack(key), packr.pack(value))
    parts.push(packr.pack(bytesKey), binHeader(bytes.byteLength))
    const head = Buffer.concat(parts)
    this.chunks = [head, bytes]
    this.byteLength = head.byteLength + bytes.byteLength
  }
}

/** msgpack bin 8/16/32 header for `length` bytes. */
function binHeader(length: number): Uint8Array {
  if (length < 0x100) return Uint8Array.of(0xc4, length)
  if (length < 0x10000) return Uint8Array.of(0xc5, length >> 8, length & 0xff)
  const out = new Uint8Array(5)
  out[0] = 0xc6
  new DataView(out.buffer).setUint32(1, length)
  return out
}

export interface HttpRequest {
  /** Broker base URL, `http://host:port`. */
  readonly url: string
  readonly method: 'GET' | 'POST' | 'PUT' | 'DELETE'
  /** Path and query, `/v1/...`. */
  readonly path: string
  /** Sent as msgpack when given (a MsgpackWithBytes as its chunks). */
  readonly body?: unknown
  /** This request's timeout (a long-poll's wait plus margin); `requestTimeoutMs` when absent. */
  readonly timeoutMs?: number
  /** Aborts the request (it fails with CLOSED). */
  readonly signal?: AbortSignal
}

/** Pools per broker URL, the request bound, msgpack coding and error mapping. */
export class HttpTransport {
  readonly options: HttpOptions
  /** URL -> pool, in least-recently-used order (Map iteration order). */
  readonly #pools = new Map<string, Pool>()
  #inFlight = 0
  readonly #waiters: (() => void)[] = []
  #closed = false

  constructor(options: Partial<HttpOptions> = {}) {
    this.options = { ...defaultHttpOptions, ...options }
    checkTls(this.options.tls)
    checkToken(this.options.token)
    for (const [name, value] of Object.entries(this.options)) {
      if (name !== 'clientId' && name !== 'tls' && name !== 'token' && !(typeof value === 'number' && Number.isSafeInteger(value) && value > 0)) {
        throw new RillClientError(ClientErrorCode.INVALID_REQUEST, `${name} must be a positive integer, got ${String(value)}`)
      }
    }
  }

  /** Sends one request and decodes the answer; throws RillClientError. */
  async request<T>(req: HttpRequest): Promise<T> {
    if (this.#closed) throw closedError()
    await this.#acquire()
    try {
      return (await this.#send(req)) as T
    } finally {
      this.#release()
    }
  }

  /** Closes every pool: requests under way fail with CLOSED (or UNREACHABLE), later ones with CLOSED. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const wake of this.#waiters.splice(0)) wake()
    const pools = [...this.#pools.values()]
    this.#pools.clear()
    await Promise.all(pools.map((p) => p.destroy().catch(() => undefined)))
  }

  async #acquire(): Promise<void> {
    if (this.#inFlight < this.options.requestsInFlightMax) {
      this.#inFlight++
      return
    }
    if (this.#waiters.length >= this.options.requestWaitersMax) {
      throw new RillClientError(ClientErrorCode.BUSY, `more than ${this.options.requestWaitersMax} requests waiting for a slot`)
    }
    await new Promise<void>((resolve) => this.#waiters.push(resolve))
    if (this.#closed) throw closedError()
    this.#inFlight++
  }

  #release(): void {
    this.#inFlight--
    this.#waiters.shift()?.()
  }

  #pool(url: string): Pool {
    let pool = this.#pools.get(url)
    if (pool !== undefined) {
      this.#pools.delete(url)
      this.#pools.set(url, pool)
      return pool
    }
    pool = new Pool(url, {
      connections: this.options.connectionsPerBroker,
      keepAliveTimeout: 30_000,
      connectTimeout: Math.min(10_000, this.options.requestTimeoutMs),
      ...(this.options.tls === undefined ? {} : { connect: tlsConnectOptions(this.options.tls) }),
    })
    this.#pools.set(url, pool)
    if (this.#pools.size > this.options.poolsMax) {
      const [oldestUrl, oldest] = this.#pools.entries().next().value as [string, Pool]
      this.#pools.delete(oldestUrl)
      void oldest.close().catch(() => undefined)
    }
    return pool
  }

  async #send(req: HttpRequest): Promise<unknown> {
    const timeoutMs = req.timeoutMs ?? this.options.requestTimeoutMs
    const timeout = AbortSignal.timeout(timeoutMs)
    const signal = req.signal === undefined ? timeout : AbortSignal.any([timeout, req.signal])
    const where = `${req.method} ${req.url}${req.path}`
    const headers: Record<string, string> = { accept: contentType.msgpack, 'user-agent': this.options.clientId }
    if (this.options.token !== undefined) headers['authorization'] = `Bearer ${this.options.token}`
    let body: Buffer | readonly Uint8Array[] | undefined
    if (req.body instanceof MsgpackWithBytes) {
      headers['content-type'] = contentType.msgpack
      headers['content-length'] = String(req.body.byteLength)
      body = req.body.chunks
    } else if (req.body !== undefined) {
      headers['content-type'] = contentType.msgpack
      body = packr.pack(req.body)
    }
    let status: number
    let type: string
    let bytes: Buffer
    try {
      const answer = await this.#pool(req.url).request({
        path: req.path,
        method: req.method,
        headers,
        // undici takes an iterable of chunks (documented; its types list only single buffers and streams).
        ...(body === undefined ? {} : { body: body as Buffer }),
        signal,
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      })
      status = answer.statusCode
      type = String(answer.headers['content-type'] ?? '')
      bytes = await readBody(answer.body, this.options.responseBytesMax, where)
    } catch (cause) {
      if (cause instanceof RillClientError) throw cause
      throw transportError(cause, { where, timeoutMs, aborted: req.signal?.aborted === true, closed: this.#closed })
    }
    const decoded = decode(bytes, type, status, where)
    if (status >= 200 && status < 300) return decoded
    throw answerError(decoded, status, where)
  }
}

/** Longest token accepted (a rill token is 65 characters). */
const tokenCharsMax = 512

/** Throws INVALID_REQUEST unless `token` is absent or one header-safe word (no spaces, no line breaks). */
function checkToken(token: string | undefined): void {
  if (token === undefined) return
  if (typeof token !== 'string' || !/^[\x21-\x7e]+$/.test(token) || token.length > tokenCharsMax) {
    throw new RillClientError(ClientErrorCode.INVALID_REQUEST, `token must be 1..${tokenCharsMax} printable characters without spaces (rill acl token create prints one)`, { retriable: false })
  }
}

/** Throws INVALID_REQUEST on a tls option node:tls would refuse later, less clearly (a key without a certificate, a wrong type). */
function checkTls(tls: ClientTlsOptions | undefined): void {
  if (tls === undefined) return
  const pem = (v: unknown): boolean => typeof v === 'string' || v instanceof Uint8Array
  const invalid = (message: string): RillClientError => new RillClientError(ClientErrorCode.INVALID_REQUEST, `tls: ${message}`, { retriable: false })
  if (tls === null || typeof tls !== 'object') throw invalid('must be an object { ca?, cert?, key? }')
  if (tls.ca !== undefined && !pem(tls.ca) && !(Array.isArray(tls.ca) && tls.ca.every(pem))) throw invalid('ca must be PEM text or bytes (or a list of them)')
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw invalid('cert and key go together')
  if (tls.cert !== undefined && (!pem(tls.cert) || !pem(tls.key))) throw invalid('cert and key must be PEM text or bytes')
}

function tlsConnectOptions(tls: ClientTlsOptions): { ca?: (string | Buffer)[]; cert?: string | Buffer; key?: string | Buffer } {
  const buf = (v: string | Uint8Array): string | Buffer => (typeof v === 'string' ? v : Buffer.from(v))
  const cas = tls.ca === undefined ? undefined : (Array.isArray(tls.ca) ? tls.ca : [tls.ca]).map(buf)
  return {
    ...(cas === undefined ? {} : { ca: cas }),
    ...(tls.cert === undefined ? {} : { cert: buf(tls.cert) }),
    ...(tls.key === undefined ? {} : { key: buf(tls.key) }),
  }
}

/** Certificate checks that failed on this side: the broker's certificate is not one `tls.ca` vouches for. */
const untrustedCodes: ReadonlySet<string> = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
])

/** A TLS failure (an error's `code`) as what to change, or null when `code` is not one (the CLI says the same). */
export function tlsHint(code: string): string | null {
  if (untrustedCodes.has(code)) return "the broker's certificate is not trusted: give the cluster's CA certificate (tls.ca; the CLI's --tls-ca FILE or RILL_TLS_CA)"
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return "the broker's certificate does not name the host in the URL: use a host it names, or reissue it"
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return "the broker's certificate is outside its validity period (or this machine's clock is wrong)"
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || code === 'ERR_SSL_PACKET_LENGTH_TOO_LONG') return 'the broker does not speak TLS at this address: use http://'
  if (/ALERT_(CERTIFICATE_REQUIRED|UNKNOWN_CA|BAD_CERTIFICATE|CERTIFICATE_UNKNOWN|HANDSHAKE_FAILURE)$/.test(code)) {
    return "the broker refused this client's certificate (or its absence): give one signed by the cluster's CA (tls.cert and tls.key; the CLI's --tls-cert and --tls-key)"
  }
  if (code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_') || code.startsWith('CERT_')) return 'the TLS handshake failed'
  return null
}

function closedError(): RillClientError {
  return new RillClientError(ClientErrorCode.CLOSED, 'the client is closed', { retriable: false })
}

/** Reads the whole body, refusing more than `bytesMax` (a bound on what one answer can make us hold). */
async function readBody(body: AsyncIterable<Buffer> & { destroy(error?: Error): unknown }, bytesMax: number, where: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of body) {
    total += chunk.length
    if (total > bytesMax) {
      body.destroy()
      throw new RillClientError(ClientErrorCode.BAD_RESPONSE, `${where}: answer larger than ${bytesMax} bytes`, { retriable: false })
    }
    chunks.push(chunk)
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total)
}

function decode(bytes: Buffer, type: string, status: number, where: string): unknown {
  if (bytes.length === 0) return null
  try {
    if (type.startsWith(contentType.msgpack)) return unpackr.unpack(bytes)
    if (type.startsWith(contentType.json)) return JSON.parse(bytes.toString('utf8'))
  } catch (cause) {
    throw new RillClientError(ClientErrorCode.BAD_RESPONSE, `${where}: HTTP ${status}, undecodable ${type} answer`, { status, cause })
  }
  throw new RillClientError(ClientErrorCode.BAD_RESPONSE, `${where}: HTTP ${status}, unexpected content type "${type}": ${bytes.toString('utf8', 0, 200)}`, { status })
}

/** An error answer `{ error: { code, message, ...details } }` as a RillClientError. */
function answerError(decoded: unknown, status: number, where: string): RillClientError {
  const error = (decoded as { error?: unknown } | null)?.error
  if (error === null || typeof error !== 'object') {
    return new RillClientError(ClientErrorCode.BAD_RESPONSE, `${where}: HTTP ${status} without an error body`, { status })
  }
  const { code, message, ...details } = error as { code?: unknown; message?: unknown; [k: string]: unknown }
  const known = typeof code === 'string' && Object.hasOwn(ClientErrorCode, code)
  return new RillClientError(known ? (code as ClientErrorCode) : ClientErrorCode.INTERNAL, `${String(code)}: ${String(message ?? '')}`, {
    status,
    details,
  })
}

/** undici's failures (connect refused, reset, timeouts, aborts) as RillClientErrors. */
function transportError(cause: unknown, context: { where: string; timeoutMs: number; aborted: boolean; closed: boolean }): RillClientError {
  if (context.aborted || context.closed) {
    return new RillClientError(ClientErrorCode.CLOSED, `${context.where}: aborted`, { cause, retriable: false })
  }
  const e = cause as { code?: string; name?: string; message?: string }
  const hint = typeof e.code === 'string' ? tlsHint(e.code) : null
  if (hint !== null) {
    return new RillClientError(ClientErrorCode.TLS_ERROR, `${context.where}: TLS: ${hint} (${e.code}: ${e.message ?? ''})`, { cause, retriable: false })
  }
  const timedOut =
    e.name === 'TimeoutError' ||
    e.code === 'UND_ERR_HEADERS_TIMEOUT' ||
    e.code === 'UND_ERR_BODY_TIMEOUT' ||
    e.code === 'UND_ERR_CONNECT_TIMEOUT' ||
    (e.code === 'UND_ERR_ABORTED' && e.name !== 'AbortError')
  if (timedOut) return new RillClientError(ClientErrorCode.TIMEOUT, `${context.where}: no answer within ${context.timeoutMs} ms`, { cause })
  return new RillClientError(ClientErrorCode.UNREACHABLE, `${context.where}: ${e.code ?? e.name ?? 'error'} ${e.message ?? ''}`.trim(), { cause })
}
