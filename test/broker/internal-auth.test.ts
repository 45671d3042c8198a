/**
 * Internal broker-to-broker HTTP routes refuse requests without the cluster
 * MAC (nobody on the HTTP port may re-register a broker elsewhere), whatever
 * spelling of the route the router accepts, and accept brokers that hold the
 * secret. Issue 10, hole 1: `POST /%69nternal/v1/brokers` and an
 * absolute-form target `POST http://x/internal/v1/brokers` reached the
 * handler without a MAC (the check compared the raw URL, the router matched
 * the decoded path).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import http from 'node:http'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import pino from 'pino'
import { buildApi } from '../../src/api/index.ts'
import { parseBrokerConfig, type BrokerRegistration } from '../../src/broker/index.ts'
import { startBroker } from '../../src/cli/broker.ts'
import { registerInternalRoutes } from '../../src/cli/internal-routes.ts'
import { ReplayCache, internalHeaders, internalSkewMsMax } from '../../src/broker/internal-auth.ts'
import { TestService } from '../api/helpers.ts'
import { freePort } from './helpers.ts'

const attack = JSON.stringify({ id: 1, httpUrl: 'http://127.0.0.99:9', peerUrl: '127.0.0.99:9', incarnation: 'ab'.repeat(16) })
const identity = (nonce: string) => ({ id: 1, incarnation: 'cd'.repeat(16), httpUrl: 'http://127.0.0.1:1', peerUrl: '127.0.0.1:2', proof: nonce })

/** One raw HTTP request: the request target is sent exactly as given (fetch would normalize it). */
function rawRequest(url: string, options: { method: string; target: string; headers?: Record<string, string>; body?: string }): Promise<{ status: number; body: any }> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const req = http.request({ host: hostname, port, method: options.method, path: options.target, headers: options.headers ?? {}, timeout: 10_000 }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (text += d))
      res.on('end', () => {
        let body: unknown = text
        try {
          body = text.length === 0 ? null : JSON.parse(text)
        } catch {
          // not JSON: kept as text for the assertion message
        }
        resolve({ status: res.statusCode!, body })
      })
    })
    req.on('timeout', () => req.destroy(new Error(`${options.method} ${options.target}: no answer within 10 s`)))
    req.on('error', reject)
    req.end(options.body)
  })
}

/**
 * Spellings of the registration route's target. Those the router maps to
 * the route (percent-encoding, absolute form, query, fragment) must be
 * refused by the route's own check; the others must not reach it at all.
 */
const spellings = [
  '/internal/v1/brokers',
  '/%69nternal/v1/brokers',
  '/internal/v1/%62rokers',
  '/%69%6e%74%65%72%6e%61%6c/v1/brokers',
  'http://x/internal/v1/brokers',
  'http://x/%69nternal/v1/brokers',
  'https://y:1/internal/v1/brokers',
  'http://x/internal/v1/brokers?x',
  '/internal/v1/brokers?x',
  '/internal/v1/brokers?',
  '/internal/v1/brokers#x',
  '/internal%2Fv1/brokers',
  '/internal%2fv1%2fbrokers',
  '//internal/v1/brokers',
  '/internal//v1/brokers',
  '/INTERNAL/v1/brokers',
  '/Internal/v1/Brokers',
  '/internal/v1/brokers/',
  '/internal/v1/brokers/?x',
  '/internal/./v1/brokers',
  '/internal/v1/../v1/brokers',
  '/x/../internal/v1/brokers',
  '/internal/v1/brokers;x',
  '/internal/v1/brokers%00',
  '/%2569nternal/v1/brokers',
  'http://x//internal/v1/brokers',
]

/** The internal routes these tests do not call. */
const unusedControllerCalls = {
  runControllerCall: async (): Promise<void> => {
    throw new Error('not called here')
  },
  createToken: async (): Promise<never> => {
    throw new Error('not called here')
  },
}

