/**
 * Who may connect, and what a connection may send: strangers (wrong secret,
 * wrong cluster id, unknown or wrong-direction id, a second connection, a
 * silent socket) are refused with a log line; an oversized or malformed
 * frame closes that one connection while the process and the other
 * connections live on.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import net from 'node:net'
import { Writable } from 'node:stream'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { MessageType, message } from '../../src/raft/index.ts'
import { Transport } from '../../src/transport/index.ts'
import { FrameKind } from '../../src/transport/frame.ts'
import { createPackr } from '../../src/transport/raft-codec.ts'
import { authValue, challengeValue, helloValue, newNonce, protocolVersion } from '../../src/transport/handshake.ts'
import { RawPeer, clusterId, fastLimits, metric, mesh, node, rawDial, secret, waitFor, type Node } from './helpers.ts'

/** A pino logger whose lines are kept for assertions. */
function capturedLogger(): { logger: pino.Logger; lines: Array<{ msg: string; [k: string]: unknown }> } {
  const lines: Array<{ msg: string }> = []
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n')) if (l !== '') lines.push(JSON.parse(l) as { msg: string })
      done()
    },
  })
  return { logger: pino({ level: 'debug' }, stream), lines }
}

async function logged(id: number, host: string): Promise<Node & { lines: Array<{ msg: string }> }> {
  const { logger, lines } = capturedLogger()
  const registry = new Registry()
  const transport = new Transport({ brokerId: id, clusterId, secret, listen: { host, port: 0 }, logger, registry, limits: fastLimits })
  const batches: Node['batches'] = []
  transport.onBatch((from, batch) => batches.push({ from, batch }))
  await transport.start()
  return { transport, registry, batches, lines }
}

const refusedLines = (lines: Array<{ msg: string }>, pattern: RegExp): number =>
  lines.filter((l) => /peer connection closed: refused/.test(l.msg) && pattern.test(l.msg)).length

test('strangers are refused with a log line: wrong secret, wrong cluster, unknown id, wrong direction', async () => {
  const b = await logged(5, '127.0.0.15')
  const cases: Array<{ name: string; make: () => Promise<Node>; pattern: RegExp }> = [
    { name: 'wrong secret', make: () => node({ id: 1, host: '127.0.0.11', secret: Buffer.alloc(32, 8) }), pattern: /bad proof/ },
    // Another cluster id is a bad proof too: telling it apart would need one side to name its cluster first.
    { name: 'wrong cluster', make: () => node({ id: 2, host: '127.0.0.12', clusterId: 'other' }), pattern: /bad proof/ },
    { name: 'unknown id', make: () => node({ id: 3, host: '127.0.0.13' }), pattern: /broker 3 is not a known peer/ },
  ]
  try {
    b.transport.setPeers(new Map([[1, { host: '127.0.0.11', port: 1 }], [2, { host: '127.0.0.12', port: 1 }], [9, { host: '127.0.0.19', port: 1 }]]))
    for (const c of cases) {
      const stranger = await c.make()
      try {
        stranger.transport.setPeers(new Map([[5, b.transport.address()]]))
        await waitFor(() => refusedLines(b.lines, c.pattern) >= 1, `${c.name} refused by the acceptor`)
        // The dialer hears why and keeps backing off; it never connects.
        await waitFor(() => stranger.transport.peerInfo(5)!.attempts >= 2, `${c.name}: retries`)
        assert.equal(stranger.transport.connected(5), false, c.name)
        assert.equal(b.transport.connected(stranger.transport.brokerId), false, c.name)
        const failures = await metric(stranger.registry, 'rill_transport_connect_failures_total')
        assert.ok(failures >= 1, `${c.name}: failures counted`)
      } finally {
        await stranger.transport.close()
      }
    }
    // A higher id must wait to be dialed: broker 9 (holding the secret) dialing broker 5 by hand is refused, once it has proven itself.
    await assert.rejects(rawDial({ from: 9, to: 5, host: '127.0.0.15', port: b.transport.address().port, localAddress: '127.0.0.19' }), /refused by peer: broker 9 must be dialed by broker 5/)
    // Refused by the acceptor itself (the unknown id's retries and broker 9); a wrong secret or cluster is refused by the dialer, which checks first.
    assert.ok((await metric(b.registry, 'rill_transport_connections_rejected_total', { reason: 'unauthorized' })) >= 2, 'rejections counted')
  } finally {
    await b.transport.close()
  }
})

