/**
 * Client authentication and ACLs on every route, in process (buildApi over
 * the TestService, whose tokens and ACLs are a broker's Security):
 *
 * - every route registered has an entry in the access table, every entry a
 *   route, and a route added without one is refused at registration;
 * - per route: no credentials → 401, a valid token without an ACL → 403
 *   (the service is not called), the ACL that route needs → success;
 * - super-users may do everything; a revoked token is 401 at once;
 * - metadata and topic lists show only topics the principal may describe;
 * - admin actions and refusals are audit lines; refusals are rate-bounded;
 * - with auth off, nothing changes (request.principal null).
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import pino from 'pino'
import { buildApi, deniedAuditPerSecondMax, routeAccess, type ApiAuth } from '../../src/api/index.ts'
import { AuditLimiter } from '../../src/api/auth.ts'
import type { AclEntry } from '../../src/controller/index.ts'
import { registerInternalRoutes } from '../../src/cli/internal-routes.ts'
import { TestService } from './helpers.ts'

type App = ReturnType<typeof buildApi>

/** Log lines the API wrote (pino JSON), for the audit checks. */
const lines: Record<string, unknown>[] = []
const logger = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _e, done) => { for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l)); done() } }))

let service: TestService
let app: App
let rootToken: string
let aliceToken: string

function authOf(s: TestService, required = true): ApiAuth {
  return { required, certificates: false, authenticate: (t) => s.security.authenticate(t), allows: (p, op, r) => s.security.allows(p, op, r) }
}

before(async () => {
  service = new TestService({ superUsers: ['root'] })
  app = buildApi({ service, logger: logger as never, auth: authOf(service) })
  await app.ready()
  rootToken = (await service.security.createToken('root')).token
  aliceToken = (await service.security.createToken('alice')).token
  await service.createTopic({ name: 'orders', partitions: 2, replicationFactor: 1 })
  await service.createTopic({ name: 'secret-plans', partitions: 1, replicationFactor: 1 })
})

after(async () => {
  await app.close()
  await service.close()
})

interface Call {
  method: 'GET' | 'POST' | 'DELETE'
  url: string
  body?: unknown
  token?: string | null
  headers?: Record<string, string>
}

async function call(c: Call): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { ...(c.headers ?? {}) }
  if (c.token !== undefined && c.token !== null) headers.authorization = `Bearer ${c.token}`
  const r = await app.inject({ method: c.method, url: c.url, headers, ...(c.body === undefined ? {} : { payload: c.body as object }) })
  const json = String(r.headers['content-type'] ?? '').startsWith('application/json')
  return { status: r.statusCode, body: r.body === '' ? null : json ? JSON.parse(r.body) : r.body }
}

const acl = (resourceType: AclEntry['resourceType'], resourceName: string, operation: AclEntry['operation'], patternType: AclEntry['patternType'] = 'literal'): AclEntry => ({
  principal: 'alice',
  resourceType,
  resourceName,
  patternType,
  operation,
})

test('every registered route is in the access table, every entry is a route, and an unlisted route is refused', async () => {
  const s = new TestService()
  const a = buildApi({ service: s })
  await registerInternalRoutes(a, {
    secret: Uint8Array.from(Buffer.alloc(32, 3)),
    service: { registerBroker: async () => {}, localLeaderships: () => [], createOffsetsTopic: async () => {}, identity: () => { throw new Error('no') }, runControllerCall: async () => {}, createToken: async () => { throw new Error('no') }, topicStatus: () => ({ known: false, partitions: [] }) },
    offsetsTopic: { name: '__consumer_offsets', partitions: 1 },
  })
  try {
    // Registration itself checks each route against the table (buildApi's onRoute hook): both calls above would have thrown.
    for (const key of Object.keys(routeAccess)) {
      const [method, url] = key.split(' ') as [string, string]
      assert.ok(a.hasRoute({ method: method as 'GET', url }), `the table lists ${key}, which is not a route`)
    }
    assert.throws(() => a.get('/v1/unlisted', async () => ({})), /has no entry in routeAccess/)
    assert.throws(() => a.post('/internal/v1/unlisted', async () => ({})), /has no entry in routeAccess/)
  } finally {
    await a.close()
    await s.close()
  }
})

