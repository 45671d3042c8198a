/**
 * What the producer and consumer share: a transport (pools, msgpack,
 * errors), a metadata cache bootstrapped from a list of broker URLs, and a
 * way to send a request to "any broker that answers".
 */
import { ClientErrorCode, RillClientError } from './errors.ts'
import { HttpTransport, defaultHttpOptions, type ClientTlsOptions, type HttpRequest } from './http.ts'
import { MetadataCache } from './metadata.ts'

export interface ClientOptions {
  /** Broker URLs to bootstrap from (`http://host:port`); one is enough, more survive one being down. A string may list several, comma-separated. */
  readonly brokers: string | readonly string[]
  /** Sent as `user-agent`. */
  readonly clientId?: string
  /** Timeout of one request (ms). */
  readonly requestTimeoutMs?: number
  /** Metadata is refreshed before use when older than this (ms), and whenever a request shows it wrong. */
  readonly metadataMaxAgeMs?: number
  /** Kept-alive connections per broker. */
  readonly connectionsPerBroker?: number
  /** For https:// brokers: the cluster's CA (`ca`) and, for brokers that ask, a client certificate (`cert`, `key`); PEM contents. */
  readonly tls?: ClientTlsOptions
  /** A bearer token (`rill acl token create`), sent as `authorization: Bearer TOKEN` to brokers started with `--auth required`. */
  readonly token?: string
}

export const defaultClientOptions = {
  clientId: 'rill-client',
  requestTimeoutMs: 30_000,
  metadataMaxAgeMs: 60_000,
  /** Least time between two metadata refreshes (ms). */
  metadataRefreshMinIntervalMs: 50,
  connectionsPerBroker: defaultHttpOptions.connectionsPerBroker,
} as const

/** Bootstrap URLs accepted (a typo'd list of thousands is a bug, not a cluster). */
const bootstrapUrlsMax = 256

export class RillClient {
  readonly http: HttpTransport
  readonly metadata: MetadataCache
  readonly bootstrap: readonly string[]
  readonly requestTimeoutMs: number
  #closed = false

  constructor(options: ClientOptions) {
    this.bootstrap = parseBrokers(options.brokers)
    this.requestTimeoutMs = options.requestTimeoutMs ?? defaultClientOptions.requestTimeoutMs
    this.http = new HttpTransport({
      clientId: options.clientId ?? defaultClientOptions.clientId,
      requestTimeoutMs: this.requestTimeoutMs,
      connectionsPerBroker: options.connectionsPerBroker ?? defaultClientOptions.connectionsPerBroker,
      ...(options.tls === undefined ? {} : { tls: options.tls }),
      ...(options.token === undefined ? {} : { token: options.token }),
    })
    this.metadata = new MetadataCache(this.http, {
      bootstrap: this.bootstrap,
      maxAgeMs: options.metadataMaxAgeMs ?? defaultClientOptions.metadataMaxAgeMs,
      refreshMinIntervalMs: defaultClientOptions.metadataRefreshMinIntervalMs,
      requestTimeoutMs: this.requestTimeoutMs,
    })
  }

  get closed(): boolean {
    return this.#closed
  }

  /** Sends a request to one broker URL. */
  request<T>(req: HttpRequest): Promise<T> {
    return this.http.request<T>(req)
  }

  /**
   * Sends a request that any broker can answer (producer ids, topic admin,
   * group calls routed by the broker): known brokers first, then bootstrap,
   * moving on when one does not answer. A broker's error answer is thrown
   * at once.
   */
  async requestAny<T>(req: Omit<HttpRequest, 'url'>): Promise<T> {
    const known = [...(this.metadata.current?.brokers.values() ?? [])].filter((b) => !b.fenced).map((b) => b.url)
    const urls = [...new Set([...known, ...this.bootstrap])]
    let lastError: unknown = null
    for (const url of urls.slice(0, bootstrapUrlsMax)) {
      try {
        return await this.http.request<T>({ ...req, url })
      } catch (error) {
        if (!(error instanceof RillClientError) || error.status !== 0 || error.code === ClientErrorCode.CLOSED) throw error
        lastError = error
      }
    }
    if (lastError instanceof RillClientError && lastError.code === ClientErrorCode.TLS_ERROR) throw lastError
    throw new RillClientError(ClientErrorCode.UNREACHABLE, `${req.method} ${req.path}: no broker answered (asked ${urls.join(', ')})`, { cause: lastError })
  }

  /** Closes every connection; later requests fail with CLOSED. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.http.close()
  }
}

/** `brokers` as a list of base URLs without trailing slashes; INVALID_REQUEST when empty or too long. */
export function parseBrokers(brokers: string | readonly string[]): string[] {
  const list = typeof brokers === 'string' ? brokers.split(',') : [...brokers]
  const urls = list.map((u) => String(u).trim().replace(/\/+$/, '')).filter((u) => u.length > 0)
  if (urls.length === 0) throw new RillClientError(ClientErrorCode.INVALID_REQUEST, 'brokers: give at least one broker URL', { retriable: false })
  if (urls.length > bootstrapUrlsMax) {
    throw new RillClientError(ClientErrorCode.INVALID_REQUEST, `brokers: at most ${bootstrapUrlsMax} URLs, got ${urls.length}`, { retriable: false })
  }
  return [...new Set(urls)]
}
