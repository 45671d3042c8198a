/**
 * The cluster as a client sees it: brokers (with racks) and, per topic, each
 * partition's leader and replicas, from `GET /v1/metadata` on any broker.
 *
 * Refreshed when it is older than `maxAgeMs`, and on demand when a client
 * learns it is wrong (NOT_LEADER, UNKNOWN_PARTITION, a broker that stopped
 * answering). Refreshes are single-flight and at most one per
 * `refreshMinIntervalMs`, so a hundred partitions failing together cause one
 * request, not a hundred. A NOT_LEADER that names the leader updates the
 * cache at once, without a request.
 */
import type { BrokerRef, MetadataResponse, PartitionMetadata } from '../src/wire/index.ts'
import { ClientErrorCode, RillClientError } from './errors.ts'
import type { HttpTransport } from './http.ts'

/** A broker as metadata describes it. */
export interface BrokerInfo extends BrokerRef {
  readonly rack: string | null
  /** The controller has not heard from it lately. */
  readonly fenced: boolean
}

export interface TopicInfo {
  readonly name: string
  /** Index = partition number. */
  readonly partitions: readonly PartitionMetadata[]
  readonly internal: boolean
}

/** One refresh's view. */
export interface ClusterMetadata {
  readonly brokers: ReadonlyMap<number, BrokerInfo>
  readonly topics: ReadonlyMap<string, TopicInfo>
  readonly controllerLeader: number | null
  /** `Date.now()` when it was fetched. */
  readonly fetchedAtMs: number
}

export interface MetadataOptions {
  /** Broker URLs to start from; asked when no broker learned from metadata answers. */
  readonly bootstrap: readonly string[]
  /** Metadata older than this is refreshed before use (ms). */
  readonly maxAgeMs: number
  /** Least time between two refreshes (ms): refreshes asked for sooner share the last one. */
  readonly refreshMinIntervalMs: number
  /** Timeout of one metadata request (ms). */
  readonly requestTimeoutMs: number
}

/** Brokers asked during one refresh: bootstrap plus known brokers, bounded. */
const refreshBrokersMax = 16

export class MetadataCache {
  readonly #http: HttpTransport
  readonly #options: MetadataOptions
  #current: ClusterMetadata | null = null
  /** Topic/partition -> leader learned from a NOT_LEADER answer after the last refresh. */
  readonly #leaderHints = new Map<string, BrokerRef>()
  #refreshing: Promise<ClusterMetadata> | null = null
  #lastRefreshMs = 0
  /** Rotates the first broker asked, so one dead broker does not cost every refresh a timeout. */
  #nextBroker = 0

  constructor(http: HttpTransport, options: MetadataOptions) {
    if (options.bootstrap.length === 0) throw new RillClientError(ClientErrorCode.INVALID_REQUEST, 'brokers: give at least one broker URL')
    for (const url of options.bootstrap) checkUrl(url)
    this.#http = http
    this.#options = options
  }

  /** The last metadata fetched, or null before the first refresh. */
  get current(): ClusterMetadata | null {
    return this.#current
  }