/** An API with the internal routes under `secret`; registrations land in `registered`. */
async function internalApp(secret: Uint8Array): Promise<{ app: ReturnType<typeof buildApi>; service: TestService; registered: BrokerRegistration[] }> {
  const registered: BrokerRegistration[] = []
  const service = new TestService()
  const app = buildApi({ service })
  await registerInternalRoutes(app, {
    secret,
    service: { registerBroker: async (r) => void registered.push(r), localLeaderships: () => [], createOffsetsTopic: async () => {}, identity, topicStatus: () => ({ known: false, partitions: [] }), ...unusedControllerCalls },
    offsetsTopic: { name: '__consumer_offsets', partitions: 16 },
  })
  return { app, service, registered }
}

test('every spelling the router maps to an internal route is refused without the MAC; the others do not reach it', async () => {
  const secret = Uint8Array.from(Buffer.alloc(32, 7))
  const { app, service, registered } = await internalApp(secret)
  await app.listen({ host: '127.0.0.1', port: 0 })
  const url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  try {
    let routed = 0
    for (const target of spellings) {
      // Signed as the route: tells whether the router sends this spelling to the route at all.
      const signedHeaders = { 'content-type': 'application/json', ...internalHeaders(secret, 'POST', '/internal/v1/brokers', attack) }
      const before = registered.length
      const signed = await rawRequest(url, { method: 'POST', target, headers: signedHeaders, body: attack })
      assert.ok(signed.status === 204 || signed.status === 404, `${target} signed: ${signed.status} ${JSON.stringify(signed.body)}`)
      assert.equal(registered.length - before, signed.status === 204 ? 1 : 0, `${target}: handler ran only for the signed request that matched`)
      if (signed.status === 204) routed++
      const count = registered.length
      for (const [name, headers] of [
        ['no MAC', { 'content-type': 'application/json' }],
        ['wrong secret', { 'content-type': 'application/json', ...internalHeaders(new Uint8Array(32), 'POST', '/internal/v1/brokers', attack) }],
        ['MAC of the target as sent', { 'content-type': 'application/json', ...internalHeaders(secret, 'POST', target, attack) }],
        ['MAC of another body', { 'content-type': 'application/json', ...internalHeaders(secret, 'POST', '/internal/v1/brokers', '{}') }],
      ] as const) {
        const answer = await rawRequest(url, { method: 'POST', target, headers, body: attack })
        const expected: number = signed.status === 204 ? 401 : 404
        if (name === 'MAC of the target as sent' && target === '/internal/v1/brokers') {
          assert.equal(answer.status, 204, 'the canonical target signed as itself is the honest request')
          registered.pop()
          continue
        }
        assert.equal(answer.status, expected, `${target} (${name}): ${answer.status} ${JSON.stringify(answer.body)}`)
        assert.equal(answer.body.error.code, expected === 401 ? 'UNAUTHORIZED' : 'INVALID_REQUEST', `${target} (${name}) is in our error shape`)
      }
      assert.equal(registered.length, count, `${target}: no unsigned request reached the handler`)
    }
    assert.ok(routed >= 8, `the router maps several spellings to the route (${routed})`)
    // The GET route and the offsets-topic route, through a spelling the old prefix check missed.
    for (const [method, target] of [
      ['GET', '/%69nternal/v1/leaderships'],
      ['POST', 'http://x/internal/v1/offsets-topic'],
      ['HEAD', '/internal/v1/leaderships'],
      ['POST', '/internal/v1/%69dentity'],
    ] as const) {
      const answer = await rawRequest(url, { method, target })
      assert.equal(answer.status, 401, `${method} ${target}`)
    }
  } finally {
    await app.close()
    await service.close()
  }
})

