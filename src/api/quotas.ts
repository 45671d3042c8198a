/**
 * Client quotas (issue 10; DESIGN.md decision 12): bytes per second and
 * requests per second per client, for produce and fetch, enforced as Kafka
 * does — by DELAYING the answer, never by dropping the request.
 *
 *   answer ready ──charge(key: bytes, 1 request)──▶ token buckets of the key
 *                 ──debt? hold = debt / rate (≤ throttleMsMax)──▶ runtime.sleep ──▶ sent,
 *                                                      with `x-rill-throttle-ms: hold`
 *
 * Each key (quotaKeyOf: the principal, or the client's address until client
 * authentication exists) has a token bucket per configured limit: it refills
 * at the quota's rate up to one second's worth (the burst) and is charged
 * after the fact, so it may go into debt. The hold is the time the refill
 * takes to pay the debt back, i.e. the delay that brings the client back
 * under its quota (Kafka's throttle_time_ms); the client is told it in the
 * `x-rill-throttle-ms` header of every answer of a quota'd route. Debt is
 * capped at `throttleMsMax` worth of refill, so a client that stops is
 * whole again within that bound, and no answer is ever held longer.
 *
 * What is counted: produce — the request body bytes (its Content-Length, or
 * the bytes received when sent chunked); fetch — the answer body bytes;
 * requests — every produce and fetch request. The produce is written before
 * its answer is held (as in Kafka): a held answer is a write that happened.
 *
 * Bounds: at most `keysMax` keys are tracked (least recently used first out;
 * an idle key — buckets full again, nothing held — is forgotten first, which
 * changes nothing since a new key starts full); at most `heldAnswersMax`
 * answers (`heldBytesMax` bytes) are held at once in the process and
 * `heldAnswersPerKeyMax` per key. A request from a key that is in debt while those are full is refused
 * before it is served: 429 THROTTLED (retriable; `Retry-After`, details
 * `throttleMs`) — it changes nothing. A held answer is released at once when
 * its client goes away or the server closes (the bound of a stop).
 *
 * Time and timers come from the Runtime seam (tests pass a virtual clock).
 */
import { Transform, pipeline } from 'node:stream'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Counter, Gauge, type Registry } from 'prom-client'
import { assert, ErrorCode, RillError, type Runtime } from '../base/index.ts'

/** Which quota'd exchange a route is: its body bytes count against that byte quota. */
export type QuotaKind = 'produce' | 'fetch'

/** The quotas of one broker; null is unlimited. Every key gets the same quotas (per broker, as in Kafka). */
export interface QuotaConfig {
  /** Produce request body bytes per second per key. */
  readonly produceBytesPerSecond: number | null
  /** Fetch answer body bytes per second per key. */
  readonly fetchBytesPerSecond: number | null
  /** Produce and fetch requests per second per key. */
  readonly requestsPerSecond: number | null
  /** Longest an answer is held, ms; also the most debt a key can run up (in refill time). */
  readonly throttleMsMax: number
  /** Keys tracked at once (least recently used forgotten beyond). */
  readonly keysMax?: number
  /** Answers held at once in this process. */
  readonly heldAnswersMax?: number
  /** Answers held at once for one key. */
  readonly heldAnswersPerKeyMax?: number
  /** Bytes of answers held at once in this process (a held fetch answer keeps its records). */
  readonly heldBytesMax?: number
}

/** Default longest hold: well inside the SDKs' 30 s request timeout and the CLI's 10 s. */
export const throttleMsMaxDefault = 5_000
/** The longest hold a broker may be configured with: below every client timeout of this project (the CLI's 10 s). */
export const throttleMsMaxLimit = 10_000
/** Keys tracked by default (≈ 200 bytes each). */
export const quotaKeysMaxDefault = 10_000
/** Answers held at once in the process, by default. */
export const heldAnswersMaxDefault = 1_024
/** Answers held at once per key, by default (an SDK producer keeps a few requests in flight per partition). */
export const heldAnswersPerKeyMaxDefault = 256
/** Bytes of answers held at once in the process, by default. */
export const heldBytesMaxDefault = 256 * 1024 * 1024
/** A bucket holds one second of its rate (Kafka measures rates over windows of about a second). */
const burstSeconds = 1
/** Idle keys looked at (and forgotten) per new key: the sweep's work per request is bounded. */
const idleSweepMax = 4

