/**
 * Client authentication and authorization of the HTTP API, in one place:
 * the table of what every route needs, and the hooks that enforce it.
 *
 *   request ─▶ onRequest: the route's entry in `routeAccess` (none: 500, never served)
 *               open (/health) ──────────────────────────────▶ on
 *               internal (/internal/...) ─── MAC, internal-routes.ts ──▶ on
 *               else: Authorization: Bearer TOKEN ─▶ principal | 401
 *                     no header: client certificate of the CA (--tls-client-auth) ─▶ CN | 401
 *           ─▶ preValidation (body parsed): each check of the entry ─▶ allowed | 403 FORBIDDEN
 *           ─▶ handler; `request.principal` is the principal (null when auth is off)
 *   onResponse: one `"event":"audit"` line for admin routes (topics, ACLs,
 *               tokens) and for every refused request (at most
 *               `deniedAuditPerSecondMax` a second, the rest counted)
 *
 * With auth off (`--auth none`, the default) every request is anonymous and
 * allowed, as before; admin actions are still audited (principal null).
 * `buildApi` refuses to register a route missing from the table, and a test
 * checks every registered route has an entry: no route is added unchecked.
 */
import type { TLSSocket } from 'node:tls'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { ErrorCode, RillError, systemRuntime, type Runtime } from '../base/index.ts'
import type { Operation, Resource } from '../controller/index.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Who sent this request: the principal its bearer token or client
     * certificate authenticated; null when authentication is off (or on an
     * open or internal route). Set in onRequest, before any other hook of
     * the API runs on the body.
     */
    principal: string | null
  }
}

/** What the API needs to authenticate and authorize (a broker's Security, configured). */
export interface ApiAuth {
  /** `--auth required`: every request but open and internal routes must authenticate. */
  readonly required: boolean
  /** A client certificate of the CA authenticates its subject's CN (`--tls-client-auth optional|required`). */
  readonly certificates: boolean
  /** The principal of a bearer token, or null. */
  authenticate(token: string): string | null
  allows(principal: string, operation: Operation, resource: Resource): boolean
}

/** One authorization check: `operation` on `resource`; `orCluster`: the same operation on the cluster also allows it. */
export interface AccessCheck {
  readonly operation: Operation
  readonly resource: Resource
  readonly orCluster?: boolean
}

type Params = Record<string, string | undefined>

/** What a route needs. */
export type RouteAccess =
  /** Anyone, authenticated or not. */
  | { readonly kind: 'open' }
  /** Broker-to-broker: the cluster MAC (and a CA certificate under TLS), checked by internal-routes.ts. */
  | { readonly kind: 'internal'; readonly audit?: string; readonly auditResource?: (params: Params, body: unknown, query: Params) => string }
  /** Any authenticated principal; the handler may narrow what it shows (`canDescribeTopic`). */
  | { readonly kind: 'authenticated' }
  /** Every check allowed; `audit` names the admin action logged for it. */
  | { readonly kind: 'checked'; readonly checks: (params: Params, body: unknown) => AccessCheck[]; readonly audit?: string; readonly auditResource?: (params: Params, body: unknown, query: Params) => string }

const topic = (name: string | undefined): Resource => ({ type: 'topic', name: name ?? '' })
const group = (name: string | undefined): Resource => ({ type: 'group', name: name ?? '' })
const cluster: Resource = { type: 'cluster', name: 'cluster' }
const field = (body: unknown, key: string): string | undefined => {
  const v = typeof body === 'object' && body !== null ? (body as Record<string, unknown>)[key] : undefined
  return typeof v === 'string' ? v : undefined
}
/** An ACL (from a body or a query) as the audit line's resource: `acl:principal/type/name/pattern/operation`. */
const aclText = (from: unknown): string =>
  `acl:${['principal', 'resourceType', 'resourceName', 'patternType', 'operation'].map((k) => field(from, k) ?? '?').join('/')}`

/** Topics a member subscribes to (join, or a heartbeat that changes the subscription): each needs consume. */
function subscribedTopics(body: unknown): string[] {
  const topics = typeof body === 'object' && body !== null ? (body as { topics?: unknown }).topics : undefined
  if (!Array.isArray(topics)) return []
  return [...new Set(topics.slice(0, 10_000).filter((t): t is string => typeof t === 'string'))]
}