test('/health stays open; any other route without credentials, with a bad token or a bad scheme is 401 UNAUTHORIZED', async () => {
  assert.equal((await call({ method: 'GET', url: '/health' })).status, 200)
  for (const c of [
    { method: 'GET' as const, url: '/v1/metadata' },
    { method: 'GET' as const, url: '/metrics' },
    { method: 'POST' as const, url: '/v1/topics/orders/partitions/0/records', body: { records: [{ value: 'x' }] } },
    { method: 'GET' as const, url: '/v1/topics/orders/partitions/0/records?offset=0' },
  ]) {
    for (const extra of [{}, { token: 'rill_0123456789abcdef_' + 'A'.repeat(43) }, { headers: { authorization: `Basic ${aliceToken}` } }, { token: aliceToken + 'x' }]) {
      const r = await call({ ...c, ...extra })
      assert.equal(r.status, 401, `${c.method} ${c.url} ${JSON.stringify(extra)}: ${JSON.stringify(r.body)}`)
      assert.equal(r.body.error.code, 'UNAUTHORIZED')
    }
  }
  assert.equal(service.produceCalls, 0, 'no refused produce reached the broker')
})

test('each route: a token without the ACL it needs is 403 FORBIDDEN (nothing done); with it, the route works', async () => {
  let memberId = ''
  let tokenId = ''
  const routes: { c: Call; needs: AclEntry[]; ok: number; after?: (body: any) => void }[] = [
    { c: { method: 'GET', url: '/metrics' }, needs: [acl('cluster', 'cluster', 'describe')], ok: 200 },
    { c: { method: 'POST', url: '/v1/topics', body: { name: 'team-a.new', partitions: 1, replicationFactor: 1 } }, needs: [acl('topic', 'team-a.', 'create', 'prefixed')], ok: 201 },
    { c: { method: 'GET', url: '/v1/topics/orders' }, needs: [acl('topic', 'orders', 'describe')], ok: 200 },
    { c: { method: 'DELETE', url: '/v1/topics/team-a.new' }, needs: [acl('topic', 'team-a.new', 'delete')], ok: 200 },
    { c: { method: 'POST', url: '/v1/topics/orders/records', body: { records: [{ value: 'a' }] } }, needs: [acl('topic', 'orders', 'produce')], ok: 200 },
    { c: { method: 'POST', url: '/v1/topics/orders/partitions/0/records', body: { records: [{ value: 'b' }] } }, needs: [acl('topic', 'ord', 'produce', 'prefixed')], ok: 200 },
    { c: { method: 'GET', url: '/v1/topics/orders/partitions/0/records?offset=0' }, needs: [acl('topic', 'orders', 'consume')], ok: 200 },
    { c: { method: 'POST', url: '/v1/groups/app/members', body: { topics: ['orders'] } }, needs: [acl('group', 'app', 'read'), acl('topic', 'orders', 'consume')], ok: 200, after: (b) => (memberId = b.memberId) },
    { c: { method: 'POST', url: '/v1/groups/app/members/MEMBER/heartbeat', body: { owned: [] } }, needs: [acl('group', 'app', 'read')], ok: 200 },
    { c: { method: 'DELETE', url: '/v1/groups/app/members/MEMBER' }, needs: [acl('group', 'app', 'read')], ok: 200 },
    { c: { method: 'POST', url: '/v1/groups/app/offsets', body: { offsets: [{ topic: 'orders', partition: 0, offset: 1 }] } }, needs: [acl('group', 'app', 'read'), acl('topic', 'orders', 'consume')], ok: 200 },
    { c: { method: 'GET', url: '/v1/groups/app/offsets' }, needs: [acl('group', 'app', 'describe')], ok: 200 },
    { c: { method: 'GET', url: '/v1/groups/app' }, needs: [acl('group', '*', 'describe')], ok: 200 },
    { c: { method: 'POST', url: '/v1/acl/tokens', body: { principal: 'bob' } }, needs: [acl('cluster', 'cluster', 'alter')], ok: 201, after: (b) => (tokenId = b.id) },
    { c: { method: 'GET', url: '/v1/acl/tokens' }, needs: [acl('cluster', 'cluster', 'describe')], ok: 200 },
    { c: { method: 'DELETE', url: '/v1/acl/tokens/TOKEN' }, needs: [acl('cluster', 'cluster', 'alter')], ok: 200 },
    { c: { method: 'POST', url: '/v1/acls', body: { principal: 'bob', resourceType: 'topic', resourceName: 'x', patternType: 'literal', operation: 'produce' } }, needs: [acl('cluster', 'cluster', 'alter')], ok: 201 },
    { c: { method: 'GET', url: '/v1/acls' }, needs: [acl('cluster', 'cluster', 'all')], ok: 200 },
    { c: { method: 'DELETE', url: '/v1/acls?principal=bob&resourceType=topic&resourceName=x&patternType=literal&operation=produce' }, needs: [acl('cluster', 'cluster', 'alter')], ok: 200 },
  ]
  const checked = new Set<string>()
  for (const route of routes) {
    const c = { ...route.c, url: route.c.url.replace('MEMBER', memberId).replace('TOKEN', tokenId), token: aliceToken }
    const producesBefore = service.produceCalls
    const versionBefore = service.security.acls().length + service.security.tokens().length + service.listTopics().length
    const denied = await call(c)
    assert.equal(denied.status, 403, `${c.method} ${c.url} without ${JSON.stringify(route.needs)}: ${JSON.stringify(denied.body)}`)
    assert.equal(denied.body.error.code, 'FORBIDDEN')
    assert.match(denied.body.error.message, /^alice may not /)
    assert.equal(service.produceCalls, producesBefore, 'a denied produce does not reach the broker')
    assert.equal(service.security.acls().length + service.security.tokens().length + service.listTopics().length, versionBefore, 'a denied change changes nothing')
    // With only some of what it needs (commit: the group, not the topic), still 403.
    if (route.needs.length > 1) {
      await service.security.addAcl(route.needs[0]!)
      assert.equal((await call(c)).status, 403, `${c.method} ${c.url} with only ${JSON.stringify(route.needs[0])}`)
    }
    for (const a of route.needs) await service.security.addAcl(a)
    const allowed = await call(c)
    assert.equal(allowed.status, route.ok, `${c.method} ${c.url} with ${JSON.stringify(route.needs)}: ${JSON.stringify(allowed.body)}`)
    route.after?.(allowed.body)
    for (const a of route.needs) await service.security.removeAcl(a)
    checked.add(`${route.c.method} ${route.c.url.split('?')[0]!.replace('/app/', '/:group/').replace(/\/app$/, '/:group').replace('MEMBER', ':memberId').replace('TOKEN', ':id').replace(/\/orders|\/team-a\.new/, '/:topic').replace('/partitions/0/', '/partitions/:p/')}`)
  }
  // Every checked route of the table was exercised here.
  const checkedInTable = Object.entries(routeAccess).filter(([, a]) => a.kind === 'checked').map(([k]) => k)
  assert.deepEqual(checkedInTable.filter((k) => !checked.has(k)), [], 'checked routes without a case above')
})

