/**
 * The HTTP routes of tokens and ACLs (docs/api.md "Security"): what
 * `rill acl` calls. Who may call them is in auth.ts's table (cluster
 * `alter` to change, `describe` to list); the service checks every field
 * again before anything reaches the controller.
 *
 *   POST   /v1/acl/tokens         { principal }            → 201 { id, principal, createdMs, token }  (shown once)
 *   GET    /v1/acl/tokens[?principal=P]                    → 200 { tokens: [{ id, principal, createdMs }] }
 *   DELETE /v1/acl/tokens/:id                              → 200 { id, revoked }
 *   POST   /v1/acls               { principal, resourceType, resourceName, patternType, operation } → 201 { acl }
 *   GET    /v1/acls[?principal=P]                          → 200 { acls: [...] }
 *   DELETE /v1/acls?principal=&resourceType=&resourceName=&patternType=&operation= → 200 { acl, removed }
 *   GET    /v1/whoami                                      → 200 { principal }
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { AclEntry } from '../controller/index.ts'
import type { SecurityService } from './service.ts'
import { nameLengthMax } from './limits.ts'
import { namePattern } from './schemas.ts'

type Answer = (request: FastifyRequest, reply: FastifyReply, status: number, payload: unknown) => FastifyReply

const principal = { type: 'string', minLength: 1, maxLength: 255, pattern: '^[A-Za-z0-9][A-Za-z0-9 ._@:=+/-]*$' } as const
const aclProperties = {
  principal,
  resourceType: { type: 'string', enum: ['topic', 'group', 'cluster'] },
  // A name, a prefix, "*", or "cluster" (the service checks which fits the resource type).
  resourceName: { type: 'string', minLength: 1, maxLength: nameLengthMax, anyOf: [{ pattern: namePattern }, { const: '*' }] },
  patternType: { type: 'string', enum: ['literal', 'prefixed'] },
  operation: { type: 'string', enum: ['produce', 'consume', 'describe', 'create', 'delete', 'read', 'alter', 'all'] },
} as const
const aclRequired = ['principal', 'resourceType', 'resourceName', 'patternType', 'operation']
const aclObject = { type: 'object', additionalProperties: false, required: aclRequired, properties: aclProperties } as const
const principalQuery = { type: 'object', additionalProperties: false, properties: { principal } } as const
const emptyQuery = { type: 'object', additionalProperties: false, properties: {} } as const

export function registerSecurityRoutes(app: FastifyInstance, security: SecurityService, answer: Answer): void {
  app.get('/v1/whoami', { schema: { querystring: emptyQuery } }, async (request, reply) => answer(request, reply, 200, { principal: request.principal }))

  app.post('/v1/acl/tokens', {
    schema: { querystring: emptyQuery, body: { type: 'object', additionalProperties: false, required: ['principal'], properties: { principal } } },
  }, async (request, reply) => answer(request, reply, 201, await security.createToken((request.body as { principal: string }).principal)))
  app.get('/v1/acl/tokens', { schema: { querystring: principalQuery } }, async (request, reply) =>
    answer(request, reply, 200, { tokens: security.tokens((request.query as { principal?: string }).principal) }),
  )
  app.delete('/v1/acl/tokens/:id', {
    schema: { querystring: emptyQuery, params: { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', pattern: '^[0-9a-f]{16}$' } } } },
  }, async (request, reply) => {
    const { id } = request.params as { id: string }
    return answer(request, reply, 200, { id, revoked: await security.revokeToken(id) })
  })

  app.post('/v1/acls', { schema: { querystring: emptyQuery, body: aclObject } }, async (request, reply) =>
    answer(request, reply, 201, { acl: await security.addAcl(request.body as AclEntry) }),
  )
  app.get('/v1/acls', { schema: { querystring: principalQuery } }, async (request, reply) =>
    answer(request, reply, 200, { acls: security.acls((request.query as { principal?: string }).principal) }),
  )
  app.delete('/v1/acls', { schema: { querystring: aclObject } }, async (request, reply) => {
    // The query object has no prototype: the service takes a plain object of exactly the five fields.
    const q = request.query as AclEntry
    const acl: AclEntry = { principal: q.principal, resourceType: q.resourceType, resourceName: q.resourceName, patternType: q.patternType, operation: q.operation }
    return answer(request, reply, 200, { acl, removed: await security.removeAcl(acl) })
  })
}