/** Topics named in an offset commit (each needs consume: Kafka's READ on the topic). */
function committedTopics(body: unknown): string[] {
  const offsets = typeof body === 'object' && body !== null ? (body as { offsets?: unknown }).offsets : undefined
  if (!Array.isArray(offsets)) return []
  const topics = new Set<string>()
  for (const o of offsets.slice(0, 10_000)) if (typeof o === 'object' && o !== null && typeof (o as { topic?: unknown }).topic === 'string') topics.add((o as { topic: string }).topic)
  return [...topics]
}

/**
 * Every route of the API and what it needs: `METHOD path` as registered
 * (HEAD is GET's). docs/api.md has the same table for people.
 */
export const routeAccess: Readonly<Record<string, RouteAccess>> = {
  'GET /health': { kind: 'open' },
  'GET /metrics': { kind: 'checked', checks: () => [{ operation: 'describe', resource: cluster }] },
  // Topics the principal may not describe are left out of the answer (handler).
  'GET /v1/metadata': { kind: 'authenticated' },
  'GET /v1/whoami': { kind: 'authenticated' },
  // Ids are cheap and useless without produce rights on a topic.
  'POST /v1/producers': { kind: 'authenticated' },
  'POST /v1/topics': {
    kind: 'checked',
    checks: (_p, body) => [{ operation: 'create', resource: topic(field(body, 'name')), orCluster: true }],
    audit: 'topic.create',
    auditResource: (_p, body) => `topic:${field(body, 'name') ?? '?'}`,
  },
  'GET /v1/topics': { kind: 'authenticated' },
  'GET /v1/topics/:topic': { kind: 'checked', checks: (p) => [{ operation: 'describe', resource: topic(p.topic) }] },
  'DELETE /v1/topics/:topic': {
    kind: 'checked',
    checks: (p) => [{ operation: 'delete', resource: topic(p.topic), orCluster: true }],
    audit: 'topic.delete',
    auditResource: (p) => `topic:${p.topic ?? '?'}`,
  },
  'POST /v1/topics/:topic/records': { kind: 'checked', checks: (p) => [{ operation: 'produce', resource: topic(p.topic) }] },
  'POST /v1/topics/:topic/partitions/:p/records': { kind: 'checked', checks: (p) => [{ operation: 'produce', resource: topic(p.topic) }] },
  'GET /v1/topics/:topic/partitions/:p/records': { kind: 'checked', checks: (p) => [{ operation: 'consume', resource: topic(p.topic) }] },
  'POST /v1/groups/:group/offsets': {
    kind: 'checked',
    checks: (p, body) => [{ operation: 'read', resource: group(p.group) }, ...committedTopics(body).map((t) => ({ operation: 'consume' as const, resource: topic(t) }))],
  },
  'GET /v1/groups/:group/offsets': { kind: 'checked', checks: (p) => [{ operation: 'describe', resource: group(p.group) }] },
  'GET /v1/groups/:group': { kind: 'checked', checks: (p) => [{ operation: 'describe', resource: group(p.group) }] },
  'POST /v1/groups/:group/members': {
    kind: 'checked',
    checks: (p, body) => [{ operation: 'read', resource: group(p.group) }, ...subscribedTopics(body).map((t) => ({ operation: 'consume' as const, resource: topic(t) }))],
  },
  'POST /v1/groups/:group/members/:memberId/heartbeat': {
    kind: 'checked',
    checks: (p, body) => [{ operation: 'read', resource: group(p.group) }, ...subscribedTopics(body).map((t) => ({ operation: 'consume' as const, resource: topic(t) }))],
  },
  'DELETE /v1/groups/:group/members/:memberId': { kind: 'checked', checks: (p) => [{ operation: 'read', resource: group(p.group) }] },
  'POST /v1/acl/tokens': {
    kind: 'checked',
    checks: () => [{ operation: 'alter', resource: cluster }],
    audit: 'token.create',
    auditResource: (_p, body) => `principal:${field(body, 'principal') ?? '?'}`,
  },
  'GET /v1/acl/tokens': { kind: 'checked', checks: () => [{ operation: 'describe', resource: cluster }] },
  'DELETE /v1/acl/tokens/:id': { kind: 'checked', checks: () => [{ operation: 'alter', resource: cluster }], audit: 'token.revoke', auditResource: (p) => `token:${p.id ?? '?'}` },
  'POST /v1/acls': { kind: 'checked', checks: () => [{ operation: 'alter', resource: cluster }], audit: 'acl.add', auditResource: (_p, body) => aclText(body) },
  'GET /v1/acls': { kind: 'checked', checks: () => [{ operation: 'describe', resource: cluster }] },
  'DELETE /v1/acls': { kind: 'checked', checks: () => [{ operation: 'alter', resource: cluster }], audit: 'acl.remove', auditResource: (_p, _b, query) => aclText(query) },
  'POST /internal/v1/brokers': { kind: 'internal' },
  'GET /internal/v1/leaderships': { kind: 'internal' },
  'POST /internal/v1/identity': { kind: 'internal' },
  'POST /internal/v1/offsets-topic': { kind: 'internal' },
  'POST /internal/v1/controller': { kind: 'internal' },
  'POST /internal/v1/topic-status': { kind: 'internal' },
  'POST /internal/v1/tokens': { kind: 'internal', audit: 'token.create', auditResource: (_p, body) => `principal:${field(body, 'principal') ?? '?'}` },
}

