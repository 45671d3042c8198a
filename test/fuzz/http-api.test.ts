/**
 * Fuzzing the HTTP API of one real broker in this process (issue 10,
 * "Tests"): every public route with structured-but-wrong requests
 * (generators.ts), HTTP that is not quite HTTP, and the internal routes
 * without or with a broken MAC.
 *
 *   before:   start a broker; produce records to `fz-keep` and keep what they read back as
 *   each run: one hostile request ──▶ an answer within a deadline: never 5xx; a refusal is
 *             `{ error: { code, message } }` with a known code and its status
 *   races:    creates, deletes, produces, fetches and group calls on the same names, sent at once
 *   each test (a batch of runs): /health, and a produce + fetch that reads back, answer in time;
 *             every partition of the scratch topic reads from 0 (no bad batch got stored)
 *   at the end: `fz-keep` reads back byte-identical; no request was logged as an internal error
 *
 * Seed and runs: RILL_FUZZ_SEED, RILL_FUZZ_RUNS (helpers.ts); the seed is printed.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Packr } from 'msgpackr'
import { ErrorCode } from '../../src/base/index.ts'
import { routeAccess } from '../../src/api/auth.ts'
import { internalHeaders } from '../../src/broker/internal-auth.ts'
import {
  answerBody,
  checkAnswer,
  describeRequest,
  fuzzParams,
  rawExchange,
  rawHttp,
  startFuzzBroker,
  waitFor,
  type FuzzBroker,
  type RawAnswer,
  type RawRequest,
} from './helpers.ts'
import { hostileStrings, live, malformedHttp, mutate, protectedTopic, publicRequest, scratchTopic, topicPartitions, validBatch, type FuzzRequest } from './generators.ts'

/** Longest any one hostile request may take to be answered (or closed), ms. */
const answerMsMax = 15_000
/** Longest the responsiveness checks after a batch may take, ms. */
const responsiveMsMax = 15_000

const packr = new Packr({ useRecords: false })
let broker: FuzzBroker
/** What `fz-keep` read back as right after it was produced, per partition (JSON, base64 keys and values). */
const acknowledged = new Map<number, unknown[]>()

function json(method: string, target: string, body?: unknown, headers: Array<[string, string]> = []): RawRequest {
  return {
    method,
    target,
    headers: body === undefined ? headers : [['content-type', 'application/json'], ...headers],
    ...(body === undefined ? {} : { body: Buffer.from(JSON.stringify(body)) }),
  }
}

async function call(request: RawRequest, timeoutMs = answerMsMax): Promise<{ status: number; body: any; answer: RawAnswer }> {
  const answer = await rawHttp(broker.port, request, { timeoutMs })
  return { status: answer.status, body: answer.status === 0 ? null : answerBody(answer), answer }
}

/** Every record of `topic`/`p` from offset 0 (fetched page by page, base64), each page answered 200. */
async function readAll(topic: string, p: number): Promise<unknown[]> {
  const out: unknown[] = []
  let offset = 0
  for (let page = 0; page < 10_000; page++) {
    const r = await call(json('GET', `/v1/topics/${topic}/partitions/${p}/records?offset=${offset}&encoding=base64&maxRecords=1000`))
    assert.equal(r.status, 200, `read ${topic}/${p} at ${offset}: ${JSON.stringify(r.body)}`)
    out.push(...r.body.records)
    if (r.body.records.length === 0 || r.body.nextOffset >= r.body.highWatermark) return out
    offset = r.body.nextOffset
  }
  throw new Error(`${topic}/${p} did not end within 10000 pages`)
}

/** The broker answers /health, takes a produce and reads it back, all within `responsiveMsMax`; no stored batch is unreadable. */
async function assertResponsive(label: string): Promise<void> {
  const started = Date.now()
  const health = await call(json('GET', '/health'), responsiveMsMax)
  assert.equal(health.status, 200, `${label}: /health answered ${health.status}`)
  const value = `alive-${label}-${started}`
  const produced = await call(json('POST', `/v1/topics/${scratchTopic}/partitions/0/records`, { records: [{ value }] }), responsiveMsMax)
  assert.equal(produced.status, 200, `${label}: produce answered ${produced.status} ${JSON.stringify(produced.body)}`)
  const at = produced.body.baseOffset as number
  const fetched = await call(json('GET', `/v1/topics/${scratchTopic}/partitions/0/records?offset=${at}&maxRecords=1`), responsiveMsMax)
  assert.equal(fetched.status, 200, `${label}: fetch answered ${fetched.status}`)
  assert.equal(fetched.body.records[0]?.value, value, `${label}: the record read back`)
  for (let p = 0; p < topicPartitions; p++) await readAll(scratchTopic, p)
  assert.ok(Date.now() - started < responsiveMsMax * 2, `${label}: responsiveness checks took ${Date.now() - started} ms`)
}

