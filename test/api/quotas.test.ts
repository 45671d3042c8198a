/**
 * Quotas (src/api/quotas.ts): the bucket math on a manual clock, and the
 * HTTP API over real partitions (helpers.ts) with a virtual runtime, so a
 * held answer is measured on the injected clock, never on the wall clock:
 * a client over its quota gets its answers delayed by exactly the time that
 * brings it back under, told in `x-rill-throttle-ms`; another client is not
 * affected; nothing is dropped.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { request as httpRequest } from 'node:http'
import { Readable } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { QuotaTable, TokenBucket, buildApi, quotaKeyOf, throttleHeader, type QuotaConfig } from '../../src/api/index.ts'
import { VirtualRuntime } from '../../src/sim/runtime.ts'
import { TestService, until } from './helpers.ts'

const noQuota = { produceBytesPerSecond: null, fetchBytesPerSecond: null, requestsPerSecond: null, throttleMsMax: 5000 } as const

function manualClock(): { nowMs(): number; advance(ms: number): void } {
  let t = 0
  return { nowMs: () => t, advance: (ms) => void (t += ms) }
}

describe('token bucket', () => {
  test('starts full, charges into debt, and the debt is paid back at the rate', () => {
    const b = new TokenBucket({ ratePerSecond: 1000, burst: 1000, debtMax: 5000, nowMs: 0 })
    assert.equal(b.throttleMs(0), 0)
    b.charge(1000, 0)
    assert.equal(b.tokens(0), 0)
    assert.equal(b.throttleMs(0), 0, 'exactly at the quota is not over it')
    b.charge(500, 0)
    assert.equal(b.throttleMs(0), 500, '500 bytes over at 1000 B/s: 500 ms')
    assert.equal(b.throttleMs(250), 250)
    assert.equal(b.throttleMs(500), 0)
    assert.equal(b.isFull(500), false)
    assert.equal(b.isFull(1500), true)
  })

  test('refill stops at the burst; debt stops at debtMax', () => {
    const b = new TokenBucket({ ratePerSecond: 100, burst: 100, debtMax: 200, nowMs: 0 })
    assert.equal(b.tokens(60_000), 100, 'an hour idle still holds one burst')
    b.charge(1_000_000, 60_000)
    assert.equal(b.tokens(60_000), -200)
    assert.equal(b.throttleMs(60_000), 2000, 'the debt cap bounds the hold')
  })

  test('a clock that does not move refills nothing; fractions accumulate', () => {
    const b = new TokenBucket({ ratePerSecond: 3, burst: 3, debtMax: 30, nowMs: 10 })
    b.charge(6, 10)
    assert.equal(b.throttleMs(10), 1000)
    assert.equal(b.throttleMs(5), 1000, 'an earlier time changes nothing')
    assert.equal(b.throttleMs(343), 667)
    assert.equal(b.throttleMs(1009), 1, 'ceil: 0.003 tokens short is still 1 ms')
    assert.equal(b.throttleMs(1010), 0)
  })
})

describe('quota table', () => {
  test('each kind has its bucket, requests are shared, the hold is the larger, capped at throttleMsMax', () => {
    const clock = manualClock()
    const t = new QuotaTable({ produceBytesPerSecond: 1000, fetchBytesPerSecond: 2000, requestsPerSecond: 2, throttleMsMax: 3000 }, clock)
    assert.equal(t.charge('address:a', { kind: 'produce', bytes: 1500, requests: 1 }), 500)
    assert.equal(t.throttleMs('address:a', 'fetch'), 0, 'produce bytes do not count against fetch')
    assert.equal(t.charge('address:a', { kind: 'fetch', bytes: 10, requests: 1 }), 0, 'second request: at the requests quota, not over')
    assert.equal(t.charge('address:a', { kind: 'fetch', bytes: 10, requests: 1 }), 500, 'third request in the same instant: 1 request over at 2/s')
    assert.equal(t.throttleMs('address:a', 'produce'), 500)
    assert.equal(t.charge('address:a', { kind: 'produce', bytes: 100_000, requests: 0 }), 3000, 'capped at throttleMsMax')
    assert.equal(t.throttleMs('address:b', 'produce'), 0, 'another key is not affected')
    clock.advance(3000)
    assert.equal(t.throttleMs('address:a', 'produce'), 0, 'whole again after throttleMsMax')
  })

  test('bounded keys: idle ones are forgotten first, then the least recently used', () => {
    const clock = manualClock()
    const t = new QuotaTable({ ...noQuota, produceBytesPerSecond: 100, keysMax: 3 }, clock)
    t.charge('address:1', { kind: 'produce', bytes: 50, requests: 1 })
    t.charge('address:2', { kind: 'produce', bytes: 500, requests: 1 })
    t.charge('address:3', { kind: 'produce', bytes: 500, requests: 1 })
    assert.equal(t.size, 3)
    clock.advance(1000)
    // key 1 is full again (idle): it goes first, without forgiving anyone's debt.
    t.charge('address:4', { kind: 'produce', bytes: 500, requests: 1 })
    assert.equal(t.size, 3)
    assert.equal(t.evictedBusy, 0)
    assert.ok(t.throttleMs('address:2', 'produce') > 0)
    // Nobody idle: the least recently used (2) is forgotten, and counted.
    t.charge('address:3', { kind: 'produce', bytes: 1, requests: 1 })
    t.charge('address:5', { kind: 'produce', bytes: 500, requests: 1 })
    assert.equal(t.size, 3)
    assert.equal(t.evictedBusy, 1)
    assert.equal(t.throttleMs('address:2', 'produce'), 0)
    assert.ok(t.throttleMs('address:3', 'produce') > 0)
  })

  test('idle keys are swept as new ones arrive, not kept until the bound', () => {
    const clock = manualClock()
    const t = new QuotaTable({ ...noQuota, requestsPerSecond: 10 }, clock)
    for (let i = 0; i < 100; i++) {
      t.charge(`address:${i}`, { kind: 'fetch', bytes: 0, requests: 1 })
      clock.advance(1000)
    }
    assert.ok(t.size <= 2, `idle keys swept (${t.size} tracked)`)
  })
})

test('quotaKeyOf: the principal when there is one, else the address, never confused', () => {
  const req = (principal: unknown, ip: string): FastifyRequest => ({ principal, ip }) as unknown as FastifyRequest
  assert.equal(quotaKeyOf(req(null, '127.0.0.5')), 'address:127.0.0.5')
  assert.equal(quotaKeyOf(req(undefined, '::1')), 'address:::1')
  assert.equal(quotaKeyOf(req('alice', '127.0.0.5')), 'principal:alice')
  assert.notEqual(quotaKeyOf(req('127.0.0.5', '127.0.0.6')), quotaKeyOf(req(null, '127.0.0.5')))
})

/** The API over real partitions with quotas, on a virtual clock that only the test moves. */
async function quotaApi(quotas: Partial<QuotaConfig>): Promise<{ app: FastifyInstance; service: TestService; runtime: VirtualRuntime }> {
  const service = new TestService()
  const runtime = new VirtualRuntime()
  const app = buildApi({ service, runtime, quotas: { ...noQuota, ...quotas } })
  await app.ready()
  await service.createTopic({ name: 't', partitions: 1, replicationFactor: 1 })
  return { app, service, runtime }
}