/** The table's key of a route (HEAD routes fastify adds for GET are GET's). */
export function routeKey(method: string, url: string): string {
  return `${method === 'HEAD' ? 'GET' : method} ${url}`
}

/** Refused (denied or unauthenticated) audit lines at most per second; the rest are counted into the next line. */
export const deniedAuditPerSecondMax = 50
/** Longest Authorization header looked at. */
const authorizationCharsMax = 512

/** What the hooks note on a request for the audit line. */
interface AuditNote {
  denied: boolean
  resource: string | null
}

/**
 * Registers the access hooks on `app` (before any route, so every route
 * and plugin inherits them) and the check that each route added has an
 * entry in `routeAccess`. `auth` absent or not required: anonymous.
 */
export function registerAccess(app: FastifyInstance, auth: ApiAuth | undefined, runtime: Runtime = systemRuntime): void {
  const on = auth !== undefined && auth.required
  const notes = new WeakMap<FastifyRequest, AuditNote>()
  const limiter = new AuditLimiter(runtime)
  app.decorateRequest('principal', null)
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    for (const method of methods) {
      if (routeAccess[routeKey(method, route.url)] === undefined) {
        throw new RillError(ErrorCode.INTERNAL, `route ${method} ${route.url} has no entry in routeAccess (src/api/auth.ts): say what it needs before serving it`)
      }
    }
  })

  const audit = (request: FastifyRequest, line: { action: string; resource: string | null; outcome: string; status: number; reason?: string }): void => {
    // An internal route's caller proved it holds the cluster secret (a broker, or an operator bootstrapping a token).
    const principal = request.principal ?? (accessOf(request)?.kind === 'internal' ? '(cluster secret)' : null)
    request.log.info({ event: 'audit', principal, ...line, method: request.method, remote: request.ip }, `audit ${line.action} ${line.outcome}`)
  }
  const refuse = (request: FastifyRequest, code: ErrorCode, reason: string, resource: string | null): never => {
    notes.set(request, { denied: true, resource })
    const suppressed = limiter.take()
    if (suppressed !== null) {
      const line = { action: `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]}`, resource, outcome: code === ErrorCode.FORBIDDEN ? 'denied' : 'unauthenticated', status: code === ErrorCode.FORBIDDEN ? 403 : 401, reason }
      audit(request, suppressed > 0 ? { ...line, reason: `${reason} (${suppressed} refused requests not logged before this one)` } : line)
    }
    throw new RillError(code, reason)
  }

  app.addHook('onRequest', async (request) => {
    const access = accessOf(request)
    if (access === undefined) throw new RillError(ErrorCode.INTERNAL, `no access rule for ${request.method} ${request.routeOptions.url ?? '?'}`)
    if (!on || access.kind === 'open' || access.kind === 'internal') return
    request.principal = authenticate(request, auth!, (reason) => refuse(request, ErrorCode.UNAUTHORIZED, reason, null))
  })

  app.addHook('preValidation', async (request) => {
    const access = accessOf(request)
    if (!on || access?.kind !== 'checked' || request.principal === null) return
    const params = (request.params ?? {}) as Params
    for (const check of access.checks(params, request.body)) {
      if (auth!.allows(request.principal, check.operation, check.resource)) continue
      if (check.orCluster === true && auth!.allows(request.principal, check.operation, cluster)) continue
      const what = check.resource.type === 'cluster' ? 'the cluster' : `${check.resource.type} ${check.resource.name}`
      refuse(request, ErrorCode.FORBIDDEN, `${request.principal} may not ${check.operation} ${what}: no ACL allows it`, `${check.resource.type}:${check.resource.name}`)
    }
  })

  app.addHook('onResponse', async (request, reply) => {
    const access = accessOf(request)
    if (notes.get(request)?.denied === true) return
    const action = access?.kind === 'checked' || access?.kind === 'internal' ? access.audit : undefined
    if (action === undefined) return
    const resource = (access?.kind === 'checked' || access?.kind === 'internal') && access.auditResource !== undefined ? access.auditResource((request.params ?? {}) as Params, request.body, (request.query ?? {}) as Params) : null
    const status = reply.statusCode
    audit(request, { action, resource, outcome: status < 400 ? 'ok' : 'failed', status })
  })
}