test('authenticated-only routes answer any principal; metadata and topic lists show only what it may describe', async () => {
  const who = await call({ method: 'GET', url: '/v1/whoami', token: aliceToken })
  assert.deepEqual(who.body, { principal: 'alice' })
  assert.equal((await call({ method: 'POST', url: '/v1/producers', token: aliceToken })).status, 200)
  const none = await call({ method: 'GET', url: '/v1/metadata', token: aliceToken })
  assert.equal(none.status, 200)
  assert.deepEqual(none.body.topics, [], 'no ACL: no topic is shown')
  await service.security.addAcl(acl('topic', 'orders', 'consume'))
  try {
    const some = await call({ method: 'GET', url: '/v1/metadata', token: aliceToken })
    assert.deepEqual(some.body.topics.map((t: { name: string }) => t.name), ['orders'])
    const list = await call({ method: 'GET', url: '/v1/topics', token: aliceToken })
    assert.deepEqual(list.body.topics.map((t: { name: string }) => t.name), ['orders'])
    const all = await call({ method: 'GET', url: '/v1/topics', token: rootToken })
    assert.ok(all.body.topics.some((t: { name: string }) => t.name === 'secret-plans'), 'a super-user sees everything')
  } finally {
    await service.security.removeAcl(acl('topic', 'orders', 'consume'))
  }
})

test('a super-user may do everything; a revoked token is refused at once', async () => {
  const created = await call({ method: 'POST', url: '/v1/acl/tokens', body: { principal: 'carol' }, token: rootToken })
  assert.equal(created.status, 201)
  assert.match(created.body.token, /^rill_/)
  const carol = created.body.token as string
  assert.equal((await call({ method: 'GET', url: '/v1/whoami', token: carol })).body.principal, 'carol')
  const listed = await call({ method: 'GET', url: '/v1/acl/tokens?principal=carol', token: rootToken })
  assert.deepEqual(listed.body.tokens.map((t: { id: string }) => t.id), [created.body.id])
  assert.ok(!JSON.stringify(listed.body).includes(carol.slice(22)), 'a list never shows a token')
  const revoked = await call({ method: 'DELETE', url: `/v1/acl/tokens/${created.body.id}`, token: rootToken })
  assert.deepEqual(revoked.body, { id: created.body.id, revoked: true })
  assert.equal((await call({ method: 'GET', url: '/v1/whoami', token: carol })).status, 401)
  const bad = await call({ method: 'POST', url: '/v1/acls', body: { principal: 'bob', resourceType: 'cluster', resourceName: 'orders', patternType: 'literal', operation: 'alter' }, token: rootToken })
  assert.equal(bad.status, 400, 'an ACL that does not fit its resource type is refused')
})

