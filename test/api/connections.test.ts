/**
 * What HTTP connections may hold of a broker (src/api/connections.ts),
 * over real sockets on loopback against an in-process server: clients that
 * pipeline fetches of a large record and never read the answers (issue 10,
 * hole 2: 20 such connections took a broker from 414 MB to ~8 GB and
 * /health stopped answering).
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, type Socket } from 'node:net'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import type { FastifyInstance } from 'fastify'
import { buildApi, connectionLimits } from '../../src/api/index.ts'
import { encodeBatch } from '../../src/wire/index.ts'
import { TestService } from './helpers.ts'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

const MiB = 1024 * 1024
const recordBytes = 1 * MiB
const limits = connectionLimits({ requestsInflightPerConnectionMax: 8, answerBytesPerConnectionMax: 4 * MiB, answerBytesMax: 16 * MiB })
/** Growth of heap + external memory the attacks may cause; unbounded, each built hundreds of 1 MiB answers (see the numbers in the commit). */
const growthBytesMax = 96 * MiB

let service: TestService
let app: FastifyInstance
let port: number

before(async () => {
  service = new TestService()
  app = buildApi({ service, connections: limits })
  await service.createTopic({ name: 'big', partitions: 1, replicationFactor: 1 })
  await service.produce({ topic: 'big', partition: 0, batch: encodeBatch({ records: [{ key: null, value: new Uint8Array(recordBytes).fill(120), headers: [] }] }), acks: 'all' })
  const address = await app.listen({ host: '127.0.0.1', port: 0 })
  port = Number(new URL(address).port)
})

after(async () => {
  await app.close()
  await service.close()
})

const mib = (bytes: number): string => (bytes / MiB).toFixed(1)

/** Heap and buffers in use, after a full collection. */
function memoryNow(): number {
  gc()
  const m = process.memoryUsage()
  return m.heapUsed + m.external
}

/** The largest heap + external seen while `work` runs (sampled every 10 ms). */
async function peakDuring(work: () => Promise<void>): Promise<number> {
  let peak = 0
  const sample = (): void => {
    const m = process.memoryUsage()
    peak = Math.max(peak, m.heapUsed + m.external)
  }
  const timer = setInterval(sample, 10)
  try {
    await work()
  } finally {
    clearInterval(timer)
  }
  sample()
  return peak
}

async function metric(name: string, labels = ''): Promise<number> {
  const text = (await app.inject({ method: 'GET', url: '/metrics' })).body
  let sum = 0
  for (const line of text.split('\n')) if (line.startsWith(name) && line.includes(labels) && !line.startsWith('#')) sum += Number(line.split(' ').pop())
  return sum
}

/** A client that sends `requests` pipelined fetches of the big record at once and never reads an answer. */
function nonReader(requests: number): { socket: Socket; closed: Promise<void> } {
  const socket = connect({ host: '127.0.0.1', port })
  // No 'data' listener: nothing is read past the socket's own small buffer.
  socket.on('error', () => undefined)
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  const one = `GET /v1/topics/big/partitions/0/records?offset=0&maxBytes=${2 * MiB} HTTP/1.1\r\nHost: x\r\n\r\n`
  socket.write(one.repeat(requests))
  return { socket, closed }
}

/** /health on its own connection answers within `ms`. */
async function healthWithin(ms: number): Promise<void> {
  const r = await fetch(`http://127.0.0.1:${port}/health`, { signal: AbortSignal.timeout(ms) })
  assert.equal(r.status, 200)
  await r.json()
}

