/**
 * The HTTP API of one broker (API.md): fastify routes over a BrokerService.
 *
 *   request ──content-type parser (JSON | msgpack)──▶ schema (no coercion, no unknown fields)
 *           ──▶ handler: edge checks (records.ts) ──▶ BrokerService ──▶ answer (JSON | msgpack)
 *   any throw ──▶ errors.ts: { error: { code, message, ... } } with the code's status
 *
 * Everything a request can get wrong is found before the broker is called,
 * so a refused request changes nothing. Produce on the topic route splits the
 * records by partition (murmur2 of the key, round-robin without) and, for
 * partitions another broker leads, forwards the checked batch to it, so a
 * curl user can produce through any broker. Its answer is per partition
 * (topic-produce.ts): 200 all written, 207 some, an error none.
 *
 * What connections may hold (requests in flight, bytes of answers not yet
 * written), how many there are and how long they may idle is bounded in
 * connections.ts, whose hooks run before any other.
 */
import type { ServerOptions as HttpsServerOptions } from 'node:https'
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import { ErrorCode, RillError, systemRuntime, timeoutSignal, type Runtime } from '../base/index.ts'
import { stageTrace } from '../base/stage-trace.ts'
import type { BrokerService } from './service.ts'
import {
  RoundRobinPartitioner,
  contentType,
  type BrokerRef,
  type CommitOffsetsRequest,
  type CreateTopicRequest,
  type CreateTopicResponse,
  type HeartbeatRequest,
  type JoinGroupRequest,
  type ProduceResponse,
  type RecordEncoding,
  type TopicDescription,
} from '../wire/index.ts'
import { invalidRequest, toErrorAnswer } from './errors.ts'
import { ConnectionGuard } from './connections.ts'
import { defaultApiLimits, defaultConnectionLimits, nameLengthMax, type ApiLimits, type ConnectionLimits } from './limits.ts'
import { ApiMetrics } from './metrics.ts'
import { answerClientError, answerNodeRefusalsInOurShape } from './http-edge.ts'
import { packAnswer, unpackBody, wantsMsgpack } from './msgpack.ts'
import { installQuotas, quotaRoute, unlimitedQuotas, type QuotaConfig } from './quotas.ts'
import {
  batchFromRecords,
  concatBatches,
  produceBatch,
  producerOf,
  recordInputs,
  recordsFrom,
  recordsToJsonOut,
  recordsToMsgpack,
  routeRecords,
  type ProduceBody,
} from './records.ts'
import * as schemas from './schemas.ts'
import { topicProduceAnswer } from './topic-produce.ts'
import { canDescribeTopic, registerAccess, type ApiAuth } from './auth.ts'
import { registerSecurityRoutes } from './security-routes.ts'

export interface ApiOptions {
  readonly service: BrokerService
  /** A pino logger (the broker's, with its id in context); none by default. */
  readonly logger?: FastifyBaseLogger
  readonly limits?: ApiLimits
  /** Bounds on what connections hold (in-flight requests, answer bytes) and on connections (count, idle and request time). */
  readonly connections?: ConnectionLimits
  /**
   * Forward topic-route produces for partitions led elsewhere to the leader
   * (one hop, never re-forwarded). Default true.
   */
  readonly forwardProduce?: boolean
  /**
   * Serve HTTPS with these node:https options (certificate, key, CA, client
   * certificate policy); plain HTTP without. `app.server` is then a
   * tls.Server whose context `setSecureContext` replaces (SIGHUP).
   */
  readonly https?: HttpsServerOptions
  /** How forwarded produces reach the leader (https with the cluster CA under TLS); the global fetch by default. */
  readonly forwardFetch?: ForwardFetch
  /** Produce and fetch quotas per client (quotas.ts); unlimited by default. */
  readonly quotas?: QuotaConfig
  /** Clock and timers (quota holds); the process's by default, a virtual one in tests. */
  readonly runtime?: Runtime
  /** Client authentication and ACLs (auth.ts); absent: every request is anonymous and allowed. */
  readonly auth?: ApiAuth
}