  /** Metadata no older than `maxAgeMs`. */
  async get(): Promise<ClusterMetadata> {
    const m = this.#current
    if (m !== null && Date.now() - m.fetchedAtMs < this.#options.maxAgeMs) return m
    return this.refresh()
  }

  /**
   * Fetches metadata from the first broker that answers (known brokers
   * first, then bootstrap). Shares a refresh under way, and returns the
   * current metadata if the last refresh ended under `refreshMinIntervalMs`
   * ago (unless `force`).
   */
  refresh(options: { force?: boolean } = {}): Promise<ClusterMetadata> {
    if (this.#refreshing !== null) return this.#refreshing
    const m = this.#current
    if (m !== null && options.force !== true && Date.now() - this.#lastRefreshMs < this.#options.refreshMinIntervalMs) return Promise.resolve(m)
    this.#refreshing = this.#fetch().finally(() => {
      this.#refreshing = null
      this.#lastRefreshMs = Date.now()
    })
    return this.#refreshing
  }

  /** The topic, refreshing once if it is unknown; UNKNOWN_TOPIC if it still is. */
  async topic(name: string): Promise<TopicInfo> {
    let t = (await this.get()).topics.get(name)
    if (t === undefined) t = (await this.refresh()).topics.get(name)
    if (t === undefined) throw new RillClientError(ClientErrorCode.UNKNOWN_TOPIC, `no topic "${name}"`, { status: 404, retriable: false })
    return t
  }

  /** The leader of a partition as far as we know: a NOT_LEADER hint, else metadata; null during an election or when unknown. */
  leader(topic: string, partition: number): BrokerRef | null {
    const hint = this.#leaderHints.get(hintKey(topic, partition))
    if (hint !== undefined) return hint
    const m = this.#current
    const id = m?.topics.get(topic)?.partitions[partition]?.leader
    if (m === null || id === null || id === undefined) return null
    return m.brokers.get(id) ?? null
  }

  /** Remembers the leader a NOT_LEADER answer named (until the next refresh). */
  noteLeader(topic: string, partition: number, leader: BrokerRef): void {
    checkUrl(leader.url)
    if (this.#leaderHints.size >= leaderHintsMax) this.#leaderHints.clear()
    this.#leaderHints.set(hintKey(topic, partition), { id: leader.id, url: leader.url })
  }

  /** Forgets a leader that turned out wrong or unreachable, so the next lookup uses fresh metadata. */
  forgetLeader(topic: string, partition: number): void {
    this.#leaderHints.delete(hintKey(topic, partition))
  }

  async #fetch(): Promise<ClusterMetadata> {
    const urls = this.#candidates()
    let lastError: unknown = null
    for (const url of urls) {
      try {
        const answer = await this.#http.request<MetadataResponse>({ url, method: 'GET', path: '/v1/metadata', timeoutMs: this.#options.requestTimeoutMs })
        const m = parseMetadata(answer)
        this.#current = m
        this.#leaderHints.clear()
        return m
      } catch (error) {
        if (error instanceof RillClientError && error.code === ClientErrorCode.CLOSED) throw error
        lastError = error
      }
    }
    // A TLS failure is a configuration error: said as it is, not as a retriable UNREACHABLE.
    if (lastError instanceof RillClientError && lastError.code === ClientErrorCode.TLS_ERROR) throw lastError
    throw new RillClientError(ClientErrorCode.UNREACHABLE, `no broker answered metadata (asked ${urls.join(', ')})`, { cause: lastError })
  }

  /** Known brokers (rotated) then bootstrap URLs not among them, at most `refreshBrokersMax`. */
  #candidates(): string[] {
    const known = [...(this.#current?.brokers.values() ?? [])].filter((b) => !b.fenced).map((b) => b.url)
    const start = known.length === 0 ? 0 : this.#nextBroker++ % known.length
    const rotated = [...known.slice(start), ...known.slice(0, start)]
    const all = [...new Set([...rotated, ...this.#options.bootstrap])]
    return all.slice(0, refreshBrokersMax)
  }
}

/** NOT_LEADER hints kept between refreshes (one per partition; a refresh clears them). */
const leaderHintsMax = 100_000

function hintKey(topic: string, partition: number): string {
  return `${partition}/${topic}`
}

function checkUrl(url: string): void {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw new RillClientError(ClientErrorCode.INVALID_REQUEST, `broker URL "${url}" is not a URL`, { retriable: false })
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new RillClientError(ClientErrorCode.INVALID_REQUEST, `broker URL "${url}" must be http(s)://host:port`, { retriable: false })
  }
}

/** Checks the answer's shape (a broker of another version, or not a broker) and indexes it. */
function parseMetadata(answer: MetadataResponse): ClusterMetadata {
  if (answer === null || typeof answer !== 'object' || !Array.isArray(answer.brokers) || !Array.isArray(answer.topics)) {
    throw new RillClientError(ClientErrorCode.BAD_RESPONSE, 'metadata answer without brokers and topics')
  }
  const brokers = new Map<number, BrokerInfo>()
  for (const b of answer.brokers) {
    brokers.set(b.id, { id: b.id, url: b.url.replace(/\/+$/, ''), rack: b.rack ?? null, fenced: b.fenced === true })
  }
  const topics = new Map<string, TopicInfo>()
  for (const t of answer.topics) {
    const partitions = [...t.partitions].sort((a, b) => a.partition - b.partition)
    topics.set(t.name, { name: t.name, partitions, internal: t.internal === true })
  }
  return { brokers, topics, controllerLeader: answer.controller?.leader ?? null, fetchedAtMs: Date.now() }
}