/** Creates `name`, retrying while the fresh broker's controller settles (bounded). */
async function createTopic(name: string): Promise<void> {
  await waitFor(
    async () => {
      const r = await call(json('POST', '/v1/topics', { name, partitions: topicPartitions, replicationFactor: 1, config: { persistence: 'memory' } }))
      if (r.status === 201 || r.status === 409) return true
      if (r.status === 503 || r.body?.error?.reason === 'replication-factor') return false
      throw new Error(`create ${name}: ${r.status} ${JSON.stringify(r.body)}`)
    },
    30_000,
    `topic ${name} created`,
  )
  for (let p = 0; p < topicPartitions; p++) {
    await waitFor(async () => (await call(json('POST', `/v1/topics/${name}/partitions/${p}/records`, { records: [{ value: 'first' }] }))).status === 200, 30_000, `${name}/${p} takes records`)
  }
}

before(async () => {
  broker = await startFuzzBroker()
  await createTopic(protectedTopic)
  await createTopic(scratchTopic)
  // Acknowledged records of every shape: JSON utf8 and base64, msgpack records with binary keys, values and headers, a stored batch.
  for (let p = 0; p < topicPartitions; p++) {
    const base = `/v1/topics/${protectedTopic}/partitions/${p}/records`
    const answers = [
      await call(json('POST', base, { records: [{ key: 'k', value: 'héllo 😀', headers: { h: 'v' }, timestamp: 1234 }, { value: '' }] })),
      await call(json('POST', base, { encoding: 'base64', records: [{ key: 'AAH/', value: Buffer.from([0, 0xff, 0x80]).toString('base64') }] })),
      await call({ method: 'POST', target: base, headers: [['content-type', 'application/msgpack'], ['accept', 'application/json']], body: packr.pack({ records: [{ key: new Uint8Array([1, 2]), value: new Uint8Array(3000).fill(p), headers: [{ key: 'bin', value: new Uint8Array([0, 1]) }] }] }) }),
      await call({ method: 'POST', target: base, headers: [['content-type', 'application/msgpack'], ['accept', 'application/json']], body: packr.pack({ batch: validBatch(3) }) }),
    ]
    for (const a of answers) assert.equal(a.status, 200, JSON.stringify(a.body))
    acknowledged.set(p, await readAll(protectedTopic, p))
    assert.ok(acknowledged.get(p)!.length >= 7)
  }
  // Live ids for the generator: members of g1 (long sessions) and issued producer ids.
  for (let i = 0; i < 3; i++) {
    const joined = await call(json('POST', '/v1/groups/g1/members', { topics: [scratchTopic, protectedTopic], sessionTimeoutMs: 60_000 }))
    assert.equal(joined.status, 200, JSON.stringify(joined.body))
    live.members.push(joined.body.memberId)
    const producer = await call(json('POST', '/v1/producers', {}))
    assert.equal(producer.status, 200, JSON.stringify(producer.body))
    live.producerIds.push(producer.body.producerId)
    live.producerTokens.push(producer.body.producerToken)
  }
})

after(async () => {
  await broker?.stop()
})

/** Answers per route and status (printed after the property: a fuzzer that only ever hears 400 tests little). */
const seen = new Map<string, Map<number, number>>()

function printSeen(): void {
  const lines = [...seen].sort(([a], [b]) => a.localeCompare(b)).map(([route, statuses]) => `#   ${route}: ${[...statuses].sort(([a], [b]) => a - b).map(([s, n]) => `${s}×${n}`).join(' ')}`)
  process.stdout.write(`# answers by route (status×count):\n${lines.join('\n')}\n`)
}