/**
 * Longest path parameter the router takes: a name (at most nameLengthMax) percent-encoded
 * three characters a byte, with room for member ids. Beyond it: 400 INVALID_REQUEST.
 */
const pathParamCharsMax = 3 * nameLengthMax

/** The part of fetch a forwarded produce needs. */
export type ForwardFetch = (
  url: string,
  init: { method: string; headers: Record<string, string>; body: Uint8Array; signal: AbortSignal },
) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>

/** Header marking a produce forwarded by another broker (it is not forwarded again). */
export const forwardedHeader = 'x-rill-forwarded'
/** Longest a forwarded produce may take: the partition's own commit wait plus a margin. */
const forwardTimeoutMs = 35_000

type Req = FastifyRequest
type Rep = FastifyReply

/** A decimal string (schema-checked) as a safe integer. */
function intParam(value: string, field: string): number {
  const n = Number(value)
  if (!Number.isSafeInteger(n)) throw invalidRequest(`${field}: ${value} is above 2^53 - 1`, field)
  return n
}

function optionalInt(value: string | undefined, field: string): number | undefined {
  return value === undefined ? undefined : intParam(value, field)
}

function isMsgpackRequest(request: Req): boolean {
  return (request.headers['content-type'] ?? '').startsWith(contentType.msgpack)
}

/** Sends `payload` with `status` as JSON or msgpack, as the client asked. */
function answer(request: Req, reply: Rep, status: number, payload: unknown): Rep {
  reply.code(status)
  if (wantsMsgpack(request.headers.accept, request.headers['content-type'])) {
    return reply.type(contentType.msgpack).send(packAnswer(payload))
  }
  return reply.type(contentType.json).send(payload)
}

/**
 * How loud a failed request is. A client decides how often it meets an
 * expected error (every 503 TIMEOUT was an error line with a stack, so a
 * client could flood the log): coded errors that are retriable (NOT_LEADER,
 * NO_QUORUM, TIMEOUT, ...) or the client's own (4xx) are debug lines with
 * code and message, no stack; a coded broker fault (STORAGE_*) is a warning
 * without a stack (its cause was logged where it happened); only the
 * unexpected — INTERNAL, or anything that is not a RillError — is an error
 * with its stack.
 */
function logRequestError(request: Req, error: unknown, status: number): void {
  const where = { method: request.method, route: request.routeOptions.url ?? null, status }
  if (error instanceof RillError && error.code !== ErrorCode.INTERNAL) {
    const line = { ...where, code: error.code, reason: error.message }
    if (error.retriable || status < 500) request.log.debug(line, 'request refused')
    else request.log.warn(line, 'request failed')
    return
  }
  if (status >= 500) request.log.error({ ...where, err: error }, 'request failed')
}

/** AJV keyword for byte fields of msgpack bodies: `{ binary: true }`. */
const binaryKeyword = {
  keyword: 'binary',
  schemaType: 'boolean' as const,
  errors: false as const,
  validate: (schema: boolean, data: unknown): boolean => !schema || data instanceof Uint8Array,
}