/** A promise with a flag saying whether it settled. */
function tracked<T>(p: Promise<T>): { promise: Promise<T>; settled: () => boolean } {
  let done = false
  const promise = p.finally(() => void (done = true))
  return { promise, settled: () => done }
}

/** Waits (real time, with a deadline) until an answer is held: a hold is the only timer on the virtual clock. */
async function held(runtime: VirtualRuntime): Promise<number> {
  await until(() => runtime.nextEventMs() !== undefined)
  return runtime.nextEventMs()!
}

/** `p`, which must settle without the virtual clock moving: a test fails (not hangs) when it is held. */
async function promptly<T>(p: Promise<T>, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not answered within ${ms} ms of real time: held?`)), ms)
  })
  try {
    return await Promise.race([p, late])
  } finally {
    clearTimeout(timer)
  }
}

const produceBody = (bytes: number): { records: { value: string }[] } => ({ records: [{ value: 'x'.repeat(bytes) }] })

describe('produce over its quota is delayed, not dropped', () => {
  let api: Awaited<ReturnType<typeof quotaApi>>
  before(async () => {
    api = await quotaApi({ produceBytesPerSecond: 1000 })
  })
  after(async () => {
    await api.app.close()
    await api.service.close()
  })

  test('held for exactly the time that pays the debt back; another client answered meanwhile; every record written', async () => {
    const { app, service, runtime } = api
    const body = produceBody(2500)
    const bodyBytes = Buffer.byteLength(JSON.stringify(body))
    const first = tracked(app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', payload: body, remoteAddress: '127.0.0.5' }))
    const holdAt = await held(runtime)
    assert.equal(holdAt, bodyBytes - 1000, 'one second of burst, then 1 ms per byte over')
    assert.equal(service.partition('t', 0).state.highWatermark, 1, 'written before the answer is held (as in Kafka)')
    // Another key, while the first is held: answered with no virtual time passing.
    const other = await promptly(app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', payload: produceBody(100), remoteAddress: '127.0.0.6' }))
    assert.equal(other.statusCode, 200)
    assert.equal(other.headers[throttleHeader], '0')
    assert.equal(runtime.nowMs(), 0)
    await runtime.runUntil(holdAt - 1)
    assert.equal(first.settled(), false, 'not answered before the hold ends')
    await runtime.runUntil(holdAt)
    const r = await first.promise
    assert.equal(r.statusCode, 200)
    assert.equal(r.headers[throttleHeader], String(holdAt))
    assert.equal(r.json().baseOffset, 0)
    // The debt is paid: the next produce is held for its own excess only, and still answered.
    const second = tracked(app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', payload: body, remoteAddress: '127.0.0.5' }))
    const secondAt = await held(runtime)
    assert.equal(secondAt - holdAt, bodyBytes, 'no burst left: every byte costs 1 ms')
    await runtime.runUntil(secondAt)
    const r2 = await second.promise
    assert.equal(r2.statusCode, 200)
    assert.equal(r2.headers[throttleHeader], String(bodyBytes))
    assert.equal(service.partition('t', 0).state.highWatermark, 3, 'nothing dropped')
    const metrics = await app.inject({ method: 'GET', url: '/metrics' })
    assert.match(metrics.body, /rill_quota_throttle_seconds_total\{kind="produce",key="address"\} \d/)
    assert.match(metrics.body, /rill_quota_throttled_total\{kind="produce",key="address"\} 2/)
  })

  test('a chunked body (no Content-Length) is counted as it arrives', async () => {
    const { app, runtime } = api
    const text = JSON.stringify(produceBody(3000))
    const start = runtime.nowMs()
    const r = tracked(
      app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', headers: { 'content-type': 'application/json' }, payload: Readable.from([Buffer.from(text)]), remoteAddress: '127.0.0.7' }),
    )
    const at = await held(runtime)
    assert.equal(at - start, Buffer.byteLength(text) - 1000)
    await runtime.runUntil(at)
    assert.equal((await r.promise).statusCode, 200)
  })
})

test('fetch: the answer bytes are charged and the answer held', async () => {
  const { app, service, runtime } = await quotaApi({ fetchBytesPerSecond: 1000 })
  try {
    const w = await app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', payload: produceBody(1500) })
    assert.equal(w.statusCode, 200)
    assert.equal(w.headers[throttleHeader], '0', 'produce is not under the fetch quota')
    const f = tracked(app.inject({ method: 'GET', url: '/v1/topics/t/partitions/0/records?offset=0', remoteAddress: '127.0.0.8' }))
    const at = await held(runtime)
    await runtime.runUntil(at - 1)
    assert.equal(f.settled(), false)
    await runtime.runUntil(at)
    const r = await f.promise
    assert.equal(r.statusCode, 200)
    assert.equal(r.json().records.length, 1)
    assert.equal(at, r.rawPayload.length - 1000, 'held 1 ms per answer byte over the burst')
    assert.equal(r.headers[throttleHeader], String(at))
  } finally {
    await app.close()
    await service.close()
  }
})

test('requests per second: the request over the rate is held one period', async () => {
  const { app, service, runtime } = await quotaApi({ requestsPerSecond: 2 })
  try {
    const fetch = (): Promise<{ statusCode: number; headers: Record<string, unknown> }> =>
      app.inject({ method: 'GET', url: '/v1/topics/t/partitions/0/records?offset=0', remoteAddress: '127.0.0.9' })
    assert.equal((await promptly(fetch())).headers[throttleHeader], '0')
    assert.equal((await promptly(fetch())).headers[throttleHeader], '0')
    const third = tracked(fetch())
    assert.equal(await held(runtime), 500)
    await runtime.runUntil(500)
    assert.equal((await third.promise).headers[throttleHeader], '500')
    const health = await app.inject({ method: 'GET', url: '/health', remoteAddress: '127.0.0.9' })
    assert.equal(health.headers[throttleHeader], undefined, 'only produce and fetch are quota\'d')
  } finally {
    await app.close()
    await service.close()
  }
})

test('a client in debt with its held answers at the bound is refused 429 THROTTLED before anything is written', async () => {
  const { app, service, runtime } = await quotaApi({ produceBytesPerSecond: 1000, heldAnswersPerKeyMax: 1 })
  try {
    const first = tracked(app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', payload: produceBody(2500), remoteAddress: '127.0.0.10' }))
    const at = await held(runtime)
    const calls = service.produceCalls
    const refused = await promptly(app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', payload: produceBody(10), remoteAddress: '127.0.0.10' }))
    assert.equal(refused.statusCode, 429)
    assert.equal(refused.json().error.code, 'THROTTLED')
    assert.equal(refused.json().error.throttleMs, at)
    assert.equal(refused.headers['retry-after'], String(Math.ceil(at / 1000)))
    assert.equal(service.produceCalls, calls, 'refused before the broker was called')
    assert.equal(service.partition('t', 0).state.highWatermark, 1)
    const other = await promptly(app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', payload: produceBody(10), remoteAddress: '127.0.0.11' }))
    assert.equal(other.statusCode, 200, 'another client is not refused')
    await runtime.runUntil(at)
    assert.equal((await first.promise).statusCode, 200)
    const metrics = await app.inject({ method: 'GET', url: '/metrics' })
    assert.match(metrics.body, /rill_quota_refused_total\{kind="produce",key="address"\} 1/)
  } finally {
    await app.close()
    await service.close()
  }
})

test('with a principal (set by an authentication hook registered after the API), quotas follow it across addresses', async () => {
  const service = new TestService()
  const runtime = new VirtualRuntime()
  const app = buildApi({ service, runtime, quotas: { ...noQuota, produceBytesPerSecond: 1000 } })
  // As client authentication will: an onRequest hook of its own, registered after buildApi.
  app.addHook('onRequest', async (request) => {
    const name = request.headers['x-test-principal']
    ;(request as unknown as { principal: string | null }).principal = typeof name === 'string' ? name : null
  })
  try {
    await app.ready()
    await service.createTopic({ name: 't', partitions: 1, replicationFactor: 1 })
    const produce = (principal: string, remoteAddress: string, bytes: number) =>
      app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', payload: produceBody(bytes), headers: { 'x-test-principal': principal }, remoteAddress })
    const first = tracked(produce('alice', '127.0.0.20', 2500))
    const at = await held(runtime)
    const bob = await promptly(produce('bob', '127.0.0.20', 10))
    assert.equal(bob.headers[throttleHeader], '0', 'another principal on the same address is not affected')
    const alice = tracked(produce('alice', '127.0.0.21', 10))
    await metricShows(app, /^rill_quota_held_answers 2$/m)
    await runtime.runUntil(at)
    assert.equal((await first.promise).statusCode, 200)
    assert.equal(alice.settled(), false, 'alice from another address shares her debt')
    await runtime.runUntil(at + 1000)
    const r = await alice.promise
    assert.ok(Number(r.headers[throttleHeader]) > at, 'held for her whole debt')
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
    assert.match(metrics, /rill_quota_throttled_total\{kind="produce",key="principal"\} 2/)
  } finally {
    await app.close()
    await service.close()
  }
})

test('the bytes of held answers are bounded too: past heldBytesMax a client in debt is refused', async () => {
  const { app, service, runtime } = await quotaApi({ produceBytesPerSecond: 1000, heldBytesMax: 1 })
  try {
    const first = tracked(app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', payload: produceBody(2500), remoteAddress: '127.0.0.13' }))
    const at = await held(runtime)
    const refused = await promptly(app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', payload: produceBody(10), remoteAddress: '127.0.0.13' }))
    assert.equal(refused.statusCode, 429)
    await runtime.runUntil(at)
    assert.equal((await first.promise).statusCode, 200)
  } finally {
    await app.close()
    await service.close()
  }
})

/** Polls /metrics (real time, with a deadline) until `pattern` shows. */
async function metricShows(app: FastifyInstance, pattern: RegExp, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    const body = (await app.inject({ method: 'GET', url: '/metrics' })).body
    if (pattern.test(body)) return
    if (Date.now() > end) assert.fail(`metrics never showed ${pattern}:\n${body}`)
    await new Promise((r) => setTimeout(r, 5))
  }
}

test('a client that goes away frees its held answer at once', async () => {
  const { app, service, runtime } = await quotaApi({ produceBytesPerSecond: 1000 })
  try {
    await app.listen({ host: '127.0.0.1', port: 0 })
    const { port } = app.server.address() as { port: number }
    const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/v1/topics/t/partitions/0/records', headers: { 'content-type': 'application/json' } })
    req.on('error', () => {})
    req.end(JSON.stringify(produceBody(4000)))
    await held(runtime)
    await metricShows(app, /^rill_quota_held_answers 1$/m)
    req.destroy()
    await metricShows(app, /^rill_quota_held_answers 0$/m)
    assert.equal(runtime.nowMs(), 0, 'released by the disconnect, not by time')
  } finally {
    await app.close()
    await service.close()
  }
})

test('closing the server answers held requests at once', async () => {
  const { app, service, runtime } = await quotaApi({ produceBytesPerSecond: 1000 })
  try {
    const r = tracked(app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', payload: produceBody(4000), remoteAddress: '127.0.0.12' }))
    await held(runtime)
    await promptly(app.close())
    const answer = await promptly(r.promise)
    assert.equal(answer.statusCode, 200)
    assert.equal(runtime.nowMs(), 0, 'no virtual time passed')
  } finally {
    await service.close()
  }
})

test('without quotas (the default) nothing is tracked or announced', async () => {
  const service = new TestService()
  const app = buildApi({ service })
  try {
    await app.ready()
    await service.createTopic({ name: 't', partitions: 1, replicationFactor: 1 })
    const r = await app.inject({ method: 'POST', url: '/v1/topics/t/partitions/0/records', payload: produceBody(100_000 / 10) })
    assert.equal(r.statusCode, 200)
    assert.equal(r.headers[throttleHeader], undefined)
    const metrics = await app.inject({ method: 'GET', url: '/metrics' })
    assert.doesNotMatch(metrics.body, /rill_quota_/)
  } finally {
    await app.close()
    await service.close()
  }
})