/** High watermarks of the two fuzzed topics' partitions, from /v1/metadata: topic → per partition. */
async function highWatermarkMap(): Promise<Map<string, number[]>> {
  const r = await call(json('GET', '/v1/metadata'))
  assert.equal(r.status, 200)
  const topics = (r.body.topics as Array<{ name: string; partitions: Array<{ partition: number; highWatermark: number }> }>).filter((t) => t.name === scratchTopic || t.name === protectedTopic)
  return new Map(topics.map((t) => [t.name, t.partitions.map((p) => p.highWatermark)]))
}

async function highWatermarks(): Promise<string> {
  return JSON.stringify([...(await highWatermarkMap())].sort())
}

/**
 * After a produce answered 200 (acks=leader answers before the commit), waits until its records are
 * committed, so the high watermarks are still when the next request is checked against them.
 */
async function settleProduce(request: FuzzRequest, answer: RawAnswer): Promise<void> {
  let topic: string
  try {
    topic = decodeURIComponent(request.target.split('/')[3] ?? '')
  } catch {
    return
  }
  if (topic !== scratchTopic && topic !== protectedTopic) return
  const body = answerBody(answer) as { partition?: number; lastOffset?: number; offsets?: Array<{ partition: number; lastOffset: number }> }
  const produced = body.offsets ?? (body.partition === undefined ? [] : [{ partition: body.partition, lastOffset: body.lastOffset! }])
  await waitFor(async () => {
    const hw = (await highWatermarkMap()).get(topic) ?? []
    return produced.every((o) => (hw[o.partition] ?? 0) > o.lastOffset)
  }, responsiveMsMax, `the produce ${describeRequest(request)} committed`)
}

/** Sends one generated request and checks its answer; a refused produce wrote nothing; an accepted stored batch must read back. */
async function sendAndCheck(request: FuzzRequest): Promise<void> {
  const produce = request.route.startsWith('POST /v1/topics/:topic/')
  const before = produce ? await highWatermarks() : null
  const answer = await rawHttp(broker.port, request, { timeoutMs: answerMsMax, end: request.truncated === true })
  if (produce && answer.status === 200 && request.method === 'POST') await settleProduce(request, answer)
  if (before !== null && answer.status >= 400) {
    // A refused request changes nothing (a commit under way when it was refused would show here too: none is, the runs are sequential).
    assert.equal(await highWatermarks(), before, `a refused produce moved a high watermark: ${describeRequest(request)} → ${answer.status} ${answer.body.toString().slice(0, 300)}`)
  }
  const statuses = seen.get(request.route) ?? new Map<number, number>()
  seen.set(request.route, statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1))
  checkAnswer(request, answer, { allowClose: request.truncated === true })
  if (request.batch === true && answer.status === 200 && request.method === 'POST' && request.route === 'POST /v1/topics/:topic/partitions/:p/records') {
    const got = answerBody(answer) as { partition: number; baseOffset: number; lastOffset: number }
    // The topic segment as it was sent (the router decoded it to the topic that took the batch).
    const topic = request.target.split('/')[3] ?? ''
    const read = await call(json('GET', `/v1/topics/${topic}/partitions/${got.partition}/records?offset=${got.baseOffset}&maxRecords=100`))
    assert.equal(read.status, 200, `a stored batch accepted at ${topic}/${got.partition}@${got.baseOffset} does not read back: ${JSON.stringify(read.body)}\n${describeRequest(request)}`)
  }
}