/** Builds the HTTP server over `service` (not listening: call `listen`, or `inject` in tests). */
export function buildApi(options: ApiOptions): FastifyInstance {
  const limits = options.limits ?? defaultApiLimits
  const service = options.service
  const metrics = new ApiMetrics()
  const connectionBounds = options.connections ?? defaultConnectionLimits
  const { node: nodeServerOptions, ...timeouts } = ConnectionGuard.serverOptions(connectionBounds)
  const app = Fastify({
    ...(options.https === undefined ? { http: nodeServerOptions } : { https: { ...options.https, ...nodeServerOptions } }),
    ...timeouts,
    ...(options.logger === undefined ? { logger: false } : { loggerInstance: options.logger }),
    bodyLimit: limits.bodyBytesMax,
    // A path parameter may be as long as the longest name (find-my-way's default, 100, made topics of
    // 101..249 characters creatable but unusable: 414 from the router). Longer ones are refused in our shape.
    routerOptions: { maxParamLength: pathParamCharsMax },
    // The router's own refusals (a bad %-escape, a parameter too long) answer in our error shape too.
    frameworkErrors: (error, request, reply) => {
      const { status, body } = toErrorAnswer(error, () => null)
      return answer(request, reply, status, body)
    },
    // Requests node's parser refuses answer in our error shape too (http-edge.ts; fastify's default has its own).
    clientErrorHandler: answerClientError,
    // One info line per request would flood a broker's log at produce rates: requests are logged at debug in onResponse, faults at error.
    logController: new LogController({ disableRequestLogging: true }),
    ajv: {
      customOptions: {
        coerceTypes: false,
        removeAdditional: false,
        useDefaults: false,
        allowUnionTypes: true,
        keywords: [binaryKeyword],
      },
    },
  }) as unknown as FastifyInstance

  // First: a request refused for what its connection holds costs nothing more (no other hook, no body read).
  const guard = new ConnectionGuard({ limits: connectionBounds, registry: metrics.registry, plaintext: options.https === undefined })
  guard.install(app, (request, reply, error) => {
    const { status, body } = toErrorAnswer(error, () => null)
    reply.header('retry-after', '1')
    answer(request, reply, status, body)
  })

  app.removeContentTypeParser('text/plain')
  app.addContentTypeParser(contentType.msgpack, { parseAs: 'buffer' }, (_request, body, done) => {
    try {
      done(null, unpackBody(body as Buffer))
    } catch (error) {
      done(error as Error, undefined)
    }
  })

  const resolveLeader = (leader: unknown): BrokerRef | null => resolveLeaderRef(service, leader)
  app.setErrorHandler((error, request, reply) => {
    const { status, body } = toErrorAnswer(error, resolveLeader)
    logRequestError(request, error, status)
    if (status === 503) reply.header('retry-after', '1')
    return answer(request, reply, status, body)
  })
  answerNodeRefusalsInOurShape(app)
  app.setNotFoundHandler((request, reply) => {
    const body = { error: { code: ErrorCode.INVALID_REQUEST, message: `no route ${request.method} ${request.url.split('?')[0]}` } }
    return answer(request, reply, 404, body)
  })
  app.addHook('onResponse', async (request, reply) => {
    const route = request.routeOptions.url ?? 'none'
    metrics.requests.inc({ method: request.method, route, status: String(reply.statusCode) })
    metrics.latency.observe({ method: request.method, route }, reply.elapsedTime / 1000)
    request.log.debug({ method: request.method, url: request.url, status: reply.statusCode, ms: reply.elapsedTime }, 'request')
    if (stageTrace.enabled) traceHttpStages(request, reply, route)
  })

  // ── access (auth.ts): authentication, the per-route table, audit; before any route so all inherit it ──
  registerAccess(app, options.auth)
  const visible = (request: Req, topic: string): boolean => canDescribeTopic(options.auth, request, topic)
  registerSecurityRoutes(app, service.security, answer)
  // ── end access ──

  // Quotas: hooks on the routes marked `config: quotaRoute.*` (installed before the routes, so they apply).
  installQuotas(app, { config: options.quotas ?? unlimitedQuotas, runtime: options.runtime ?? systemRuntime, registry: metrics.registry, bodyBytesMax: limits.bodyBytesMax })
  registerInfoRoutes(app, service, metrics, visible)
  registerTopicRoutes(app, service, visible)
  registerProduceRoutes(app, { service, limits, metrics, forward: options.forwardProduce ?? true, forwardFetch: options.forwardFetch ?? fetch })
  registerFetchRoute(app, { service, limits, metrics, guard })
  registerGroupRoutes(app, service, limits)
  return app
}

/** NOT_LEADER details carry a leader id (partition) or `{id, url}` (broker); answers always carry `{id, url}` or null. */
function resolveLeaderRef(service: BrokerService, leader: unknown): BrokerRef | null {
  if (typeof leader === 'object' && leader !== null && typeof (leader as BrokerRef).url === 'string') return leader as BrokerRef
  if (typeof leader !== 'number' || leader <= 0) return null
  try {
    const broker = service.metadata().brokers.find((b) => b.id === leader)
    return broker === undefined ? null : { id: broker.id, url: broker.url }
  } catch {
    return null
  }
}

