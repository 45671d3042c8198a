/**
 * Internal broker-to-broker HTTP routes refuse requests without the cluster
 * MAC (nobody on the HTTP port may re-register a broker elsewhere), and
 * accept brokers that hold the secret.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { parseBrokerConfig } from '../../src/broker/index.ts'
import { startBroker } from '../../src/cli/broker.ts'
import { internalHeaders } from '../../src/broker/internal-auth.ts'
import { freePort } from './helpers.ts'

test('internal routes need the cluster MAC', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'rill-auth-'))
  const http = await freePort('127.0.0.1')
  const peer = await freePort('127.0.0.1')
  const config = parseBrokerConfig(['--id', '1', '--dir', dir, '--http', `127.0.0.1:${http}`, '--peer', `127.0.0.1:${peer}`, '--seeds', `1@127.0.0.1:${peer}`], {})
  const running = await startBroker(config, pino({ level: 'silent' }))
  try {
    const url = running.url
    const body = JSON.stringify({ id: 1, httpUrl: 'http://203.0.113.9:1', peerUrl: '203.0.113.9:2' })
    const anonymous = await fetch(`${url}/internal/v1/brokers`, { method: 'POST', headers: { 'content-type': 'application/json' }, body })
    assert.equal(anonymous.status, 401)
    assert.equal(((await anonymous.json()) as { error: { code: string } }).error.code, 'UNAUTHORIZED')
    const forged = await fetch(`${url}/internal/v1/brokers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...internalHeaders(new Uint8Array(32), 'POST', '/internal/v1/brokers', body) },
      body,
    })
    assert.equal(forged.status, 401)
    assert.equal((await fetch(`${url}/internal/v1/leaderships`)).status, 401)
    const signed = await fetch(`${url}/internal/v1/leaderships`, { headers: internalHeaders(config.secret, 'GET', '/internal/v1/leaderships', '') })
    assert.equal(signed.status, 200)
    assert.deepEqual(await signed.json(), { leaderships: [] })
    // The broker's own registration (signed) still went through: it shows up unfenced.
    const deadline = Date.now() + 10_000
    let brokers: { id: number; url: string; fenced?: boolean }[] = []
    while (Date.now() < deadline) {
      brokers = ((await (await fetch(`${url}/v1/metadata`)).json()) as { brokers: typeof brokers }).brokers
      if (brokers.length === 1 && brokers[0]!.fenced === false) break
      await new Promise((r) => setTimeout(r, 50))
    }
    assert.deepEqual(brokers, [{ id: 1, url, fenced: false }])
  } finally {
    await running.stop()
    await rm(dir, { recursive: true, force: true })
  }
})
