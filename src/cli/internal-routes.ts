/**
 * The broker-to-broker HTTP routes (`/internal/v1/...`: registration
 * forwarding, the leadership poll, the offsets topic), as one encapsulated
 * fastify plugin whose hooks authenticate every request that reaches one of
 * its routes (DESIGN.md decision 12: authorization per route, never by
 * matching URL strings).
 *
 *   request ─▶ router matches a route of this plugin, whatever the spelling
 *              (/%69nternal/..., http://x/internal/..., ?query, ...)
 *           ─▶ onRequest: MAC headers present and well formed
 *           ─▶ body kept as the raw bytes received (no parse yet)
 *           ─▶ preValidation: MAC over (time, nonce, method, the ROUTE's path,
 *              raw bytes); a (time, nonce) seen before is refused (replay);
 *              only then is the body parsed as JSON
 *           ─▶ handler (refuses to run for a request the hook did not pass)
 *
 * The path under the MAC is the route's own path (`routeOptions.url`), not
 * the request target: every spelling the router maps to this route is
 * checked as the one the sender signed. The body under the MAC is the bytes
 * as received, not a re-encoding of their parse (JSON.stringify of a parse
 * is not the bytes signed: key order, escapes and numbers can differ).
 *
 * Before: a global hook tested `request.url.startsWith('/internal/')`, while
 * the router matches the decoded path, so `POST /%69nternal/v1/brokers` and
 * `POST http://x/internal/v1/brokers` reached the handler unauthenticated and
 * moved brokers to a dead address (issue 10, hole 1).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ErrorCode, RillError } from '../base/index.ts'
import { ReplayCache, checkInternalRequest, incarnationPattern, internalHeadersWellFormed } from '../broker/index.ts'
import type { BrokerRegistration, ControllerCall, IdentityAnswer, Leadership, SecurityCommand, TopicStatus } from '../broker/index.ts'
import { CommandType, parseCommand, principal as checkPrincipal, topicName } from '../controller/index.ts'
import type { CreateTopicRequest } from '../wire/index.ts'

/** What the internal routes call on the broker. */
export interface InternalService {
  /** A topic change or security command forwarded by another broker (which authorized its client): run it here. */
  runControllerCall(call: ControllerCall): Promise<void>
  /** Bootstrap: a token for `principal`, asked for with the cluster secret (`rill acl token create --secret-file`). */
  createToken(principal: string): Promise<{ id: string; principal: string; createdMs: number; token: string }>
  registerBroker(request: BrokerRegistration): Promise<void>
  localLeaderships(): Leadership[]
  createOffsetsTopic(): Promise<void>
  /** This broker's answer to an identity challenge (the controller leader asks before moving a registration). */
  identity(nonce: string): IdentityAnswer
  /** This broker's view of a topic: known here, and the leader each replica hosted here follows (readiness after a create). */
  topicStatus(name: string): TopicStatus
}

export interface InternalRoutesOptions {
  /** The cluster secret the MAC is made with. */
  readonly secret: Uint8Array
  readonly service: InternalService
  /** The offsets topic's name and partition count (the answer of its route). */
  readonly offsetsTopic: { readonly name: string; readonly partitions: number }
  /** Requests already accepted (default: a new cache of `replayEntriesMax`). */
  readonly replay?: ReplayCache
}

function unauthorized(why: string): RillError {
  return new RillError(ErrorCode.UNAUTHORIZED, `internal route: ${why}`)
}

/** Registers the internal routes on `app`, in their own encapsulated context. */
export async function registerInternalRoutes(app: FastifyInstance, options: InternalRoutesOptions): Promise<void> {
  await app.register(async (internal) => internalRoutes(internal, options))
}