/** Whether the request's principal may see a topic (auth.ts canDescribeTopic). */
type TopicVisibility = (request: Req, topic: string) => boolean

function registerInfoRoutes(app: FastifyInstance, service: BrokerService, metrics: ApiMetrics, visible: TopicVisibility): void {
  // The pid tells which process answers: `rill dev` checks it is the broker it started, not another cluster on the port.
  app.get('/health', { schema: { querystring: schemas.emptyQuery } }, async (request, reply) =>
    answer(request, reply, 200, { ok: true, broker: service.brokerId, pid: process.pid }),
  )
  app.get('/metrics', { schema: { querystring: schemas.emptyQuery } }, async (_request, reply) => {
    const { contentType: type, body } = await metrics.text(service.registry)
    return reply.type(type).send(body)
  })
  app.get('/v1/metadata', { schema: { querystring: schemas.emptyQuery } }, async (request, reply) => {
    const metadata = service.metadata()
    return answer(request, reply, 200, { ...metadata, topics: metadata.topics.filter((t) => visible(request, t.name)) })
  })
  app.post('/v1/producers', {
    schema: { body: schemas.initProducerBody, querystring: schemas.emptyQuery },
    // `curl -X POST .../v1/producers` sends no body: treat it as `{}`.
    preValidation: async (request) => {
      if (request.body === undefined || request.body === null) request.body = {}
    },
  }, async (request, reply) => answer(request, reply, 200, await service.newProducerId(request.principal)))
}

function registerTopicRoutes(app: FastifyInstance, service: BrokerService, visible: TopicVisibility): void {
  // 201 once the topic is usable on every broker (bounded; `ready` says whether it got there), unless `"wait": false`.
  app.post('/v1/topics', { schema: { body: schemas.createTopicBody, querystring: schemas.emptyQuery } }, async (request, reply) => {
    const { wait, ...create } = request.body as CreateTopicRequest & { wait?: boolean }
    const created = await service.createTopic(create)
    const ready = wait === false ? false : await service.waitTopicReady(created.name)
    const body: CreateTopicResponse = { ...created, ready }
    return answer(request, reply, 201, body)
  })
  app.get('/v1/topics', { schema: { querystring: schemas.emptyQuery } }, async (request, reply) => {
    const topics: TopicDescription[] = []
    for (const name of service.listTopics()) {
      if (!visible(request, name)) continue
      try {
        topics.push(service.describeTopic(name))
      } catch (error) {
        // Deleted between the list and the describe: not listed.
        if (!(error instanceof RillError && error.code === ErrorCode.UNKNOWN_TOPIC)) throw error
      }
    }
    return answer(request, reply, 200, { topics })
  })
  const topicRoute = { schema: { params: schemas.topicParams, querystring: schemas.emptyQuery } }
  app.get('/v1/topics/:topic', topicRoute, async (request, reply) => {
    const { topic } = request.params as { topic: string }
    return answer(request, reply, 200, service.describeTopic(topic))
  })
  app.delete('/v1/topics/:topic', topicRoute, async (request, reply) => {
    const { topic } = request.params as { topic: string }
    await service.deleteTopic(topic)
    return answer(request, reply, 200, { name: topic, deleted: true })
  })
}

interface ProduceContext {
  readonly service: BrokerService
  readonly limits: ApiLimits
  readonly metrics: ApiMetrics
  readonly forward: boolean
  readonly forwardFetch: ForwardFetch
}

/**
 * The produce body schema is per content type, and fastify skips it for a
 * request with no body (hence no content type): such a POST reached the
 * handler as `undefined` and answered 500 INTERNAL. Refused here instead.
 */
async function requireBody(request: Req): Promise<void> {
  if (request.body === undefined) throw invalidRequest('a produce needs a body: application/json or application/msgpack', 'body')
}