describe('public routes', () => {
  test('structured-but-wrong requests to every route get a coded 4xx or a success, never a 5xx or a hang', { timeout: 120_000 }, async () => {
    await fc.assert(fc.asyncProperty(publicRequest, sendAndCheck), fuzzParams(500))
    printSeen()
    await assertResponsive('public')
  })

  test('racing creates, deletes, produces, fetches and group calls on the same names get coded answers', { timeout: 120_000 }, async () => {
    const names = ['fzr-0', 'fzr-1']
    const op = fc.record({ kind: fc.constantFrom('create', 'delete', 'produce', 'produce-p', 'fetch', 'describe', 'list', 'metadata', 'join', 'commit'), name: fc.constantFrom(...names), p: fc.constantFrom(0, 1, 2) })
    const racing = (o: { kind: string; name: string; p: number }): RawRequest => {
      switch (o.kind) {
        case 'create':
          return json('POST', '/v1/topics', { name: o.name, partitions: 2, replicationFactor: 1, config: { persistence: 'memory' } })
        case 'delete':
          return json('DELETE', `/v1/topics/${o.name}`)
        case 'produce':
          return json('POST', `/v1/topics/${o.name}/records`, { records: [{ value: 'a' }, { key: 'k', value: 'b' }] })
        case 'produce-p':
          return json('POST', `/v1/topics/${o.name}/partitions/${o.p}/records`, { records: [{ value: 'c' }] })
        case 'fetch':
          return json('GET', `/v1/topics/${o.name}/partitions/${o.p}/records?offset=0&maxWaitMs=100`)
        case 'describe':
          return json('GET', `/v1/topics/${o.name}`)
        case 'list':
          return json('GET', '/v1/topics')
        case 'join':
          return json('POST', `/v1/groups/${o.name}/members`, { topics: [o.name], sessionTimeoutMs: 6000 })
        case 'commit':
          return json('POST', `/v1/groups/${o.name}/offsets`, { offsets: [{ topic: o.name, partition: o.p, offset: 1 }] })
        default:
          return json('GET', '/v1/metadata')
      }
    }
    await fc.assert(
      fc.asyncProperty(fc.array(op, { minLength: 2, maxLength: 8 }), async (ops) => {
        const requests = ops.map(racing)
        const answers = await Promise.all(requests.map((r) => rawHttp(broker.port, r, { timeoutMs: answerMsMax })))
        answers.forEach((a, i) => checkAnswer(requests[i]!, a))
      }),
      fuzzParams(60),
    )
    await assertResponsive('races')
  })

  test('requests that break HTTP itself are answered in our error shape or closed, and the broker lives on', { timeout: 60_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(malformedHttp, async ({ bytes, note }) => {
        const answer = await rawExchange(broker.port, bytes, { timeoutMs: answerMsMax, end: true })
        checkAnswer({ method: '?', target: note, body: bytes }, answer, { allowClose: true })
      }),
      fuzzParams(150),
    )
    await assertResponsive('malformed')
  })

  test('an oversized body is refused as TOO_LARGE before it is read, a lying length is not waited for', { timeout: 60_000 }, async () => {
    const target = `/v1/topics/${scratchTopic}/partitions/0/records`
    // Announced above the 16 MiB body bound: refused on the length alone, without a byte of body.
    const announced = await rawHttp(broker.port, { method: 'POST', target, headers: [['content-type', 'application/json']], contentLength: 64 * 1024 * 1024 }, { timeoutMs: answerMsMax })
    checkAnswer({ method: 'POST', target }, announced)
    assert.equal(answerBody(announced) && (answerBody(announced) as any).error.code, ErrorCode.TOO_LARGE)
    // Sent in full, above the bound.
    const big = Buffer.alloc(17 * 1024 * 1024, 0x61)
    const sent = await rawHttp(broker.port, { method: 'POST', target, headers: [['content-type', 'application/json']], body: big }, { timeoutMs: 30_000 })
    checkAnswer({ method: 'POST', target }, sent, { allowClose: true })
    if (sent.status !== 0) assert.equal((answerBody(sent) as any).error.code, ErrorCode.TOO_LARGE)
    await assertResponsive('oversized')
  })
})

// ---- internal routes -----------------------------------------------------------

const internalRoutes = [
  { method: 'POST', path: '/internal/v1/brokers', body: { id: 1, httpUrl: 'http://127.0.0.99:9', peerUrl: '127.0.0.99:9', incarnation: 'ab'.repeat(16) } },
  { method: 'GET', path: '/internal/v1/leaderships', body: null },
  { method: 'POST', path: '/internal/v1/identity', body: { nonce: 'cd'.repeat(16) } },
  { method: 'POST', path: '/internal/v1/offsets-topic', body: {} },
  { method: 'POST', path: '/internal/v1/controller', body: { kind: 'deleteTopic', name: protectedTopic } },
  { method: 'POST', path: '/internal/v1/tokens', body: { principal: 'fz-intruder' } },
  { method: 'POST', path: '/internal/v1/topic-status', body: { name: protectedTopic } },
] as const