describe('clients that do not read their answers', () => {
  test('5 connections pipelining 100 fetches of a 1 MiB record: bounded memory, /health answers, the connections are closed and everything is released', { timeout: 60_000 }, async (t) => {
    const baseline = memoryNow()
    const fetchesBefore = service.fetchCalls
    const peak = await peakDuring(async () => {
      const clients = Array.from({ length: 5 }, () => nonReader(100))
      for (let i = 0; i < 3; i++) await healthWithin(5000)
      // Past its in-flight cap and its refusals a connection is destroyed: the clients see their sockets close.
      await within(Promise.all(clients.map((c) => c.closed)), 20_000, 'the broker kept the pipelining connections open')
      await healthWithin(5000)
    })
    const built = service.fetchCalls - fetchesBefore
    t.diagnostic(`fetches read: ${built}; memory growth at peak: ${mib(peak - baseline)} MiB`)
    assert.ok(built <= 5 * limits.requestsInflightPerConnectionMax, `${built} fetches read for 5 connections of at most ${limits.requestsInflightPerConnectionMax} in flight`)
    assert.ok(peak - baseline < growthBytesMax, `memory grew by ${((peak - baseline) / MiB).toFixed(0)} MiB (bound ${growthBytesMax / MiB} MiB)`)
    await waitMetric('rill_http_answer_bytes_queued', (v) => v === 0)
    const released = memoryNow()
    t.diagnostic(`after the clients left: ${mib(released - baseline)} MiB above the start`)
    assert.ok(released - baseline < 16 * MiB, `after the clients left, memory is ${((released - baseline) / MiB).toFixed(0)} MiB above where it was`)
    assert.ok((await metric('rill_http_requests_refused_total', 'reason="destroyed"')) >= 5)
  })

  test('20 connections each with as many fetches in flight as allowed, never read: answers stay within the process bound, the rest are refused OVERLOADED, /health answers; leaving frees it all', { timeout: 60_000 }, async (t) => {
    const baseline = memoryNow()
    const fetchesBefore = service.fetchCalls
    const refusedBefore = await metric('rill_http_requests_refused_total', 'reason="answer_bytes"')
    const perConnection = limits.requestsInflightPerConnectionMax
    const clients: { socket: Socket; closed: Promise<void> }[] = []
    const peak = await peakDuring(async () => {
      for (let i = 0; i < 20; i++) clients.push(nonReader(perConnection))
      // Every request was either read from the log or refused for want of answer memory.
      await waitMetric('rill_http_requests_refused_total', (v) => v - refusedBefore + (service.fetchCalls - fetchesBefore) >= 20 * perConnection, 'reason="answer_bytes"')
      for (let i = 0; i < 3; i++) await healthWithin(5000)
    })
    const queued = await metric('rill_http_answer_bytes_queued')
    t.diagnostic(`fetches read: ${service.fetchCalls - fetchesBefore}; answers queued: ${mib(queued)} MiB; memory growth at peak: ${mib(peak - baseline)} MiB`)
    // JSON of a 1 MiB record is ~1 MiB: the charge may pass the bound by what answers inflate to when built.
    assert.ok(queued <= limits.answerBytesMax * 1.5, `${(queued / MiB).toFixed(1)} MiB of answers queued (bound ${limits.answerBytesMax / MiB} MiB)`)
    assert.ok((await metric('rill_http_requests_refused_total', 'reason="answer_bytes"')) > refusedBefore, 'fetches beyond the bound were refused')
    assert.ok(peak - baseline < growthBytesMax, `memory grew by ${((peak - baseline) / MiB).toFixed(0)} MiB (bound ${growthBytesMax / MiB} MiB)`)
    // Within the cap nothing is closed: the clients hold their connections until they leave.
    for (const c of clients) assert.equal(c.socket.destroyed, false)
    for (const c of clients) c.socket.destroy()
    await waitMetric('rill_http_answer_bytes_queued', (v) => v === 0)
    const released = memoryNow()
    t.diagnostic(`after the clients left: ${mib(released - baseline)} MiB above the start`)
    assert.ok(released - baseline < 16 * MiB, `after the clients left, memory is ${((released - baseline) / MiB).toFixed(0)} MiB above where it was`)
    await healthWithin(5000)
  })
})

/** `promise`, or a rejection naming `what` after `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} (after ${ms} ms)`)), ms)))
  try {
    return await Promise.race([promise, late])
  } finally {
    clearTimeout(timer)
  }
}

async function waitMetric(name: string, ok: (value: number) => boolean, labels = ''): Promise<void> {
  const end = Date.now() + 20_000
  for (;;) {
    const value = await metric(name, labels)
    if (ok(value)) return
    if (Date.now() > end) throw new Error(`${name}${labels} is ${value} after 20 s`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/**
 * Connection count and idle time (issue 10, hole 4): idle connections were
 * never closed, and 1,100 of them took every descriptor of a broker with
 * 1,024. Each scenario runs its own server with small bounds.
 */