function registerProduceRoutes(app: FastifyInstance, ctx: ProduceContext): void {
  const { service, limits, metrics } = ctx
  app.post('/v1/topics/:topic/partitions/:p/records', {
    preValidation: requireBody,
    schema: { params: schemas.partitionParams, querystring: schemas.emptyQuery, body: schemas.produceBody },
    config: quotaRoute.produce,
  }, async (request, reply) => {
    if (stageTrace.enabled) stageTrace.report('http.produce_received_to_handler', reply.elapsedTime / 1000)
    const params = request.params as { topic: string; p: string }
    const partition = intParam(params.p, 'p')
    const body = request.body as ProduceBody
    const { batch, info } = produceBatch(body, isMsgpackRequest(request), limits.batch)
    const token = body.producerToken === undefined ? {} : { producerToken: body.producerToken }
    const outcome = await service.produce({ topic: params.topic, partition, batch, acks: body.acks ?? 'all', ...token, principal: request.principal })
    metrics.produceRecords.inc({ topic: params.topic }, info.recordCount)
    metrics.produceBytes.inc({ topic: params.topic }, batch.length)
    const result: ProduceResponse = { partition: outcome.partition, baseOffset: outcome.baseOffset, lastOffset: outcome.lastOffset }
    return answer(request, reply, 200, result)
  })

  const roundRobin = new RoundRobinPartitioner()
  app.post('/v1/topics/:topic/records', {
    preValidation: requireBody,
    schema: { params: schemas.topicParams, querystring: schemas.emptyQuery, body: schemas.produceBody },
    config: quotaRoute.produce,
  }, async (request, reply) => {
    const { topic } = request.params as { topic: string }
    const body = request.body as ProduceBody
    if (body.batch !== undefined) throw invalidRequest('a stored-format batch names its partition: POST it to /v1/topics/:topic/partitions/:p/records', 'batch')
    if (Object.keys(producerOf(body)).length > 0 || body.producerToken !== undefined) {
      throw invalidRequest('sequences are per partition: idempotent produce goes to /v1/topics/:topic/partitions/:p/records', 'producerId')
    }
    const records = recordInputs(body, isMsgpackRequest(request), limits.batch)
    const partitionCount = service.partitionCount(topic)
    // Every batch is built and checked before any is produced: a bad record refuses the whole request.
    const parts = routeRecords(records, partitionCount, roundRobin)
    const batches = parts.map((part) => batchFromRecords(part.records, {}, limits.batch))
    const acks = body.acks ?? 'all'
    const forwarded = request.headers[forwardedHeader] !== undefined
    // The leader authorizes a forwarded produce again: it goes with the client's credentials.
    const authorization = request.headers.authorization
    const settled = await Promise.allSettled(parts.map((part, i) => produceOrForward(ctx, { topic, partition: part.partition, batch: batches[i]!.batch, acks }, ctx.forward && !forwarded, authorization)))
    settled.forEach((s, i) => {
      if (s.status !== 'fulfilled') return
      metrics.produceRecords.inc({ topic }, batches[i]!.info.recordCount)
      metrics.produceBytes.inc({ topic }, batches[i]!.batch.length)
    })
    // One result per partition (issue 10, hole 7): written parts stay written; the answer names the failed ones and their records.
    const result = topicProduceAnswer(parts, settled, (leader) => resolveLeaderRef(service, leader))
    for (const error of result.unexpected) logRequestError(request, error, 500)
    return answer(request, reply, result.status, result.body)
  })
}

interface ProduceCallFields {
  readonly topic: string
  readonly partition: number
  readonly batch: Uint8Array
  readonly acks: 'all' | 'leader'
  /** Goes along when forwarded: the leader checks it as it would a client's. */
  readonly producerToken?: string
}

/** Produces here, or, when another broker leads the partition and forwarding is on, there (msgpack, the batch as is). */
async function produceOrForward(ctx: ProduceContext, call: ProduceCallFields, forward: boolean, authorization?: string): Promise<ProduceResponse> {
  try {
    return await ctx.service.produce(call)
  } catch (error) {
    if (!forward || !(error instanceof RillError) || error.code !== ErrorCode.NOT_LEADER) throw error
    const leader = resolveLeaderRef(ctx.service, error.details.leader)
    if (leader === null || leader.id === ctx.service.brokerId) throw error
    return forwardProduce(ctx.forwardFetch, leader, call, authorization)
  }
}

