/**
 * Idempotent producer ids cannot be spoofed (issue 10, hole 3). Probing a
 * cluster found: ids were predictable (broker id · 2^32 + a counter), ids
 * never issued were accepted, and a third party sending
 * `{producerId: PID, producerEpoch: 0, sequence: 1, records: [{value: "EVIL"}]}`
 * before the real producer's sequence 1 made the real producer get
 * `200 baseOffset 11` while offset 11 held EVIL. Here against a real broker
 * over HTTP: the spoof is refused with 403 INVALID_PRODUCER_TOKEN, the real
 * producer's record is the one at its offset, and an id never issued (the
 * old scheme's next one, or any other) writes nothing.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { anonymousPrincipal, checkProducerToken, parseBrokerConfig, producerToken } from '../../src/broker/index.ts'
import { startBroker } from '../../src/cli/broker.ts'
import { call, freePort, waitFor } from './helpers.ts'

const secret = new Uint8Array(32).fill(5)

test('a token verifies only for the id, epoch and principal it was made for, under the secret it was made with', () => {
  const subject = { producerId: 123_456_789_012, producerEpoch: 0, principal: anonymousPrincipal }
  const token = producerToken(secret, subject)
  assert.match(token, /^[0-9a-f]{64}$/)
  checkProducerToken(secret, subject, token)
  const refused = (s: typeof subject, t: string | undefined, k: Uint8Array = secret): void =>
    assert.throws(() => checkProducerToken(k, s, t), { code: 'INVALID_PRODUCER_TOKEN' })
  refused(subject, undefined)
  refused(subject, '')
  refused(subject, token.toUpperCase())
  refused(subject, token.slice(0, 62))
  refused(subject, `${token}ab`)
  refused({ ...subject, producerId: subject.producerId + 1 }, token)
  refused({ ...subject, producerEpoch: 1 }, token)
  refused({ ...subject, principal: 'alice' }, token)
  refused(subject, token, new Uint8Array(32).fill(6))
  // Once client authentication passes principals, a token is bound to the one it was issued to.
  const alices = producerToken(secret, { ...subject, principal: 'alice' })
  checkProducerToken(secret, { ...subject, principal: 'alice' }, alices)
  refused(subject, alices)
})

test('a third party without the token cannot write with a live producer id, nor with one never issued (issue 10, hole 3)', { timeout: 90_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-producer-tokens-'))
  const http = await freePort('127.0.0.1')
  const peer = await freePort('127.0.0.1')
  const config = parseBrokerConfig(
    ['--id', '1', '--dir', dir, '--http', `127.0.0.1:${http}`, '--peer', `127.0.0.1:${peer}`, '--seeds', `1@127.0.0.1:${peer}`, '--tick-ms', '20'],
    {},
  )
  const running = await startBroker(config, pino({ level: 'silent' }))
  try {
    const url = running.url
    const topic = { name: 'spoof', partitions: 1, replicationFactor: 1 }
    // The broker's own registration may still be under way: retried, bounded.
    await waitFor(async () => [201, 409].includes((await call(url, 'POST', '/v1/topics', topic)).status), 30_000, 'topic spoof created')
    const records = '/v1/topics/spoof/partitions/0/records'
    await waitFor(async () => (await call(url, 'POST', records, { records: Array.from({ length: 10 }, (_, i) => ({ value: `plain-${i}` })) })).status === 200, 30_000, 'ten plain records')
    const highWatermark = async (): Promise<number> => (await call(url, 'GET', `${records}?offset=0&maxRecords=1`)).body.highWatermark as number

    // The real producer obtains an id and writes its sequence 0 (offset 10).
    const real = await call(url, 'POST', '/v1/producers')
    assert.equal(real.status, 200)
    const { producerId, producerEpoch, producerToken: token } = real.body as { producerId: number; producerEpoch: number; producerToken: string }
    assert.match(token, /^[0-9a-f]{64}$/, 'POST /v1/producers answers a producer token')
    const first = await call(url, 'POST', records, { producerId, producerEpoch, producerToken: token, sequence: 0, records: [{ value: 'real-0' }] })
    assert.equal(first.status, 200, JSON.stringify(first.body))
    assert.equal(first.body.baseOffset, 10)

    // A third party that learnt the id sends sequence 1 first: without a token, with its own producer's token, with a made-up one.
    const own = (await call(url, 'POST', '/v1/producers')).body as { producerToken: string }
    const spoof = { producerId, producerEpoch: 0, sequence: 1, records: [{ value: 'EVIL' }] }
    for (const producerToken of [undefined, own.producerToken, 'f'.repeat(64)]) {
      const r = await call(url, 'POST', records, producerToken === undefined ? spoof : { ...spoof, producerToken })
      assert.equal(r.status, 403, `spoof with token ${String(producerToken)}: ${JSON.stringify(r.body)}`)
      assert.equal(r.body.error.code, 'INVALID_PRODUCER_TOKEN')
    }
    assert.equal(await highWatermark(), 11, 'the spoofs wrote nothing')

    // The real producer's sequence 1 is written, at offset 11, and offset 11 holds its record.
    const second = await call(url, 'POST', records, { producerId, producerEpoch, producerToken: token, sequence: 1, records: [{ value: 'real-1' }] })
    assert.equal(second.status, 200, JSON.stringify(second.body))
    assert.equal(second.body.baseOffset, 11)
    const at11 = await call(url, 'GET', `${records}?offset=11&maxRecords=1`)
    assert.equal(at11.body.records[0].value, 'real-1')

    // Ids never issued: the old scheme's next one (broker 1 · 2^32 + 2) and any other, with no token or a made-up one.
    for (const guessed of [2 ** 32 + 2, 2 ** 32, 12_345, producerId + 1]) {
      for (const producerToken of [undefined, '0'.repeat(64)]) {
        const body = { producerId: guessed, producerEpoch: 0, sequence: 0, records: [{ value: 'guessed' }], ...(producerToken === undefined ? {} : { producerToken }) }
        const r = await call(url, 'POST', records, body)
        assert.equal(r.status, 403, `guessed id ${guessed}: ${JSON.stringify(r.body)}`)
        assert.equal(r.body.error.code, 'INVALID_PRODUCER_TOKEN')
      }
    }
    assert.equal(await highWatermark(), 12, 'guessed ids wrote nothing')
    // And the ids handed out are not the counter in the clear.
    assert.notEqual(producerId, 2 ** 32)
    assert.notEqual(producerId, 2 ** 32 + 1)
  } finally {
    await running.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
