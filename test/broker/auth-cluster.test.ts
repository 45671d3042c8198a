/**
 * Three broker processes with TLS, tokens and ACLs on (--auth required,
 * --super-users admin, --tls-client-auth optional), driven as an operator
 * and clients would (issue 10, "a multi-process test with TLS + tokens +
 * ACLs on"):
 *
 * - the first token is bootstrapped with the cluster secret (`rill acl token
 *   create --secret-file`); without it the CLI cannot make one;
 * - a principal without rights gets 403 FORBIDDEN for produce (SDK, topic
 *   route through a non-leader), fetch, create and delete; no token is 401;
 * - granted rights with `rill acl add`, everything works through the SDKs
 *   (producer, consumer group with commits) and the CLI (produce, consume,
 *   topic create/delete) against any broker;
 * - a client certificate of the CA authenticates its CN;
 * - a revoked token is refused on every broker.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, fetch as undiciFetch } from 'undici'
import { Consumer } from '../../consumer/index.ts'
import { Producer } from '../../producer/index.ts'
import { ClientErrorCode, RillClientError } from '../../client/index.ts'
import { runCli } from '../cli/helpers.ts'
import { startCluster, waitFor, type TestCluster } from './helpers.ts'

/** Longest wait for something the cluster does within a few ticks or one registration round, ms. */
const settleMs = 30_000

let cluster: TestCluster
let caPem: Buffer
let secretFile: string
let adminToken = ''
let aliceToken = ''
let malloryToken = ''
/** A client certificate of the cluster CA (the operator's, for the internal bootstrap route under TLS). */
let operatorTls: string[] = []

const urls = (): string[] => cluster.brokers.map((b) => b.url)
const tlsFlags = (): string[] => ['--tls-ca', cluster.tls!.ca.certFile]