/** No limit: the default. `installQuotas` installs nothing for it. */
export const unlimitedQuotas: QuotaConfig = {
  produceBytesPerSecond: null,
  fetchBytesPerSecond: null,
  requestsPerSecond: null,
  throttleMsMax: throttleMsMaxDefault,
}

/** The response header that tells a client how long its answer was held, ms (Kafka's throttle_time_ms). */
export const throttleHeader = 'x-rill-throttle-ms'

/** Route `config` marking a route as quota'd (fastify route options): `{ config: quotaRoute.produce }`. */
export const quotaRoute = {
  produce: { quota: 'produce' as QuotaKind },
  fetch: { quota: 'fetch' as QuotaKind },
} as const

/**
 * The key a request's quotas are kept under: its authenticated principal
 * when client authentication is on, else the address it connects from.
 * The one place that decides it (wiring the principal is this function).
 */
export function quotaKeyOf(request: FastifyRequest): string {
  const principal = (request as { principal?: unknown }).principal
  if (typeof principal === 'string' && principal.length > 0) return `principal:${principal}`
  return `address:${request.ip ?? 'unknown'}`
}

/** `principal` or `address`: the metric label of a key (never the key itself: addresses are unbounded). */
function keyKindOf(key: string): 'principal' | 'address' {
  return key.startsWith('principal:') ? 'principal' : 'address'
}

/**
 * A token bucket that may go into debt: refills at `ratePerSecond` up to
 * `burst` tokens, is charged after the fact, and never owes more than
 * `debtMax` tokens. Times are the caller's clock in ms (never backwards).
 */
export class TokenBucket {
  readonly ratePerSecond: number
  readonly burst: number
  readonly debtMax: number
  #tokens: number
  #lastMs: number

  constructor(options: { ratePerSecond: number; burst: number; debtMax: number; nowMs: number }) {
    assert(options.ratePerSecond > 0 && Number.isFinite(options.ratePerSecond), `quota rate must be positive, got ${options.ratePerSecond}`)
    assert(options.burst > 0 && options.debtMax >= 0, 'quota burst must be positive and debt not negative')
    this.ratePerSecond = options.ratePerSecond
    this.burst = options.burst
    this.debtMax = options.debtMax
    this.#tokens = options.burst
    this.#lastMs = options.nowMs
  }

  /** Tokens now (negative: debt). */
  tokens(nowMs: number): number {
    this.#refill(nowMs)
    return this.#tokens
  }

  /** Takes `amount` tokens (going into debt if need be, at most `debtMax`). */
  charge(amount: number, nowMs: number): void {
    assert(amount >= 0, `quota charge must not be negative, got ${amount}`)
    this.#refill(nowMs)
    this.#tokens = Math.max(this.#tokens - amount, -this.debtMax)
  }

  /** Ms until the debt is paid back (0 without debt): how long to hold the answer. */
  throttleMs(nowMs: number): number {
    this.#refill(nowMs)
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.ratePerSecond) * 1000)
  }

  /** Full again: forgetting this bucket changes nothing. */
  isFull(nowMs: number): boolean {
    this.#refill(nowMs)
    return this.#tokens >= this.burst
  }

  #refill(nowMs: number): void {
    const elapsedMs = nowMs - this.#lastMs
    if (elapsedMs <= 0) return
    this.#tokens = Math.min(this.burst, this.#tokens + (this.ratePerSecond * elapsedMs) / 1000)
    this.#lastMs = nowMs
  }
}

/** One key's buckets and its held answers. */
interface QuotaEntry {
  readonly produce: TokenBucket | null
  readonly fetch: TokenBucket | null
  readonly requests: TokenBucket | null
  held: number
}

/** What one answer is charged. */
export interface QuotaCharge {
  readonly kind: QuotaKind
  readonly bytes: number
  readonly requests: number
}