/** Spellings the router may map to the same route (percent-encoding, absolute form, case, dots, queries). */
function spellTarget(path: string, how: number): string {
  const variants = [
    path,
    path.replace('/internal', '/%69nternal'),
    path.replace(/[a-z]/g, (c) => `%${c.charCodeAt(0).toString(16)}`),
    `http://x${path}`,
    `http://x${path.replace('/internal', '/%69nternal')}`,
    `${path}?x=1`,
    `${path}?`,
    `${path}#x`,
    `${path}/`,
    path.toUpperCase(),
    `/x/..${path}`,
    path.replace('/v1/', '/./v1/'),
    path.replace('/v1/', '%2Fv1%2F'),
    `/${path}`,
    `${path};x`,
    `${path}%00`,
  ]
  return variants[how % variants.length]!
}

type MacBreak = 'none' | 'garbage' | 'wrong-key' | 'flip-mac' | 'old' | 'future' | 'other-path' | 'other-method' | 'other-body' | 'bad-nonce' | 'duplicated' | 'uppercase'

const macBreaks: readonly MacBreak[] = ['none', 'garbage', 'wrong-key', 'flip-mac', 'old', 'future', 'other-path', 'other-method', 'other-body', 'bad-nonce', 'duplicated', 'uppercase']

/** MAC headers for (method, path, body) broken the way `how` says: none of them may authenticate. */
function brokenMac(how: MacBreak, method: string, path: string, body: string, junk: string): Array<[string, string]> {
  const good = internalHeaders(broker.secret, method, path, body)
  const h: Record<string, string> = { ...good }
  switch (how) {
    case 'none':
      return []
    case 'garbage':
      return [['x-rill-time', junk], ['x-rill-nonce', junk], ['x-rill-mac', junk]]
    case 'wrong-key':
      Object.assign(h, internalHeaders(Buffer.alloc(32, 1), method, path, body))
      break
    case 'flip-mac':
      h['x-rill-mac'] = (h['x-rill-mac']![0] === '0' ? '1' : '0') + h['x-rill-mac']!.slice(1)
      break
    case 'old':
      h['x-rill-time'] = String(Number(h['x-rill-time']) - 31_000)
      break
    case 'future':
      h['x-rill-time'] = String(Number(h['x-rill-time']) + 31_000)
      break
    case 'other-path':
      Object.assign(h, internalHeaders(broker.secret, method, path === '/internal/v1/identity' ? '/internal/v1/brokers' : '/internal/v1/identity', body))
      break
    case 'other-method':
      Object.assign(h, internalHeaders(broker.secret, method === 'GET' ? 'POST' : 'GET', path, body))
      break
    case 'other-body':
      Object.assign(h, internalHeaders(broker.secret, method, path, `${body} `))
      break
    case 'bad-nonce':
      h['x-rill-nonce'] = h['x-rill-nonce']!.slice(1)
      break
    case 'duplicated':
      return [...Object.entries(good), ['x-rill-mac', '00'.repeat(32)]]
    case 'uppercase':
      h['x-rill-mac'] = h['x-rill-mac']!.toUpperCase()
      break
  }
  return Object.entries(h)
}

const internalRequest = fc
  .record({
    route: fc.constantFrom(...internalRoutes),
    how: fc.nat({ max: 40 }),
    mac: fc.constantFrom(...macBreaks),
    junk: fc.constantFrom(...hostileStrings.filter((s) => !/[\r\n\u0000]/.test(s) && s.length < 300)),
    mutations: fc.array(fc.record({ op: fc.constantFrom('set' as const, 'delete' as const, 'add' as const), pick: fc.nat(), key: fc.constantFrom('id', 'x', '__proto__'), value: fc.constantFrom<unknown>(1, 2, -1, 'x', null, 2 ** 53, 'http://127.0.0.1:1') }), { maxLength: 2 }),
    contentType: fc.constantFrom('application/json', 'application/msgpack', 'text/plain', null),
  })
  .map((r) => {
    const text = r.route.body === null ? '' : JSON.stringify(mutate(r.route.body, r.mutations))
    const target = spellTarget(r.route.path, r.how)
    const headers = brokenMac(r.mac, r.route.method, r.route.path, text, r.junk)
    if (r.contentType !== null && text !== '') headers.push(['content-type', r.contentType])
    return { method: r.route.method, target, headers, ...(text === '' ? {} : { body: Buffer.from(text) }), mac: r.mac }
  })