test('a second connection from an already-connected peer is refused; the first lives on', async () => {
  const a = await node({ id: 1, host: '127.0.0.11' })
  const b = await logged(2, '127.0.0.12')
  try {
    mesh([a, b])
    await waitFor(() => a.transport.connected(2) && b.transport.connected(1), 'connected')
    await assert.rejects(rawDial({ from: 1, to: 2, host: '127.0.0.12', port: b.transport.address().port, localAddress: '127.0.0.11' }), /refused by peer: broker 1 is already connected/)
    assert.equal(refusedLines(b.lines, /broker 1 is already connected/), 1)
    assert.equal(a.transport.connected(2), true)
    a.transport.send(3, message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 1 }))
    a.transport.flush()
    await waitFor(() => b.batches.length === 1, 'first connection still carries traffic')
  } finally {
    await a.transport.close()
    await b.transport.close()
  }
})

test('a connection that never finishes its handshake is closed after the timeout', async () => {
  const b = await logged(2, '127.0.0.12')
  try {
    const silent = new RawPeer(net.connect({ host: '127.0.0.12', port: b.transport.address().port }))
    await waitFor(() => silent.closed, 'silent socket closed', 3_000)
    assert.ok(b.lines.some((l) => /handshake timed out/.test(l.msg)), 'timeout logged')
  } finally {
    await b.transport.close()
  }
})

test('an oversized frame before the handshake closes the socket at once', async () => {
  const b = await logged(2, '127.0.0.12')
  try {
    const peer = new RawPeer(net.connect({ host: '127.0.0.12', port: b.transport.address().port }))
    await new Promise((resolve) => peer.socket.once('connect', resolve))
    const header = Buffer.alloc(4)
    header.writeUInt32BE(10 * 1024 * 1024)
    peer.socket.write(header)
    await waitFor(() => peer.closed, 'closed', 1_000)
    assert.ok(b.lines.some((l) => /above the bound of 1024/.test(l.msg)), 'logged')
  } finally {
    await b.transport.close()
  }
})

test('an oversized or malformed frame closes that connection; the process and other connections live on', async () => {
  const b = await logged(5, '127.0.0.15')
  const c = await node({ id: 3, host: '127.0.0.13', limits: { frameBytesMax: 1024 * 1024, queueBytesMax: 512 * 1024 } })
  try {
    mesh([b, c])
    b.transport.setPeers(new Map([[1, { host: '127.0.0.11', port: 1 }], [3, c.transport.address()]]))
    await waitFor(() => c.transport.connected(5), 'honest peer connected')
    const port = b.transport.address().port
    const badFrames: Array<{ name: string; bytes: () => Buffer; log: RegExp }> = [
      { name: 'oversized', bytes: () => { const h = Buffer.alloc(4); h.writeUInt32BE(65 * 1024 * 1024); return h }, log: /above the bound of 67108864/ },
      { name: 'undecodable', bytes: () => Buffer.from([0, 0, 0, 2, 0xc1, 0xc1]), log: /./ },
      { name: 'unknown kind', bytes: () => frameOf([99]), log: /unexpected frame kind 99/ },
      { name: 'bad batch', bytes: () => frameOf([FrameKind.Batch, [[[1, MessageType.Hup, 0, 0, 0, 0, false, 0, 0, null, null, null]], [[], [], [], []], [[], [], []]]]), log: /not a wire message type/ },
    ]
    for (const bad of badFrames) {
      const raw = await rawDial({ from: 1, to: 5, host: '127.0.0.15', port, localAddress: '127.0.0.11' })
      await waitFor(() => b.transport.connected(1), `${bad.name}: raw peer admitted`)
      raw.socket.write(bad.bytes())
      await waitFor(() => raw.closed, `${bad.name}: connection closed`)
      await waitFor(() => !b.transport.connected(1), `${bad.name}: peer slot freed`)
      assert.ok(b.lines.some((l) => /peer connection closed/.test(l.msg) && bad.log.test(l.msg)), `${bad.name} logged`)
      // The honest peer's connection carries on.
      const before = b.batches.length
      c.transport.send(7, message({ type: MessageType.HeartbeatResp, from: 3, to: 5, term: 4 }))
      c.transport.flush()
      await waitFor(() => b.batches.length === before + 1, `${bad.name}: traffic from the honest peer`)
    }
    assert.equal(await metric(b.registry, 'rill_transport_connections_rejected_total', { reason: 'bad-frame' }), badFrames.length)
    assert.equal(c.transport.connected(5), true)
  } finally {
    await b.transport.close()
    await c.transport.close()
  }
})

function frameOf(value: unknown): Buffer {
  const payload = createPackr().pack(value)
  const header = Buffer.alloc(4)
  header.writeUInt32BE(payload.byteLength)
  return Buffer.concat([header, payload])
}