/**
 * The per-key buckets of one broker, bounded to `keysMax` keys: pure state
 * over a clock, no timers (installQuotas holds the answers).
 */
export class QuotaTable {
  readonly config: QuotaConfig
  readonly keysMax: number
  readonly #clock: { nowMs(): number }
  /** Key → entry, least recently used first (Map order; a touch moves a key to the end). */
  readonly #entries = new Map<string, QuotaEntry>()
  /** Keys forgotten while not idle (their debt forgiven): the bound was too small for the clients. */
  evictedBusy = 0

  constructor(config: QuotaConfig, clock: { nowMs(): number }) {
    this.config = config
    this.keysMax = config.keysMax ?? quotaKeysMaxDefault
    assert(this.keysMax >= 1, 'keysMax must be at least 1')
    assert(config.throttleMsMax >= 1, 'throttleMsMax must be at least 1 ms')
    this.#clock = clock
  }

  /** Keys tracked now. */
  get size(): number {
    return this.#entries.size
  }

  /** True when any quota is set (otherwise nothing needs tracking). */
  get enabled(): boolean {
    const c = this.config
    return c.produceBytesPerSecond !== null || c.fetchBytesPerSecond !== null || c.requestsPerSecond !== null
  }

  /** Charges `charge` to `key` and answers how long to hold its answer, ms (≤ throttleMsMax). */
  charge(key: string, charge: QuotaCharge): number {
    const nowMs = this.#clock.nowMs()
    const entry = this.entry(key)
    entry[charge.kind]?.charge(charge.bytes, nowMs)
    entry.requests?.charge(charge.requests, nowMs)
    return this.throttleMs(key, charge.kind)
  }

  /** How long an answer of `kind` to `key` would be held now, ms (0 for a key not tracked). */
  throttleMs(key: string, kind: QuotaKind): number {
    const entry = this.#entries.get(key)
    if (entry === undefined) return 0
    const nowMs = this.#clock.nowMs()
    const ms = Math.max(entry[kind]?.throttleMs(nowMs) ?? 0, entry.requests?.throttleMs(nowMs) ?? 0)
    return Math.min(ms, this.config.throttleMsMax)
  }

  /** The entry of `key`, created (full) when new; touching it makes it the most recently used. */
  entry(key: string): QuotaEntry {
    let entry = this.#entries.get(key)
    if (entry !== undefined) {
      this.#entries.delete(key)
      this.#entries.set(key, entry)
      return entry
    }
    this.#sweep()
    entry = this.#newEntry()
    this.#entries.set(key, entry)
    return entry
  }

  /** Forgets idle keys at the old end (a few per call), then the least recently used while over the bound. */
  #sweep(): void {
    const nowMs = this.#clock.nowMs()
    let looked = 0
    for (const [key, entry] of this.#entries) {
      if (looked++ >= idleSweepMax) break
      if (!this.#idle(entry, nowMs)) break
      this.#entries.delete(key)
    }
    while (this.#entries.size >= this.keysMax) {
      const [key, entry] = this.#entries.entries().next().value as [string, QuotaEntry]
      if (!this.#idle(entry, nowMs)) this.evictedBusy++
      this.#entries.delete(key)
    }
  }

  #idle(entry: QuotaEntry, nowMs: number): boolean {
    if (entry.held > 0) return false
    return (entry.produce?.isFull(nowMs) ?? true) && (entry.fetch?.isFull(nowMs) ?? true) && (entry.requests?.isFull(nowMs) ?? true)
  }

  #newEntry(): QuotaEntry {
    const nowMs = this.#clock.nowMs()
    const bucket = (rate: number | null): TokenBucket | null =>
      rate === null
        ? null
        : new TokenBucket({ ratePerSecond: rate, burst: Math.max(1, rate * burstSeconds), debtMax: (rate * this.config.throttleMsMax) / 1000, nowMs })
    return { produce: bucket(this.config.produceBytesPerSecond), fetch: bucket(this.config.fetchBytesPerSecond), requests: bucket(this.config.requestsPerSecond), held: 0 }
  }
}