async function forwardProduce(forwardFetch: ForwardFetch, leader: BrokerRef, call: ProduceCallFields, authorization?: string): Promise<ProduceResponse> {
  const url = `${leader.url}/v1/topics/${encodeURIComponent(call.topic)}/partitions/${call.partition}/records`
  let response: Awaited<ReturnType<ForwardFetch>>
  try {
    response = await forwardFetch(url, {
      method: 'POST',
      headers: { 'content-type': contentType.msgpack, accept: contentType.json, [forwardedHeader]: '1', ...(authorization === undefined ? {} : { authorization }) },
      body: packAnswer({ batch: call.batch, acks: call.acks, ...(call.producerToken === undefined ? {} : { producerToken: call.producerToken }) }),
      signal: timeoutSignal(systemRuntime, forwardTimeoutMs),
    })
  } catch (cause) {
    throw new RillError(ErrorCode.TIMEOUT, `forwarding to leader ${leader.id} at ${leader.url} failed: ${(cause as Error).message}`, { cause })
  }
  const body = (await response.json().catch(() => null)) as { error?: { code: string; message: string } } & ProduceResponse
  if (response.ok && body !== null) return { partition: body.partition, baseOffset: body.baseOffset, lastOffset: body.lastOffset }
  const code = (body?.error?.code ?? ErrorCode.INTERNAL) as ErrorCode
  throw new RillError(code, `leader ${leader.id}: ${body?.error?.message ?? `HTTP ${response.status}`}`, { details: { ...(body?.error ?? {}), forwardedTo: leader } })
}

interface FetchQueryStrings {
  offset: string
  maxRecords?: string
  maxBytes?: string
  maxWaitMs?: string
  minCommitted?: string
  encoding?: RecordEncoding
  format?: 'records' | 'batches'
}

function positive(value: number | undefined, fallback: number, max: number, field: string): number {
  const n = value ?? fallback
  if (n < 1) throw invalidRequest(`${field} must be at least 1`, field)
  return Math.min(n, max)
}

interface FetchContext {
  readonly service: BrokerService
  readonly limits: ApiLimits
  readonly metrics: ApiMetrics
  readonly guard: ConnectionGuard
}

function registerFetchRoute(app: FastifyInstance, ctx: FetchContext): void {
  const { service, limits, metrics, guard } = ctx
  app.get('/v1/topics/:topic/partitions/:p/records', {
    schema: { params: schemas.partitionParams, querystring: schemas.fetchQuery },
    config: quotaRoute.fetch,
  }, async (request, reply) => {
    const params = request.params as { topic: string; p: string }
    const q = request.query as FetchQueryStrings
    const partition = intParam(params.p, 'p')
    const offset = intParam(q.offset, 'offset')
    const recordsMax = positive(optionalInt(q.maxRecords, 'maxRecords'), limits.fetchRecordsDefault, limits.fetchRecordsMax, 'maxRecords')
    const askedBytes = positive(optionalInt(q.maxBytes, 'maxBytes'), limits.fetchBytesDefault, limits.fetchBytesMax, 'maxBytes')
    const maxWaitMs = Math.min(optionalInt(q.maxWaitMs, 'maxWaitMs') ?? 0, limits.fetchWaitMsMax)
    const minCommitted = optionalInt(q.minCommitted, 'minCommitted')
    const msgpack = wantsMsgpack(request.headers.accept, undefined)
    if (q.format === 'batches' && !msgpack) throw invalidRequest('format=batches needs Accept: application/msgpack', 'format')
    // What the answer may hold of the connection's and the broker's memory for answers not yet written.
    const maxBytes = guard.grantFetch(request.raw, askedBytes)
    const outcome = await service.fetch({ topic: params.topic, partition, offset, maxBytes, maxWaitMs, ...(minCommitted === undefined ? {} : { minCommitted }) })
    if (stageTrace.enabled) fetchedAtMs.set(request, reply.elapsedTime)
    // The log returns at least one batch: charge what was read, and build nothing for a client that left.
    guard.fetched(request.raw, outcome.batches.reduce((n, b) => n + b.length, 0))
    const base = { partition: outcome.partition, highWatermark: outcome.highWatermark, logStartOffset: outcome.logStartOffset }
    if (q.format === 'batches') {
      const batches = concatBatches(outcome.batches)
      metrics.fetchBytes.inc({ topic: params.topic }, batches.length)
      return answer(request, reply, 200, { ...base, nextOffset: outcome.nextOffset, batches })
    }
    const { records, nextOffset } = recordsFrom({ batches: outcome.batches, offset, recordsMax, nextOffsetStored: outcome.nextOffset })
    metrics.fetchRecords.inc({ topic: params.topic }, records.length)
    metrics.fetchBytes.inc({ topic: params.topic }, outcome.batches.reduce((n, b) => n + b.length, 0))
    const out = msgpack ? recordsToMsgpack(records) : recordsToJsonOut(records, q.encoding ?? 'utf8')
    return answer(request, reply, 200, { ...base, records: out, nextOffset })
  })
}