async function api(url: string, method: string, path: string, options: { token?: string; body?: unknown; dispatcher?: Agent } = {}): Promise<{ status: number; body: any }> {
  const r = await undiciFetch(`${url}${path}`, {
    method,
    headers: {
      ...(options.body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
    },
    ...(options.body === undefined ? {} : { body: JSON.stringify(options.body) }),
    signal: AbortSignal.timeout(20_000),
    dispatcher: options.dispatcher ?? cluster.tls!.dispatcher,
  })
  const text = await r.text()
  return { status: r.status, body: text === '' ? null : JSON.parse(text) }
}

/** `rill ...` against broker `i` (0-based) with the cluster's CA. */
function rill(args: string[], i = 0, options: { token?: string; input?: string } = {}) {
  return runCli([...args, '--url', urls()[i]!, ...tlsFlags(), ...(options.token === undefined ? [] : ['--token', options.token])], {
    timeoutMs: 60_000,
    ...(options.input === undefined ? {} : { input: options.input }),
  })
}

/** Retries a CLI command answered 503/NO_QUORUM (an election, metadata still loading) until it succeeds. */
async function rillUntilOk(args: string[], i: number, options: { token?: string; input?: string } = {}, extra: string[] = []) {
  let last = { code: -1, stdout: '', stderr: '' } as Awaited<ReturnType<typeof runCli>>
  await waitFor(async () => {
    last = await runCli([...args, '--url', urls()[i]!, ...tlsFlags(), ...extra, ...(options.token === undefined ? [] : ['--token', options.token])], { timeoutMs: 60_000, ...(options.input === undefined ? {} : { input: options.input }) })
    if (last.code !== 0 && !/NO_QUORUM|TIMEOUT|NOT_LEADER|cannot reach/.test(last.stderr)) throw new Error(`rill ${args.join(' ')}: ${last.stderr}`)
    return last.code === 0
  }, settleMs, `rill ${args.join(' ')}`)
  return last
}

before(async () => {
  const secret = randomBytes(32).toString('hex')
  cluster = await startCluster({ tls: true, extraFlags: ['--auth', 'required', '--super-users', 'admin', '--secret', secret, '--tls-client-auth', 'optional'] })
  caPem = readFileSync(cluster.tls!.ca.certFile)
  secretFile = join(cluster.root, 'secret.hex')
  writeFileSync(secretFile, `${secret}\n`, { mode: 0o600 })
  const operator = await cluster.tls!.ca.issue({ name: 'operator', hosts: [] })
  operatorTls = ['--tls-cert', operator.certFile, '--tls-key', operator.keyFile]
})

after(async () => {
  await cluster?.stopAll()
})

test('bootstrap: only the cluster secret issues the first token; the super-user then administers', async () => {
  // Without credentials, neither the API nor the CLI can issue one.
  const refused = await rill(['acl', 'token', 'create', '--principal', 'admin'])
  assert.equal(refused.code, 1)
  assert.match(refused.stderr, /UNAUTHORIZED/)
  const created = await rillUntilOk(['acl', 'token', 'create', '--principal', 'admin', '--secret-file', secretFile], 1, {}, operatorTls)
  adminToken = created.stdout.trim()
  assert.match(adminToken, /^rill_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
  assert.match(created.stderr, /shown only this once/)
  // Every broker registered (metadata now needs a token), then a topic.
  await waitFor(async () => {
    const r = await api(urls()[0]!, 'GET', '/v1/metadata', { token: adminToken }).catch(() => null)
    return r?.status === 200 && r.body.brokers.filter((b: { fenced?: boolean }) => b.fenced !== true).length === 3
  }, settleMs, 'three brokers registered')
  await rillUntilOk(['topic', 'create', 'orders', '--partitions', '3', '--replicas', '3'], 2, { token: adminToken })
  await waitFor(async () => {
    const r = await api(urls()[0]!, 'GET', '/v1/metadata', { token: adminToken })
    const t = r.body.topics.find((x: { name: string }) => x.name === 'orders')
    return t !== undefined && t.partitions.every((p: { leader: number | null }) => p.leader !== null)
  }, settleMs, 'leaders of orders')
  aliceToken = (await rillUntilOk(['acl', 'token', 'create', '--principal', 'alice'], 1, { token: adminToken })).stdout.trim()
  malloryToken = (await rillUntilOk(['acl', 'token', 'create', '--principal', 'mallory'], 2, { token: adminToken })).stdout.trim()
  const listed = await rill(['acl', 'token', 'list'], 0, { token: adminToken })
  assert.equal(listed.code, 0, listed.stderr)
  for (const p of ['admin', 'alice', 'mallory']) assert.match(listed.stdout, new RegExp(` ${p} `))
  assert.ok(!listed.stdout.includes(aliceToken.slice(22)), 'a token list never shows a token')
})

test('a principal without rights gets 403 for produce, fetch, create and delete on every broker; no token is 401', async () => {
  for (const url of urls()) {
    const produce = await api(url, 'POST', '/v1/topics/orders/partitions/0/records', { token: malloryToken, body: { records: [{ value: 'evil' }] } })
    assert.equal(produce.status, 403, JSON.stringify(produce.body))
    assert.equal(produce.body.error.code, 'FORBIDDEN')
    const routed = await api(url, 'POST', '/v1/topics/orders/records', { token: malloryToken, body: { records: [{ value: 'evil' }] } })
    assert.equal(routed.status, 403)
    const fetched = await api(url, 'GET', '/v1/topics/orders/partitions/0/records?offset=0', { token: malloryToken })
    assert.equal(fetched.status, 403)
    const create = await api(url, 'POST', '/v1/topics', { token: malloryToken, body: { name: 'mallory-topic', partitions: 1, replicationFactor: 1 } })
    assert.equal(create.status, 403)
    const del = await api(url, 'DELETE', '/v1/topics/orders', { token: malloryToken })
    assert.equal(del.status, 403)
    const anonymous = await api(url, 'POST', '/v1/topics/orders/partitions/0/records', { body: { records: [{ value: 'evil' }] } })
    assert.equal(anonymous.status, 401)
    assert.equal(anonymous.body.error.code, 'UNAUTHORIZED')
  }
  // The SDK says FORBIDDEN and does not retry it.
  const producer = new Producer({ brokers: urls(), tls: { ca: caPem }, token: malloryToken, deliveryTimeoutMs: 20_000 })
  try {
    const error = await producer.send('orders', { value: 'evil' }).then(() => assert.fail('sent without rights'), (e: unknown) => e)
    assert.ok(error instanceof RillClientError, String(error))
    assert.ok(error.code === ClientErrorCode.FORBIDDEN || error.code === ClientErrorCode.UNKNOWN_TOPIC, `${error.code}: ${error.message}`)
  } finally {
    await producer.close()
  }
  // The CLI too, with the code on stderr.
  const cliCreate = await rill(['topic', 'create', 'mallory-topic', '--partitions', '1', '--replicas', '1'], 1, { token: malloryToken })
  assert.equal(cliCreate.code, 1)
  assert.match(cliCreate.stderr, /FORBIDDEN: mallory may not create topic mallory-topic/)
  const cliDelete = await rill(['topic', 'delete', 'orders'], 2, { token: malloryToken })
  assert.equal(cliDelete.code, 1)
  assert.match(cliDelete.stderr, /FORBIDDEN/)
  // Nothing mallory tried was done.
  const meta = await api(urls()[0]!, 'GET', '/v1/metadata', { token: adminToken })
  assert.deepEqual(meta.body.topics.filter((t: { name: string }) => !t.name.startsWith('__')).map((t: { name: string }) => t.name), ['orders'])
  const read = await api(urls()[0]!, 'GET', '/v1/topics/orders/partitions/0/records?offset=0', { token: adminToken })
  assert.ok(!JSON.stringify(read.body.records ?? []).includes('evil'))
})

test('with rights granted by rill acl add, everything works through the SDKs and the CLI', async () => {
  for (const args of [
    ['acl', 'add', '--principal', 'alice', '--topic', 'orders', '--operation', 'produce,consume'],
    ['acl', 'add', '--principal', 'alice', '--group', 'app', '--operation', 'read'],
    ['acl', 'add', '--principal', 'alice', '--topic', 'alice.', '--prefixed', '--operation', 'create,delete,produce'],
  ]) {
    const r = await rillUntilOk(args, 0, { token: adminToken })
    assert.match(r.stdout, /^added alice may /m)
  }
  const acls = await rill(['acl', 'list', '--principal', 'alice'], 1, { token: adminToken })
  assert.equal(acls.stdout.trim().split('\n').length, 1 + 6, acls.stdout)

  const producer = new Producer({ brokers: urls(), tls: { ca: caPem }, token: aliceToken, deliveryTimeoutMs: 30_000 })
  try {
    await Promise.all(Array.from({ length: 20 }, (_, i) => producer.send('orders', { key: `k${i % 4}`, value: `sdk${i}` })))
  } finally {
    await producer.close()
  }
  // The topic route through a broker that leads only some partitions forwards the rest with alice's token.
  const routed = await api(urls()[2]!, 'POST', '/v1/topics/orders/records', { token: aliceToken, body: { records: Array.from({ length: 9 }, (_, i) => ({ value: `routed${i}` })) } })
  assert.equal(routed.status, 200, JSON.stringify(routed.body))
  const cliProduce = await rill(['produce', 'orders'], 1, { token: aliceToken, input: 'cli0\ncli1\ncli2\n' })
  assert.equal(cliProduce.code, 0, cliProduce.stderr)

  const consumer = new Consumer({ brokers: urls()[0]!, tls: { ca: caPem }, token: aliceToken, groupId: 'app', fromBeginning: true })
  const values = new Set<string>()
  try {
    await consumer.subscribe('orders')
    const stop = AbortSignal.timeout(settleMs * 2)
    for await (const batch of consumer.batches({ signal: stop })) {
      for (const r of batch.records) values.add(Buffer.from(r.value).toString())
      if (values.size >= 32) break
    }
    await consumer.commit()
  } finally {
    await consumer.close()
  }
  assert.equal(values.size, 32)
  const committed = await api(urls()[1]!, 'GET', '/v1/groups/app/offsets', { token: aliceToken })
  assert.ok(committed.status === 200 || committed.status === 421, JSON.stringify(committed.body))

  const cliConsume = await rill(['consume', 'orders', '--from-beginning', '--max', '32'], 2, { token: aliceToken })
  assert.equal(cliConsume.code, 0, cliConsume.stderr)
  assert.equal(cliConsume.stdout.trim().split('\n').length, 32)

  const created = await rillUntilOk(['topic', 'create', 'alice.tmp', '--partitions', '1', '--replicas', '1'], 1, { token: aliceToken })
  assert.match(created.stdout, /created topic alice\.tmp/)
  const deleted = await rillUntilOk(['topic', 'delete', 'alice.tmp'], 2, { token: aliceToken })
  assert.match(deleted.stdout, /deleted topic alice\.tmp/)
  // What alice may see: her topics only.
  const list = await rill(['topic', 'list'], 0, { token: aliceToken })
  assert.equal(list.stdout.trim(), 'orders')
})

test('a client certificate of the CA authenticates its CN; a revoked token is refused on every broker', async () => {
  const carol = await cluster.tls!.ca.issue({ name: 'carol', hosts: [] })
  const carolAgent = new Agent({ connect: { ca: caPem, cert: readFileSync(carol.certFile), key: readFileSync(carol.keyFile) } })
  try {
    const denied = await api(urls()[0]!, 'GET', '/v1/topics/orders', { dispatcher: carolAgent })
    assert.equal(denied.status, 403)
    assert.match(denied.body.error.message, /^carol may not describe topic orders/)
    await rillUntilOk(['acl', 'add', '--principal', 'carol', '--topic', 'orders', '--operation', 'describe'], 1, { token: adminToken })
    await waitFor(async () => (await api(urls()[0]!, 'GET', '/v1/topics/orders', { dispatcher: carolAgent })).status === 200, settleMs, 'carol allowed on broker 1')
  } finally {
    await carolAgent.destroy()
  }

  const id = (await rill(['acl', 'token', 'list', '--principal', 'alice'], 0, { token: adminToken })).stdout.trim().split('\n')[1]!.split(/\s+/)[0]!
  const revoked = await rillUntilOk(['acl', 'token', 'revoke', id], 2, { token: adminToken })
  assert.match(revoked.stdout, new RegExp(`revoked token ${id}`))
  for (const url of urls()) {
    await waitFor(async () => (await api(url, 'GET', '/v1/whoami', { token: aliceToken })).status === 401, settleMs, `alice's token refused at ${url}`)
  }
  assert.equal((await api(urls()[0]!, 'GET', '/v1/whoami', { token: adminToken })).body.principal, 'admin')
})
