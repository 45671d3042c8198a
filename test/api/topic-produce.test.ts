/**
 * The topic route's per-partition answer (issue 10, hole 7): a produce
 * split over partitions of which some fail answers which parts were written
 * (with offsets) and which were not (code, retriable, the request indexes of
 * their records), so resending exactly the failed records leaves every
 * record in the log once. Before, the answer was the first failure's 421 and
 * the only safe-looking retry — the whole request — wrote the other parts twice.
 */
import { after, before, beforeEach, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { Packr, Unpackr } from 'msgpackr'
import type { FastifyInstance } from 'fastify'
import { ErrorCode, RillError } from '../../src/base/index.ts'
import { buildApi, type ProduceCall, type ProduceOutcome } from '../../src/api/index.ts'
import { partitionForKey } from '../../src/wire/index.ts'
import { TestService } from './helpers.ts'

const packr = new Packr({ useRecords: false })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' })
const text = (s: string): Uint8Array => new TextEncoder().encode(s)

/** A service whose produce fails, for the partitions the test names, with the error the test gives (a leader gone, a full disk, a bug). */
class FlakyService extends TestService {
  readonly failures = new Map<number, unknown>()
  override async produce(call: ProduceCall): Promise<ProduceOutcome> {
    const failure = this.failures.get(call.partition)
    if (failure !== undefined) {
      this.produceCalls++
      throw failure
    }
    return super.produce(call)
  }
}

/** A leader that is gone with no successor known yet (an election under way). */
const leaderGone = (): RillError => new RillError(ErrorCode.NOT_LEADER, 'no leader (election under way)', { details: { leader: null } })

let service: FlakyService
let app: FastifyInstance
let topicSeq = 0
let topic = ''

before(async () => {
  service = new FlakyService()
  app = buildApi({ service, forwardProduce: false })
  await app.ready()
})

after(async () => {
  await app.close()
  await service.close()
})

beforeEach(async () => {
  topic = `split-${topicSeq++}`
  service.failures.clear()
  await service.createTopic({ name: topic, partitions: 3, replicationFactor: 1 })
})

async function produce(records: readonly object[]): Promise<{ status: number; body: any }> {
  const r = await app.inject({ method: 'POST', url: `/v1/topics/${topic}/records`, payload: { records } })
  return { status: r.statusCode, body: r.json() }
}

/** Every value in the topic's three partitions, in partition then offset order. */
async function valuesInTopic(): Promise<string[]> {
  const values: string[] = []
  for (const p of [0, 1, 2]) {
    const r = await app.inject({ method: 'GET', url: `/v1/topics/${topic}/partitions/${p}/records?offset=0` })
    assert.equal(r.statusCode, 200, r.body)
    values.push(...r.json().records.map((x: { value: string }) => x.value))
  }
  return values
}

const sorted = (xs: readonly string[]): string[] => [...xs].sort()
const recordCount = (o: { baseOffset: number; lastOffset: number }): number => o.lastOffset - o.baseOffset + 1

describe('topic route, some partitions fail (issue 10, hole 7)', () => {
  test('answers 207: the written partitions with offsets, the failed one with its code and records; resending those leaves each record once', async () => {
    // Six keyed records (murmur2 decides) and six without a key (round-robin: every partition gets some).
    const records = Array.from({ length: 12 }, (_, i) => (i < 6 ? { key: `key-${i}`, value: `v${i}` } : { value: `v${i}` }))
    service.failures.set(1, leaderGone())
    const first = await produce(records)
    assert.equal(first.status, 207, JSON.stringify(first.body))
    assert.deepEqual(first.body.offsets.map((o: any) => o.partition), [0, 2])
    for (const o of first.body.offsets) assert.equal(o.baseOffset, 0)
    assert.equal(first.body.failed.length, 1)
    const failed = first.body.failed[0]
    assert.deepEqual({ ...failed, records: undefined }, {
      partition: 1, code: 'NOT_LEADER', message: 'no leader (election under way)', retriable: true, leader: null, records: undefined,
    })
    // Each keyed record is named as failed exactly when its key routes to the failed partition.
    for (let i = 0; i < 6; i++) assert.equal(failed.records.includes(i), partitionForKey(text(`key-${i}`), 3) === 1, `record ${i}`)
    assert.ok(failed.records.some((i: number) => i >= 6), 'round-robin gave partition 1 a keyless record')
    // Written + failed account for every record once; what is in the log is exactly the records not named as failed.
    assert.equal(first.body.offsets.reduce((n: number, o: any) => n + recordCount(o), 0) + failed.records.length, records.length)
    const notFailed = records.filter((_, i) => !failed.records.includes(i)).map((r) => r.value)
    assert.deepEqual(sorted(await valuesInTopic()), sorted(notFailed))

    // The leader is back: resend only what the answer names.
    service.failures.clear()
    const retry = await produce(failed.records.map((i: number) => records[i]!))
    assert.equal(retry.status, 200, JSON.stringify(retry.body))
    assert.equal(retry.body.failed, undefined)
    assert.deepEqual(sorted(await valuesInTopic()), sorted(records.map((r) => r.value)), 'every record exactly once')
  })

  test('a failure that a retry will not fix is not retriable; an unexpected one hides its internals', async () => {
    service.failures.set(0, new RillError(ErrorCode.STORAGE_FULL, 'disk full'))
    service.failures.set(2, new Error('bug at /srv/secret/path'))
    const r = await produce([{ value: 'a' }, { value: 'b' }, { value: 'c' }])
    assert.equal(r.status, 207, JSON.stringify(r.body))
    assert.deepEqual(r.body.offsets.map((o: any) => o.partition), [1])
    assert.deepEqual(r.body.failed.map((f: any) => [f.partition, f.code, f.retriable, f.records.length]), [
      [0, 'STORAGE_FULL', false, 1],
      [2, 'INTERNAL', false, 1],
    ])
    assert.equal(r.body.failed[1].message, 'internal error')
    assert.equal(r.body.failed[0].leader, undefined)
  })

  test('msgpack answers carry the same per-partition results', async () => {
    service.failures.set(2, leaderGone())
    const r = await app.inject({
      method: 'POST',
      url: `/v1/topics/${topic}/records`,
      headers: { 'content-type': 'application/msgpack', accept: 'application/msgpack' },
      payload: packr.pack({ records: [{ value: text('a') }, { value: text('b') }, { value: text('c') }] }),
    })
    assert.equal(r.statusCode, 207)
    const body = unpackr.unpack(r.rawPayload)
    assert.deepEqual(body.offsets.map((o: any) => o.partition), [0, 1])
    assert.deepEqual(body.failed.map((f: any) => [f.partition, f.code, f.retriable, f.records.length]), [[2, 'NOT_LEADER', true, 1]])
  })

  test('when no part was written the answer is the first failure\'s error with every part\'s result, and resending the whole request writes each record once', async () => {
    for (const p of [0, 1, 2]) service.failures.set(p, leaderGone())
    const records = [{ value: 'x0' }, { value: 'x1' }, { value: 'x2' }, { key: 'k', value: 'x3' }]
    const r = await produce(records)
    assert.equal(r.status, 421, JSON.stringify(r.body))
    assert.equal(r.body.error.code, 'NOT_LEADER')
    assert.deepEqual(r.body.error.offsets, [])
    assert.deepEqual(r.body.error.failed.map((f: any) => f.partition), [0, 1, 2])
    assert.deepEqual(r.body.error.failed.flatMap((f: any) => f.records).sort(), [0, 1, 2, 3])
    assert.deepEqual(await valuesInTopic(), [])
    service.failures.clear()
    const again = await produce(records)
    assert.equal(again.status, 200, JSON.stringify(again.body))
    assert.deepEqual(sorted(await valuesInTopic()), ['x0', 'x1', 'x2', 'x3'])
  })

  test('none written and one part timed out (maybe written): not a 421, which undici would resend by itself', async () => {
    service.failures.set(0, leaderGone())
    service.failures.set(1, new RillError(ErrorCode.TIMEOUT, 'no commit in time'))
    service.failures.set(2, leaderGone())
    const r = await produce([{ value: 'a' }, { value: 'b' }, { value: 'c' }])
    assert.equal(r.status, 503, JSON.stringify(r.body))
    assert.equal(r.body.error.code, 'TIMEOUT')
    assert.deepEqual(r.body.error.failed.map((f: any) => [f.partition, f.code, f.retriable]), [
      [0, 'NOT_LEADER', true],
      [1, 'TIMEOUT', true],
      [2, 'NOT_LEADER', true],
    ])
  })

  test('through fetch, which resends a 421 once by itself (the Fetch standard), a partial failure writes nothing twice', async () => {
    const address = await app.listen({ host: '127.0.0.1', port: 0 })
    service.failures.set(1, leaderGone())
    const callsBefore = service.produceCalls
    const values = ['a', 'b', 'c']
    const r = await fetch(`${address}/v1/topics/${topic}/records`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ records: values.map((value) => ({ value })) }),
      signal: AbortSignal.timeout(10_000),
    })
    const text = await r.text()
    assert.equal(r.status, 207, text)
    // One request reached the broker: three parts produced once (a 421 would have been sent again, two parts written twice).
    assert.equal(service.produceCalls - callsBefore, 3)
    const failed: number[] = JSON.parse(text).failed[0].records
    assert.deepEqual(sorted(await valuesInTopic()), values.filter((_, i) => !failed.includes(i)))
  })

  test('every part written is a plain 200 { offsets }', async () => {
    const r = await produce([{ value: 'a' }, { value: 'b' }, { value: 'c' }])
    assert.equal(r.status, 200)
    assert.deepEqual(r.body, { offsets: [0, 1, 2].map((partition) => ({ partition, baseOffset: 0, lastOffset: 0 })) })
  })
})