/** Metrics of throttling, in the API's registry. */
class QuotaMetrics {
  readonly throttleSeconds: Counter<'kind' | 'key'>
  readonly throttled: Counter<'kind' | 'key'>
  readonly refused: Counter<'kind' | 'key'>
  readonly keys: Gauge
  readonly held: Gauge

  constructor(registry: Registry, table: QuotaTable, heldNow: () => number) {
    const registers = [registry]
    this.throttleSeconds = new Counter({
      name: 'rill_quota_throttle_seconds_total',
      help: 'Time answers were held for quotas, by route kind (produce, fetch) and key kind (principal, address)',
      labelNames: ['kind', 'key'] as const,
      registers,
    })
    this.throttled = new Counter({
      name: 'rill_quota_throttled_total',
      help: 'Answers held for quotas, by route kind and key kind',
      labelNames: ['kind', 'key'] as const,
      registers,
    })
    this.refused = new Counter({
      name: 'rill_quota_refused_total',
      help: 'Requests refused 429 THROTTLED (key in debt while the held answers were at their bound), by route kind and key kind',
      labelNames: ['kind', 'key'] as const,
      registers,
    })
    this.keys = new Gauge({ name: 'rill_quota_keys', help: 'Quota keys tracked', registers, collect: () => this.keys.set(table.size) })
    this.held = new Gauge({ name: 'rill_quota_held_answers', help: 'Answers held for quotas now', registers, collect: () => this.held.set(heldNow()) })
  }
}

export interface InstallQuotasOptions {
  readonly config: QuotaConfig
  readonly runtime: Runtime
  /** Where the quota metrics go (the API's registry, served on /metrics). */
  readonly registry: Registry
  /** Largest request body (charged when a Content-Length claims more). */
  readonly bodyBytesMax: number
}

/** Per-request state, on the request (fastify decorates nothing: a WeakMap keeps it private). */
interface RequestQuota {
  /**
   * quotaKeyOf(request), taken before the handler and again when the answer
   * is charged: late, so an authentication hook registered after these
   * (onRequest or preValidation) has set the principal by then.
   */
  key: string
  readonly kind: QuotaKind
  /** Body bytes counted as they arrived (chunked bodies); null when Content-Length said. */
  bodyBytes: number | null
  refused: boolean
}

/**
 * Enforces `config` on the routes marked with `quotaRoute` (route config):
 * hooks only, so routes need nothing else. Installs nothing when no quota
 * is set. Returns the table (tests and metrics read it).
 */