function accessOf(request: FastifyRequest): RouteAccess | undefined {
  const url = request.routeOptions.url
  // No route matched: the not-found handler answers 404, nothing to protect.
  if (url === undefined) return { kind: 'open' }
  return routeAccess[routeKey(request.method, url)]
}

/**
 * The principal of `request`: its bearer token's, or (no Authorization
 * header, certificates accepted) its client certificate's CN. Calls
 * `refuse` (which throws) when neither authenticates.
 */
function authenticate(request: FastifyRequest, auth: ApiAuth, refuse: (reason: string) => never): string {
  const header = request.headers.authorization
  if (header !== undefined) {
    if (header.length > authorizationCharsMax) refuse('the Authorization header is too long to be a token')
    const m = /^Bearer ([^\s]+)$/i.exec(header)
    if (m === null) refuse('Authorization must be "Bearer TOKEN"')
    const principal = auth.authenticate(m![1]!)
    if (principal === null) refuse('the bearer token is not valid (unknown, revoked, or mistyped)')
    return principal!
  }
  if (auth.certificates) {
    const cn = certificateCn(request)
    if (cn !== null) return cn
  }
  return refuse(
    auth.certificates
      ? 'authentication required: send Authorization: Bearer TOKEN (rill acl token create), or a client certificate of the cluster CA'
      : 'authentication required: send Authorization: Bearer TOKEN (rill acl token create)',
  )
}

/** The CN of a client certificate the TLS handshake verified against the CA, or null. */
function certificateCn(request: FastifyRequest): string | null {
  const socket = request.raw.socket as Partial<TLSSocket>
  if (socket.authorized !== true || typeof socket.getPeerCertificate !== 'function') return null
  const cn = socket.getPeerCertificate().subject?.CN
  const name = Array.isArray(cn) ? cn[0] : cn
  return typeof name === 'string' && /^[A-Za-z0-9][A-Za-z0-9 ._@:=+/-]{0,254}$/.test(name) ? name : null
}

/** True if the request's principal may see `name` (in metadata and topic lists): auth off, or describe allowed. */
export function canDescribeTopic(auth: ApiAuth | undefined, request: FastifyRequest, name: string): boolean {
  if (auth === undefined || !auth.required || request.principal === null) return true
  return auth.allows(request.principal, 'describe', topic(name))
}

/** At most `deniedAuditPerSecondMax` lines a second; counts the ones it refused. */
export class AuditLimiter {
  readonly #runtime: Runtime
  #windowStartMs = -Infinity
  #inWindow = 0
  #suppressed = 0

  constructor(runtime: Runtime) {
    this.#runtime = runtime
  }

  /** null: do not log this one; else how many were not logged since the last line. */
  take(): number | null {
    const now = this.#runtime.nowMs()
    if (now - this.#windowStartMs >= 1000) {
      this.#windowStartMs = now
      this.#inWindow = 0
    }
    if (this.#inWindow >= deniedAuditPerSecondMax) {
      this.#suppressed++
      return null
    }
    this.#inWindow++
    const suppressed = this.#suppressed
    this.#suppressed = 0
    return suppressed
  }
}