test('the MAC covers the bytes received, not a re-encoding of their parse', async () => {
  const secret = Uint8Array.from(Buffer.alloc(32, 9))
  const { app, service, registered } = await internalApp(secret)
  try {
    // Spacing and key order a JSON.stringify of the parse would not reproduce.
    const body = `{ "peerUrl": "127.0.0.1:2",\n  "httpUrl": "http://127.0.0.1:1", "id": 3, "incarnation":"${'ef'.repeat(16)}" }`
    const ok = await app.inject({ method: 'POST', url: '/internal/v1/brokers', headers: { 'content-type': 'application/json', ...internalHeaders(secret, 'POST', '/internal/v1/brokers', body) }, body })
    assert.equal(ok.statusCode, 204, ok.body)
    assert.deepEqual(registered, [{ id: 3, httpUrl: 'http://127.0.0.1:1', peerUrl: '127.0.0.1:2', incarnation: 'ef'.repeat(16) }])
    // The same parse, signed as its re-encoding: not the bytes sent.
    const reencoded = JSON.stringify(JSON.parse(body))
    const bad = await app.inject({ method: 'POST', url: '/internal/v1/brokers', headers: { 'content-type': 'application/json', ...internalHeaders(secret, 'POST', '/internal/v1/brokers', reencoded) }, body })
    assert.equal(bad.statusCode, 401)
    // A signed body that is not JSON is a coded 400, after the MAC.
    const garbage = 'not json'
    const notJson = await app.inject({ method: 'POST', url: '/internal/v1/brokers', headers: { 'content-type': 'application/json', ...internalHeaders(secret, 'POST', '/internal/v1/brokers', garbage) }, body: garbage })
    assert.equal(notJson.statusCode, 400)
    assert.equal(notJson.json().error.code, 'INVALID_REQUEST')
    assert.equal(registered.length, 1)
  } finally {
    await app.close()
    await service.close()
  }
})

test('a recorded internal request cannot be replayed: its (time, nonce) is accepted once, and the nonce is under the MAC', async () => {
  const secret = Uint8Array.from(Buffer.alloc(32, 5))
  const { app, service, registered } = await internalApp(secret)
  try {
    const headers: Record<string, string> = { 'content-type': 'application/json', ...internalHeaders(secret, 'POST', '/internal/v1/brokers', attack) }
    const first = await app.inject({ method: 'POST', url: '/internal/v1/brokers', headers, body: attack })
    assert.equal(first.statusCode, 204, first.body)
    const replayed = await app.inject({ method: 'POST', url: '/internal/v1/brokers', headers, body: attack })
    assert.equal(replayed.statusCode, 401, replayed.body)
    assert.equal(replayed.json().error.code, 'UNAUTHORIZED')
    assert.match(replayed.json().error.message, /replayed/)
    // Another nonce under the same MAC is not the request signed.
    const otherNonce = await app.inject({ method: 'POST', url: '/internal/v1/brokers', headers: { ...headers, 'x-rill-nonce': 'ff'.repeat(16) }, body: attack })
    assert.equal(otherNonce.statusCode, 401)
    // No nonce at all.
    const { 'x-rill-nonce': _, ...noNonce } = headers
    assert.equal((await app.inject({ method: 'POST', url: '/internal/v1/brokers', headers: noNonce, body: attack })).statusCode, 401)
    // The GET route too.
    const get = internalHeaders(secret, 'GET', '/internal/v1/leaderships', '')
    assert.equal((await app.inject({ method: 'GET', url: '/internal/v1/leaderships', headers: get })).statusCode, 200)
    assert.equal((await app.inject({ method: 'GET', url: '/internal/v1/leaderships', headers: get })).statusCode, 401)
    // A fresh request (new nonce) goes through.
    const fresh = await app.inject({ method: 'POST', url: '/internal/v1/brokers', headers: { 'content-type': 'application/json', ...internalHeaders(secret, 'POST', '/internal/v1/brokers', attack) }, body: attack })
    assert.equal(fresh.statusCode, 204)
    assert.equal(registered.length, 2)
  } finally {
    await app.close()
    await service.close()
  }
})