describe('connections: count per broker and per address, idle and request time', () => {
  /** A server over `service` with `overrides`, listening on 127.0.0.1. */
  async function serve(overrides: Parameters<typeof connectionLimits>[0]): Promise<{ app: FastifyInstance; port: number }> {
    const server = buildApi({ service, connections: connectionLimits(overrides) })
    const address = await server.listen({ host: '127.0.0.1', port: 0 })
    return { app: server, port: Number(new URL(address).port) }
  }

  /** A raw connection from `localAddress` (127.0.0.0/8) that records what it receives. */
  function open(at: number, localAddress = '127.0.0.1'): { socket: Socket; received: () => string; closed: Promise<void> } {
    const socket = connect({ host: '127.0.0.1', port: at, localAddress })
    let text = ''
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')))
    socket.on('error', () => undefined)
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
    return { socket, received: () => text, closed }
  }

  async function connected(socket: Socket): Promise<void> {
    if (!socket.connecting) return
    await within(new Promise<void>((resolve) => socket.once('connect', () => resolve())), 5000, 'no connection')
  }

  /** GET /health on `socket` (kept alive) answers 200. */
  async function healthOn(c: { socket: Socket; received: () => string }): Promise<void> {
    const before = c.received().length
    c.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
    await waitFor(() => c.received().slice(before).includes('"ok"'), 'no /health answer')
    assert.match(c.received().slice(before), /^HTTP\/1\.1 200/)
  }

  async function gauge(server: FastifyInstance, name: string, labels = ''): Promise<number> {
    const text = (await server.inject({ method: 'GET', url: '/metrics' })).body
    let sum = 0
    for (const line of text.split('\n')) if (line.startsWith(name) && line.includes(labels) && !line.startsWith('#')) sum += Number(line.split(' ').pop())
    return sum
  }

  test('beyond the bound per client address a connection is answered 503 OVERLOADED and closed; other addresses still connect; a freed slot is taken again', { timeout: 60_000 }, async () => {
    const { app: server, port: at } = await serve({ connectionsPerAddressMax: 3, connectionsMax: 100 })
    try {
      const held = [open(at), open(at), open(at)]
      for (const c of held) await connected(c.socket)
      await waitFor(async () => (await gauge(server, 'rill_http_connections_open')) === 3, 'three connections not counted')
      const extra = open(at)
      await within(extra.closed, 10_000, 'the fourth connection from 127.0.0.1 was kept open')
      assert.match(extra.received(), /^HTTP\/1\.1 503/)
      assert.equal(JSON.parse(extra.received().split('\r\n\r\n')[1]!).error.code, 'OVERLOADED')
      assert.equal(await gauge(server, 'rill_http_connections_refused_total', 'reason="connections_per_address"'), 1)
      // The held ones still work, and another address is not affected.
      await healthOn(held[0]!)
      const other = open(at, '127.0.0.2')
      await connected(other.socket)
      await healthOn(other)
      held[1]!.socket.destroy()
      await waitFor(async () => (await gauge(server, 'rill_http_connections_open')) === 3, 'the closed connection was not released')
      const again = open(at)
      await connected(again.socket)
      await healthOn(again)
      for (const c of [...held, other, again]) c.socket.destroy()
    } finally {
      await server.close()
    }
  })

  test('beyond the bound of the broker a connection from any address is refused; held connections keep answering', { timeout: 60_000 }, async () => {
    const { app: server, port: at } = await serve({ connectionsPerAddressMax: 2, connectionsMax: 4 })
    try {
      const held = [open(at, '127.0.0.2'), open(at, '127.0.0.2'), open(at, '127.0.0.3'), open(at, '127.0.0.4')]
      for (const c of held) await connected(c.socket)
      await waitFor(async () => (await gauge(server, 'rill_http_connections_open')) === 4, 'four connections not counted')
      const extra = open(at, '127.0.0.5')
      await within(extra.closed, 10_000, 'a fifth connection was kept open')
      assert.match(extra.received(), /^HTTP\/1\.1 503/)
      assert.equal(await gauge(server, 'rill_http_connections_refused_total', 'reason="connections"'), 1)
      for (const c of held) await healthOn(c)
      for (const c of held) c.socket.destroy()
      await waitFor(async () => (await gauge(server, 'rill_http_connections_open')) === 0, 'connections not released')
    } finally {
      await server.close()
    }
  })

  test('a connection that sends nothing, and one kept alive after its answer, are closed after the idle time; a long poll longer than it is not cut', { timeout: 60_000 }, async () => {
    const idleMs = 300
    const { app: server, port: at } = await serve({ idleMs })
    try {
      const silent = open(at)
      const kept = open(at)
      await connected(kept.socket)
      await healthOn(kept)
      await within(silent.closed, 10_000, 'a connection that never sent a request stayed open')
      await within(kept.closed, 10_000, 'a kept-alive connection stayed open')
      assert.ok((await gauge(server, 'rill_http_connections_closed_total', 'reason="idle"')) >= 2)
      // A fetch waiting 4 idle times for records that never come answers 200 with none.
      const polling = open(at)
      polling.socket.write(`GET /v1/topics/big/partitions/0/records?offset=1&maxWaitMs=${4 * idleMs} HTTP/1.1\r\nHost: x\r\n\r\n`)
      await waitFor(() => polling.received().includes('\r\n\r\n'), 'the long poll was not answered')
      assert.match(polling.received(), /^HTTP\/1\.1 200/)
      polling.socket.destroy()
    } finally {
      await server.close()
    }
  })

  test('a client that stops reading its answers is closed after the idle time, and what it held is released', { timeout: 60_000 }, async () => {
    const { app: server, port: at } = await serve({ idleMs: 500, requestsInflightPerConnectionMax: 8 })
    try {
      const fetchesBefore = service.fetchCalls
      const reader = connect({ host: '127.0.0.1', port: at })
      reader.on('error', () => undefined)
      // 8 answers of 1 MiB are more than loopback's socket buffers take: the writes stall, and nothing is read.
      reader.write(`GET /v1/topics/big/partitions/0/records?offset=0&maxBytes=${2 * MiB} HTTP/1.1\r\nHost: x\r\n\r\n`.repeat(8))
      await waitFor(() => service.fetchCalls > fetchesBefore, 'no fetch read')
      // The client reads nothing, so it would not even see the close: the broker's gauges say it.
      await waitFor(async () => (await gauge(server, 'rill_http_connections_open')) === 0, 'a connection whose answers were not read stayed open')
      // Stalled if its last answer was still waiting for the client, idle if the kernel's buffers took them all.
      assert.equal(await gauge(server, 'rill_http_connections_closed_total'), 1)
      await waitFor(async () => (await gauge(server, 'rill_http_answer_bytes_queued')) === 0, 'answers of the closed connection still charged')
      reader.destroy()
    } finally {
      await server.close()
    }
  })

  test('a client that trickles its headers gets 408 and is closed after the headers bound', { timeout: 60_000 }, async () => {
    const { app: server, port: at } = await serve({ headersMs: 300, requestMs: 600, idleMs: 60_000 })
    try {
      const slow = open(at)
      await connected(slow.socket)
      slow.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n')
      // Keep sending a header byte now and then, so the connection is never idle.
      let n = 0
      const drip = setInterval(() => !slow.socket.destroyed && slow.socket.write(`X-${n++}: y\r\n`), 50)
      try {
        await within(slow.closed, 10_000, 'a client trickling headers stayed connected')
      } finally {
        clearInterval(drip)
      }
      assert.match(slow.received(), /^HTTP\/1\.1 408/)
    } finally {
      await server.close()
    }
  })
})

/** Polls `ok` every 10 ms until it holds, for at most 20 s. */
async function waitFor(ok: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 20_000
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`${what} (after 20 s)`)
    await new Promise((r) => setTimeout(r, 10))
  }
}