/** RILL_TRACE_STAGES (bench/trace.ts): when a fetch's records were in hand, in `reply.elapsedTime` ms. */
const fetchedAtMs = new WeakMap<FastifyRequest, number>()

/** The HTTP edge's share of a record's time (bench/trace.ts): a produce from arrival to its answer written, a fetch from its records in hand to its answer written. */
function traceHttpStages(request: FastifyRequest, reply: FastifyReply, route: string): void {
  if (route !== '/v1/topics/:topic/partitions/:p/records') return
  if (request.method === 'POST') stageTrace.report('http.produce_received_to_sent', reply.elapsedTime / 1000)
  const fetched = fetchedAtMs.get(request)
  if (fetched !== undefined) stageTrace.report('http.fetch_records_to_sent', (reply.elapsedTime - fetched) / 1000)
}

function registerGroupRoutes(app: FastifyInstance, service: BrokerService, limits: ApiLimits): void {
  app.post('/v1/groups/:group/offsets', {
    schema: { params: schemas.groupParams, querystring: schemas.emptyQuery, body: schemas.commitOffsetsBody },
  }, async (request, reply) => {
    const { group } = request.params as { group: string }
    const { offsets } = request.body as CommitOffsetsRequest
    if (offsets.length > limits.groupOffsetsMax) {
      throw new RillError(ErrorCode.TOO_LARGE, `offsets: ${offsets.length} entries, above the limit of ${limits.groupOffsetsMax}`, {
        details: { field: 'offsets', limit: limits.groupOffsetsMax, actual: offsets.length },
      })
    }
    return answer(request, reply, 200, await service.groups.commit(group, request.body as CommitOffsetsRequest))
  })
  app.get('/v1/groups/:group/offsets', { schema: { params: schemas.groupParams, querystring: schemas.emptyQuery } }, async (request, reply) => {
    const { group } = request.params as { group: string }
    return answer(request, reply, 200, await service.groups.offsets(group))
  })
  app.get('/v1/groups/:group', { schema: { params: schemas.groupParams, querystring: schemas.emptyQuery } }, async (request, reply) => {
    const { group } = request.params as { group: string }
    return answer(request, reply, 200, await service.groups.describe(group))
  })
  app.post('/v1/groups/:group/members', {
    schema: { params: schemas.groupParams, querystring: schemas.emptyQuery, body: schemas.joinGroupBody },
  }, async (request, reply) => {
    const { group } = request.params as { group: string }
    return answer(request, reply, 200, await service.groups.join(group, request.body as JoinGroupRequest))
  })
  app.post('/v1/groups/:group/members/:memberId/heartbeat', {
    schema: { params: schemas.memberParams, querystring: schemas.emptyQuery, body: schemas.heartbeatBody },
  }, async (request, reply) => {
    const { group, memberId } = request.params as { group: string; memberId: string }
    return answer(request, reply, 200, await service.groups.heartbeat(group, memberId, request.body as HeartbeatRequest))
  })
  app.delete('/v1/groups/:group/members/:memberId', { schema: { params: schemas.memberParams, querystring: schemas.emptyQuery } }, async (request, reply) => {
    const { group, memberId } = request.params as { group: string; memberId: string }
    await service.groups.leave(group, memberId)
    return answer(request, reply, 200, {})
  })
}