test('the replay cache is bounded: when full it drops the oldest entry and refuses requests that old, instead of growing', () => {
  const now = 1_000_000
  const cache = new ReplayCache({ entriesMax: 4 })
  for (let i = 0; i < 4; i++) assert.equal(cache.admit({ timeMs: now - 100 + i, nonce: `n${i}`, nowMs: now }), true)
  assert.equal(cache.admit({ timeMs: now - 100, nonce: 'n0', nowMs: now }), false, 'a replay')
  assert.equal(cache.size, 4)
  // Full: n0 (time now-100) is dropped and becomes the floor.
  assert.equal(cache.admit({ timeMs: now, nonce: 'n4', nowMs: now }), true)
  assert.equal(cache.size, 4)
  assert.equal(cache.floorMs, now - 100)
  assert.equal(cache.admit({ timeMs: now - 100, nonce: 'n0', nowMs: now }), false, 'the dropped request, replayed, is refused by the floor')
  assert.equal(cache.admit({ timeMs: now - 150, nonce: 'never-seen', nowMs: now }), false, 'older than the floor: cannot tell, refused')
  // Many more: the size never passes the bound, and every accepted nonce is refused a second time.
  for (let i = 5; i < 1000; i++) {
    assert.equal(cache.admit({ timeMs: now + i, nonce: `n${i}`, nowMs: now + i }), true)
    assert.ok(cache.size <= 4)
    assert.equal(cache.admit({ timeMs: now + i, nonce: `n${i}`, nowMs: now + i }), false)
  }
  // Outside the window either way.
  assert.equal(cache.admit({ timeMs: now + 2000 - internalSkewMsMax - 1, nonce: 'late', nowMs: now + 2000 }), false)
  assert.equal(cache.admit({ timeMs: now + 2000 + internalSkewMsMax + 1, nonce: 'early', nowMs: now + 2000 }), false)
  // Entries past the window are dropped as time moves on (without raising the floor).
  const roomy = new ReplayCache({ entriesMax: 1000 })
  for (let i = 0; i < 100; i++) roomy.admit({ timeMs: now, nonce: `a${i}`, nowMs: now })
  roomy.admit({ timeMs: now + internalSkewMsMax + 1, nonce: 'later', nowMs: now + internalSkewMsMax + 1 })
  assert.ok(roomy.size < 100, `expired entries dropped (${roomy.size} left)`)
  assert.equal(roomy.floorMs, -Infinity)
})

for (const withSecret of [false, true]) {
  test(`a broker ${withSecret ? 'with --secret' : 'with the development secret'}: the issue's two requests answer 401 and move nothing`, async () => {
    const dir = await mkdtemp(join(tmpdir(), 'rill-auth-'))
    const http = await freePort('127.0.0.1')
    const peer = await freePort('127.0.0.1')
    const secretFlag = withSecret ? ['--secret', 'ab'.repeat(32)] : []
    const config = parseBrokerConfig(['--id', '1', '--dir', dir, '--http', `127.0.0.1:${http}`, '--peer', `127.0.0.1:${peer}`, '--seeds', `1@127.0.0.1:${peer}`, ...secretFlag], {})
    const running = await startBroker(config, pino({ level: 'silent' }))
    try {
      const url = running.url
      // The broker's own registration (signed) goes through: it shows up unfenced.
      const deadline = Date.now() + 10_000
      let brokers: { id: number; url: string; fenced?: boolean }[] = []
      while (Date.now() < deadline) {
        brokers = ((await (await fetch(`${url}/v1/metadata`)).json()) as { brokers: typeof brokers }).brokers
        if (brokers.length === 1 && brokers[0]!.fenced === false) break
        await new Promise((r) => setTimeout(r, 50))
      }
      assert.deepEqual(brokers, [{ id: 1, url, fenced: false }])

      // curl -XPOST 'http://BROKER/%69nternal/v1/brokers' ... and the absolute-form target.
      for (const target of ['/%69nternal/v1/brokers', 'http://x/internal/v1/brokers', '/internal/v1/brokers']) {
        const answer = await rawRequest(url, { method: 'POST', target, headers: { 'content-type': 'application/json' }, body: attack })
        assert.equal(answer.status, 401, `${target}: ${JSON.stringify(answer.body)}`)
        assert.equal(answer.body.error.code, 'UNAUTHORIZED')
      }
      const forged = await fetch(`${url}/internal/v1/brokers`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...internalHeaders(new Uint8Array(32), 'POST', '/internal/v1/brokers', attack) },
        body: attack,
      })
      assert.equal(forged.status, 401)
      assert.equal((await fetch(`${url}/internal/v1/leaderships`)).status, 401)
      const signed = await fetch(`${url}/internal/v1/leaderships`, { headers: internalHeaders(config.secret, 'GET', '/internal/v1/leaderships', '') })
      assert.equal(signed.status, 200)
      assert.deepEqual(await signed.json(), { leaderships: [] })
      // Nothing moved.
      const after = ((await (await fetch(`${url}/v1/metadata`)).json()) as { brokers: typeof brokers }).brokers
      assert.deepEqual(after, [{ id: 1, url, fenced: false }])
    } finally {
      await running.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
}