export function installQuotas(app: FastifyInstance, options: InstallQuotasOptions): QuotaTable | null {
  const table = new QuotaTable(options.config, options.runtime)
  if (!table.enabled) return null
  const heldMax = options.config.heldAnswersMax ?? heldAnswersMaxDefault
  const heldPerKeyMax = options.config.heldAnswersPerKeyMax ?? heldAnswersPerKeyMaxDefault
  const heldBytesMax = options.config.heldBytesMax ?? heldBytesMaxDefault
  /** Bytes of the answers held now. */
  const heldBytes = { now: 0 }
  const states = new WeakMap<FastifyRequest, RequestQuota>()
  /** Held answers' wake-ups: all run when the server closes. */
  const holds = new Set<() => void>()
  const metrics = new QuotaMetrics(options.registry, table, () => holds.size)

  app.addHook('onRequest', async (request) => {
    const kind = (request.routeOptions.config as { quota?: QuotaKind } | undefined)?.quota
    if (kind === undefined) return
    states.set(request, { key: '', kind, bodyBytes: null, refused: false })
  })
  // Chunked bodies have no Content-Length: count what arrives (fastify's body limit still applies downstream).
  app.addHook('preParsing', async (request, _reply, payload) => {
    const state = states.get(request)
    if (state === undefined || request.headers['content-length'] !== undefined) return payload
    state.bodyBytes = 0
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        state.bodyBytes! += chunk.length
        done(null, chunk)
      },
    })
    // pipeline, not pipe: a client that aborts mid-body fails the parse instead of leaving it waiting.
    return pipeline(payload, counter, () => {})
  })
  // Before the handler: a key in debt whose held answers are at their bound is refused, changing nothing.
  app.addHook('preHandler', async (request) => {
    const state = states.get(request)
    if (state === undefined) return
    state.key = quotaKeyOf(request)
    const throttleMs = table.throttleMs(state.key, state.kind)
    if (throttleMs === 0) return
    if (table.entry(state.key).held < heldPerKeyMax && holds.size < heldMax && heldBytes.now < heldBytesMax) return
    state.refused = true
    metrics.refused.inc({ kind: state.kind, key: keyKindOf(state.key) })
    const bound = `${heldPerKeyMax} answers held for one client, ${heldMax} or ${heldBytesMax} bytes in all`
    throw new RillError(ErrorCode.THROTTLED, `over quota while as many answers are held as the broker holds (${bound}): retry in ${throttleMs} ms`, {
      details: { throttleMs },
    })
  })
  app.addHook('onSend', async (request, reply, payload) => {
    const state = states.get(request)
    if (state === undefined) return payload
    if (state.refused) {
      reply.header('retry-after', String(Math.max(1, Math.ceil(table.throttleMs(state.key, state.kind) / 1000))))
      return payload
    }
    state.key = quotaKeyOf(request)
    const bytes = state.kind === 'produce' ? requestBytes(request, state, options.bodyBytesMax) : payloadBytes(payload)
    const holdMs = table.charge(state.key, { kind: state.kind, bytes, requests: 1 })
    reply.header(throttleHeader, String(holdMs))
    if (holdMs > 0) await hold({ table, state, request, reply, holdMs, holds, heldBytes, bytes: payloadBytes(payload), runtime: options.runtime, metrics })
    return payload
  })
  // Held answers go out at once when the server stops: a stop is not held up by quotas.
  app.addHook('preClose', async () => {
    for (const wake of [...holds]) wake()
  })
  return table
}

/** Holds one answer for `holdMs` on the runtime's clock, or until its client goes away or the server closes. */
async function hold(h: {
  table: QuotaTable
  state: RequestQuota
  request: FastifyRequest
  reply: FastifyReply
  holdMs: number
  holds: Set<() => void>
  heldBytes: { now: number }
  /** The answer's bytes (held in memory meanwhile). */
  bytes: number
  runtime: Runtime
  metrics: QuotaMetrics
}): Promise<void> {
  // A client already gone has nobody to slow down (and would hold nothing but memory).
  if (h.reply.raw.destroyed || h.request.raw.socket?.destroyed === true) return
  const entry = h.table.entry(h.state.key)
  const labels = { kind: h.state.kind, key: keyKindOf(h.state.key) }
  const abort = new AbortController()
  const wake = (): void => abort.abort()
  const startMs = h.runtime.nowMs()
  entry.held++
  h.heldBytes.now += h.bytes
  h.holds.add(wake)
  h.reply.raw.once('close', wake)
  try {
    await h.runtime.sleep(h.holdMs, abort.signal)
  } finally {
    entry.held--
    h.heldBytes.now -= h.bytes
    h.holds.delete(wake)
    h.reply.raw.off('close', wake)
    h.metrics.throttled.inc(labels)
    h.metrics.throttleSeconds.inc(labels, (h.runtime.nowMs() - startMs) / 1000)
  }
}

/** A produce's request body bytes: its Content-Length (at most the body bound), or what was counted. */
function requestBytes(request: FastifyRequest, state: RequestQuota, bodyBytesMax: number): number {
  if (state.bodyBytes !== null) return state.bodyBytes
  const declared = Number(request.headers['content-length'])
  return Number.isSafeInteger(declared) && declared > 0 ? Math.min(declared, bodyBytesMax) : 0
}

/** An answer's body bytes as fastify sends it (a string, a buffer, or nothing). */
function payloadBytes(payload: unknown): number {
  if (typeof payload === 'string') return Buffer.byteLength(payload)
  if (payload instanceof Uint8Array) return payload.byteLength
  return 0
}