test('audit: admin actions and refused requests are one structured line each', async () => {
  lines.length = 0
  await call({ method: 'POST', url: '/v1/topics', body: { name: 'audited', partitions: 1, replicationFactor: 1 }, token: rootToken })
  await call({ method: 'DELETE', url: '/v1/topics/audited', token: aliceToken })
  await call({ method: 'POST', url: '/v1/acls', body: { principal: 'bob', resourceType: 'group', resourceName: 'g', patternType: 'literal', operation: 'read' }, token: rootToken })
  await call({ method: 'GET', url: '/v1/metadata' })
  const audit = lines.filter((l) => l.event === 'audit')
  const pick = (l: Record<string, unknown>) => ({ principal: l.principal, action: l.action, resource: l.resource, outcome: l.outcome })
  assert.deepEqual(audit.map(pick), [
    { principal: 'root', action: 'topic.create', resource: 'topic:audited', outcome: 'ok' },
    { principal: 'alice', action: 'DELETE /v1/topics/:topic', resource: 'topic:audited', outcome: 'denied' },
    { principal: 'root', action: 'acl.add', resource: 'acl:bob/group/g/literal/read', outcome: 'ok' },
    { principal: null, action: 'GET /v1/metadata', resource: null, outcome: 'unauthenticated' },
  ])
  assert.match(String(audit[1]!.reason), /^alice may not delete topic audited/)

})

test('audit: refusals are logged at most deniedAuditPerSecondMax a second; the next line counts those left out', () => {
  let now = 0
  const limiter = new AuditLimiter({ nowMs: () => now } as never)
  const taken: (number | null)[] = []
  for (let i = 0; i < deniedAuditPerSecondMax + 5; i++) taken.push(limiter.take())
  assert.equal(taken.filter((t) => t !== null).length, deniedAuditPerSecondMax)
  assert.deepEqual(taken.slice(-5), [null, null, null, null, null])
  now += 999
  assert.equal(limiter.take(), null, 'still the same second')
  now += 1
  assert.equal(limiter.take(), 6, 'a new second: the line says how many were not logged')
  assert.equal(limiter.take(), 0)
})

test('auth off: every route is anonymous (request.principal null) and allowed, as before', async () => {
  const s = new TestService()
  const a = buildApi({ service: s, auth: authOf(s, false) })
  try {
    const who = await a.inject({ method: 'GET', url: '/v1/whoami' })
    assert.deepEqual(JSON.parse(who.body), { principal: null })
    const created = await a.inject({ method: 'POST', url: '/v1/topics', payload: { name: 'free', partitions: 1, replicationFactor: 1 } })
    assert.equal(created.statusCode, 201, created.body)
  } finally {
    await a.close()
    await s.close()
  }
})

test('a producer token is good only for the principal it was issued to (issue 10, hole 3 with authentication)', async () => {
  await service.security.addAcl(acl('topic', 'orders', 'produce'))
  try {
    const issued = await call({ method: 'POST', url: '/v1/producers', token: aliceToken })
    assert.equal(issued.status, 200, JSON.stringify(issued.body))
    const { producerId, producerEpoch, producerToken } = issued.body
    const produce = (token: string, value: string): Promise<{ status: number; body: any }> =>
      call({ method: 'POST', url: '/v1/topics/orders/partitions/1/records', token, body: { producerId, producerEpoch, sequence: 0, producerToken, records: [{ value }] } })
    // Another principal (a super-user, allowed to produce anywhere) holding alice's id and token.
    const stolen = await produce(rootToken, 'EVIL')
    assert.equal(stolen.status, 403, JSON.stringify(stolen.body))
    assert.equal(stolen.body.error.code, 'INVALID_PRODUCER_TOKEN')
    const own = await produce(aliceToken, 'mine')
    assert.equal(own.status, 200, JSON.stringify(own.body))
    const read = await call({ method: 'GET', url: `/v1/topics/orders/partitions/1/records?offset=${own.body.baseOffset}`, token: rootToken })
    assert.deepEqual(read.body.records.map((r: any) => r.value), ['mine'])
  } finally {
    await service.security.removeAcl(acl('topic', 'orders', 'produce'))
  }
})