/** True if `bytes` hold `text` (UTF-8) anywhere. */
const holds = (bytes: Buffer, text: string): boolean => bytes.includes(Buffer.from(text, 'utf8'))

test('a stranger dialing a broker learns nothing identifying: not the cluster id, not a broker id (issue 10, hole 8)', async () => {
  const b = await logged(5, '127.0.0.15')
  try {
    b.transport.setPeers(new Map([[1, { host: '127.0.0.11', port: 1 }]]))
    const port = b.transport.address().port
    const packr = createPackr()
    const dial = async (): Promise<RawPeer> => {
      const peer = new RawPeer(net.connect({ host: '127.0.0.15', port }))
      await new Promise((resolve) => peer.socket.once('connect', resolve))
      return peer
    }
    // A proper Hello: the answer is a nonce and a proof the stranger cannot check, nothing else.
    const peer = await dial()
    peer.send(helloValue({ version: protocolVersion, nonce: newNonce() }))
    const challenge = (await peer.next()) as unknown[]
    assert.equal(challenge[0], FrameKind.Challenge)
    assert.equal(challenge.length, 4, 'kind, version, nonce, proof: no id, no cluster')
    assert.equal(challenge[1], protocolVersion)
    assert.ok(challenge[2] instanceof Uint8Array && challenge[3] instanceof Uint8Array)
    assert.equal(holds(packr.pack(challenge), clusterId), false)
    // A second stranger gets another proof: nothing stable to fingerprint the cluster by.
    const again = await dial()
    again.send(helloValue({ version: protocolVersion, nonce: Buffer.from(challenge[2] as Uint8Array) }))
    const second = (await again.next()) as unknown[]
    assert.notDeepEqual(Buffer.from(second[3] as Uint8Array), Buffer.from(challenge[3] as Uint8Array))
    again.socket.destroy()
    // An Auth the stranger cannot make: refused without a name in the reason.
    peer.send(authValue({ from: 1, mac: new Uint8Array(32) }))
    const refusal = (await peer.next()) as unknown[]
    assert.equal(refusal[0], FrameKind.Refuse)
    assert.doesNotMatch(String(refusal[1]), new RegExp(`${clusterId}|\\b5\\b|\\b1\\b`))
    await waitFor(() => peer.closed, 'refused stranger closed')
    // The version-1 Hello (cluster id and ids in the clear, here a wrong cluster id): closed for its version, told nothing.
    const old = await dial()
    old.send([FrameKind.Hello, 1, 'other-cluster', 1, 5, newNonce()])
    await waitFor(() => old.closed, 'old-version stranger closed')
    assert.deepEqual(old.frames, [])
    assert.ok(b.lines.some((l) => /peer connection closed: bad handshake: protocol version 1 \(this broker speaks 2\)/.test(l.msg)), 'logged')
  } finally {
    await b.transport.close()
  }
})

test('a broker dialing a stranger names nothing before the stranger has proven it holds the secret', async () => {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.16', port: 0 }, resolve))
  const first = new Promise<{ bytes: Buffer; value: unknown[]; peer: RawPeer }>((resolve) => {
    server.once('connection', (socket) => {
      const peer = new RawPeer(socket)
      socket.once('data', (chunk: Buffer) => {
        void peer.next().then((value) => resolve({ bytes: Buffer.from(chunk), value: value as unknown[], peer }))
      })
    })
  })
  const a = await logged(1, '127.0.0.11')
  try {
    a.transport.setPeers(new Map([[6, { host: '127.0.0.16', port: (server.address() as net.AddressInfo).port }]]))
    const { bytes, value, peer } = await first
    assert.deepEqual(value.slice(0, 2), [FrameKind.Hello, protocolVersion])
    assert.equal(value.length, 3, 'kind, version, nonce: no cluster id, no broker id')
    assert.equal(holds(bytes, clusterId), false)
    // The stranger answers with a proof it cannot make: the dialer refuses and still names nothing.
    peer.send(challengeValue({ version: protocolVersion, nonce: newNonce(), mac: new Uint8Array(32) }))
    const refusal = (await peer.next()) as unknown[]
    assert.equal(refusal[0], FrameKind.Refuse)
    assert.doesNotMatch(String(refusal[1]), new RegExp(`${clusterId}|\\b1\\b|\\b6\\b`))
    await waitFor(() => a.lines.some((l) => /refused broker 6: bad proof: wrong cluster secret or cluster id, or not broker 6 at this address/.test(l.msg)), 'dialer logged why')
    assert.equal(a.transport.connected(6), false)
  } finally {
    await a.transport.close()
    await new Promise((resolve) => server.close(resolve))
  }
})