function internalRoutes(internal: FastifyInstance, options: InternalRoutesOptions): void {
  const { secret, service } = options
  const replay = options.replay ?? new ReplayCache()
  /** Requests whose MAC was checked: a handler runs only for these. */
  const authenticated = new WeakSet<FastifyRequest>()

  // Keep the bytes as received, whatever the content type; parse only after the MAC is checked.
  internal.removeAllContentTypeParsers()
  internal.addContentTypeParser('*', { parseAs: 'buffer' }, (_request, body, done) => done(null, body))

  // Cheap refusal before the body is read.
  internal.addHook('onRequest', async (request) => {
    if (!internalHeadersWellFormed(request.headers)) throw unauthorized('bad or missing cluster MAC')
  })
  internal.addHook('preValidation', async (request) => {
    const path = request.routeOptions.url
    if (path === undefined) throw unauthorized('no route')
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    const refusal = checkInternalRequest({ secret, replay, headers: request.headers, method: request.method, path, body: raw })
    if (refusal !== null) throw unauthorized(refusal)
    authenticated.add(request)
    if (raw.byteLength === 0) {
      request.body = null
      return
    }
    try {
      request.body = JSON.parse(raw.toString('utf8')) as unknown
    } catch {
      throw new RillError(ErrorCode.INVALID_REQUEST, 'internal route: body is not JSON')
    }
  })
  /** The handler's own check that the hook ran: a route added where the hooks do not reach fails closed. */
  const checked = (request: FastifyRequest): void => {
    if (!authenticated.has(request)) throw new RillError(ErrorCode.INTERNAL, `internal route ${request.routeOptions.url ?? '?'} reached without authentication`)
  }

  internal.post('/internal/v1/brokers', async (request, reply) => {
    checked(request)
    await service.registerBroker(parseRegistration(request.body))
    reply.code(204)
    return null
  })
  internal.get('/internal/v1/leaderships', async (request) => {
    checked(request)
    return { leaderships: service.localLeaderships() }
  })
  // The controller leader asks a broker to prove who it is before moving its registration.
  internal.post('/internal/v1/identity', async (request) => {
    checked(request)
    const nonce = (request.body as { nonce?: unknown } | null)?.nonce
    if (typeof nonce !== 'string' || !incarnationPattern.test(nonce)) throw new RillError(ErrorCode.INVALID_REQUEST, 'identity challenge needs { nonce: 32 hex digits }')
    return service.identity(nonce)
  })
  // The broker answering a topic create asks every broker whether the topic is usable there yet.
  internal.post('/internal/v1/topic-status', async (request) => {
    checked(request)
    return service.topicStatus(topicName((request.body as { name?: unknown } | null)?.name))
  })
  // Topic changes and token/ACL changes another broker forwards to the controller leader.
  internal.post('/internal/v1/controller', async (request, reply) => {
    checked(request)
    await service.runControllerCall(parseControllerCall(request.body))
    reply.code(204)
    return null
  })
  // Bootstrap: whoever holds the cluster secret (and, under TLS, a certificate of the CA) may issue a token.
  internal.post('/internal/v1/tokens', async (request, reply) => {
    checked(request)
    const body = request.body as { principal?: unknown } | null
    const created = await service.createToken(checkPrincipal(body?.principal))
    reply.code(201)
    return created
  })
  // Another broker's group request found no offsets topic: create it here (we lead the controller).
  internal.post('/internal/v1/offsets-topic', async (request) => {
    checked(request)
    await service.createOffsetsTopic()
    return { name: options.offsetsTopic.name, partitions: options.offsetsTopic.partitions }
  })
}

const securityCommands: ReadonlySet<string> = new Set([CommandType.CreateToken, CommandType.RevokeToken, CommandType.AddAcl, CommandType.RemoveAcl])

/** A forwarded controller call, shape-checked (it is authenticated, but checked as any input). */
function parseControllerCall(value: unknown): ControllerCall {
  const body = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>
  switch (body['kind']) {
    case 'createTopic': {
      const r = (typeof body['request'] === 'object' && body['request'] !== null ? body['request'] : {}) as Record<string, unknown>
      const { name, partitions, replicationFactor, config } = r
      if (!Number.isSafeInteger(partitions) || !Number.isSafeInteger(replicationFactor) || (config !== undefined && (typeof config !== 'object' || config === null))) {
        throw new RillError(ErrorCode.INVALID_REQUEST, 'createTopic needs { name, partitions, replicationFactor, config? }')
      }
      const request = { name: topicName(name), partitions: partitions as number, replicationFactor: replicationFactor as number }
      return { kind: 'createTopic', request: config === undefined ? request : { ...request, config: config as NonNullable<CreateTopicRequest['config']> } }
    }
    case 'deleteTopic':
      return { kind: 'deleteTopic', name: topicName(body['name']) }
    case 'security': {
      const command = parseCommand(body['command'])
      if (!securityCommands.has(command.type)) throw new RillError(ErrorCode.INVALID_REQUEST, `not a security command: ${command.type}`)
      return { kind: 'security', command: command as SecurityCommand }
    }
    default:
      throw new RillError(ErrorCode.INVALID_REQUEST, 'controller call needs kind createTopic, deleteTopic or security')
  }
}

function parseRegistration(value: unknown): BrokerRegistration {
  const body = value as { id?: unknown; httpUrl?: unknown; peerUrl?: unknown; rack?: unknown; incarnation?: unknown } | null
  if (
    body === null ||
    typeof body !== 'object' ||
    !Number.isSafeInteger(body.id) ||
    typeof body.httpUrl !== 'string' ||
    typeof body.peerUrl !== 'string' ||
    typeof body.incarnation !== 'string' ||
    !incarnationPattern.test(body.incarnation) ||
    (body.rack !== undefined && typeof body.rack !== 'string')
  ) {
    throw new RillError(ErrorCode.INVALID_REQUEST, 'registration needs { id, httpUrl, peerUrl, incarnation (32 hex digits), rack? }')
  }
  return {
    id: body.id as number,
    httpUrl: body.httpUrl,
    peerUrl: body.peerUrl,
    incarnation: body.incarnation,
    ...(body.rack === undefined ? {} : { rack: body.rack as string }),
  }
}