/** Where broker 1 is registered (it must never move). */
async function registration(): Promise<unknown> {
  const r = await call(json('GET', '/v1/metadata'))
  assert.equal(r.status, 200)
  return r.body.brokers
}

describe('internal routes', () => {
  test('the fuzzed list is every internal route of the access table', () => {
    const table = Object.entries(routeAccess).filter(([, a]) => a.kind === 'internal').map(([key]) => key).sort()
    assert.deepEqual(internalRoutes.map((r) => `${r.method} ${r.path}`).sort(), table)
  })
  test('without or with a broken MAC, every spelling of every internal route is refused (never 2xx, never 5xx) and nothing moves', { timeout: 60_000 }, async () => {
    const registered = await registration()
    await fc.assert(
      fc.asyncProperty(internalRequest, async (request) => {
        const answer = await rawHttp(broker.port, request, { timeoutMs: answerMsMax })
        checkAnswer(request, answer)
        assert.ok(answer.status >= 400, `an internal request with MAC "${request.mac}" was accepted: ${describeRequest(request)} → ${answer.status}`)
        if (answer.status !== 404 && answer.status !== 400) {
          assert.equal((answerBody(answer) as any).error.code, ErrorCode.UNAUTHORIZED, `${describeRequest(request)} → ${answer.body.toString()}`)
        }
      }),
      fuzzParams(200),
    )
    assert.deepEqual(await registration(), registered, 'broker registrations unchanged')
    await assertResponsive('internal')
  })

  test('with a valid MAC, hostile bodies get a coded 4xx and a replayed request is refused', { timeout: 60_000 }, async () => {
    const registered = await registration()
    const bodies = fc.oneof(
      fc.constantFrom('', 'null', '[]', '{', '"x"', '1e999', '{"nonce":1}', '{"nonce":"zz"}', `{"nonce":"${'a'.repeat(10_000)}"}`, '{"__proto__":{"x":1}}', '['.repeat(100_000) + ']'.repeat(100_000)),
      fc.json({ maxDepth: 2 }),
      fc.string({ unit: 'grapheme', maxLength: 50 }),
    )
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('/internal/v1/identity', '/internal/v1/brokers', '/internal/v1/controller'), bodies, async (path, body) => {
        const request: RawRequest = { method: 'POST', target: path, headers: [['content-type', 'application/json'], ...Object.entries(internalHeaders(broker.secret, 'POST', path, body))], body: Buffer.from(body) }
        const answer = await rawHttp(broker.port, request, { timeoutMs: answerMsMax })
        checkAnswer(request, answer)
        // A registration or controller call that parses as one would be a request of a broker: none of these do.
        assert.ok(answer.status >= 400, `${describeRequest(request)} → ${answer.status}`)
      }),
      fuzzParams(60),
    )
    const path = '/internal/v1/leaderships'
    const headers = Object.entries(internalHeaders(broker.secret, 'GET', path, ''))
    const first = await call({ method: 'GET', target: path, headers })
    assert.equal(first.status, 200, JSON.stringify(first.body))
    const replayed = await call({ method: 'GET', target: path, headers })
    assert.equal(replayed.status, 401)
    assert.equal(replayed.body.error.code, ErrorCode.UNAUTHORIZED)
    assert.deepEqual(await registration(), registered, 'broker registrations unchanged')
    await assertResponsive('internal-mac')
  })
})

describe('after the fuzzing', () => {
  test('every acknowledged record reads back byte-identical, and no request was an internal error', async () => {
    for (let p = 0; p < topicPartitions; p++) {
      const now = await readAll(protectedTopic, p)
      const before = acknowledged.get(p)!
      assert.deepEqual(now.slice(0, before.length), before, `${protectedTopic}/${p}: acknowledged records changed`)
    }
    const faults = broker.lines.filter((l) => l.level >= 50 && /request failed/.test(l.msg))
    assert.deepEqual(faults.map((l) => `${l.msg} ${JSON.stringify(l).slice(0, 500)}`), [], 'requests logged as internal errors')
  })
})
