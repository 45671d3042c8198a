/**
 * Topic configs as docs/api.md documents them: `retentionMs: -1` and
 * `retentionBytes: -1` keep records forever (Kafka's -1). The schema took
 * -1 and the controller refused it (issue 10, hole 8: "retentionMs: -1 is
 * documented and rejected").
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { parseBrokerConfig } from '../../src/broker/index.ts'
import { startBroker } from '../../src/cli/broker.ts'
import { call, freePort, waitFor } from './helpers.ts'

test('a topic created with retentionMs -1 and retentionBytes -1 keeps records forever and describes so', { timeout: 60_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-topic-config-'))
  const http = await freePort('127.0.0.1')
  const peer = await freePort('127.0.0.1')
  const config = parseBrokerConfig(['--id', '1', '--dir', dir, '--http', `127.0.0.1:${http}`, '--peer', `127.0.0.1:${peer}`, '--seeds', `1@127.0.0.1:${peer}`, '--tick-ms', '20'], {})
  const running = await startBroker(config, pino({ level: 'silent' }))
  try {
    const url = running.url
    const body = { name: 'forever', partitions: 1, replicationFactor: 1, config: { persistence: 'sync', retentionMs: -1, retentionBytes: -1 } }
    let created = await call(url, 'POST', '/v1/topics', body)
    // The broker's own registration may still be under way: NO_QUORUM / too few live brokers is retried (bounded).
    const deadline = Date.now() + 20_000
    while (created.status !== 201 && Date.now() < deadline && (created.status === 503 || created.body?.error?.reason === 'replication-factor')) {
      await new Promise((r) => setTimeout(r, 100))
      created = await call(url, 'POST', '/v1/topics', body)
    }
    assert.equal(created.status, 201, JSON.stringify(created.body))
    const described = await call(url, 'GET', '/v1/topics/forever')
    assert.equal(described.status, 200)
    assert.deepEqual(described.body.config, { persistence: 'sync', retentionMs: -1, retentionBytes: -1 })
    // Its replica opens and takes records.
    await waitFor(async () => (await call(url, 'POST', '/v1/topics/forever/partitions/0/records', { records: [{ value: 'kept' }] })).status === 200, 20_000, 'a produce to forever/0')
    const got = await call(url, 'GET', '/v1/topics/forever/partitions/0/records?offset=0&minCommitted=1&maxWaitMs=5000')
    assert.equal(got.status, 200, JSON.stringify(got.body))
    assert.equal(got.body.records[0].value, 'kept')
    // Below -1, and 0, are refused with a coded error naming the field.
    for (const retentionMs of [-2, 0]) {
      const bad = await call(url, 'POST', '/v1/topics', { ...body, name: `bad${retentionMs}`, config: { persistence: 'sync', retentionMs } })
      assert.equal(bad.status, 400, JSON.stringify(bad.body))
      assert.equal(bad.body.error.code, 'INVALID_REQUEST')
    }
  } finally {
    await running.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
