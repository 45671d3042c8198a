/**
 * Transports on loopback: coalescing (one frame per flush per peer), the
 * source address of outgoing connections, reconnect after a restart,
 * bounded queues and socket backpressure.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { EntryType, MessageType, message, type Message } from '../../src/raft/index.ts'
import { batchSize, forEachMessage, type GroupMessage } from '../../src/transport/index.ts'
import { metric, mesh, node, rawAcceptor, rawDial, waitFor } from './helpers.ts'

const app = (from: number, to: number, index: number, bytes = 64): Message =>
  message({ type: MessageType.App, from, to, term: 2, logTerm: 2, index, commit: index, entries: [
    { term: 2, index: index + 1, type: EntryType.Normal, data: new Uint8Array(bytes).fill(index & 0xff) },
  ] })

test('messages of many groups flushed in one tick travel as one frame and arrive exactly', async () => {
  const a = await node({ id: 1, host: '127.0.0.11' })
  const b = await node({ id: 2, host: '127.0.0.12' })
  try {
    mesh([a, b])
    await waitFor(() => a.transport.connected(2) && b.transport.connected(1), 'connection')
    for (let tick = 0; tick < 3; tick++) {
      const sent: GroupMessage[] = []
      for (let g = 0; g < 200; g++) {
        const m = g % 2 === 0
          ? message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 2, commit: g, context: tick })
          : app(1, 2, g + tick * 1000)
        sent.push({ groupId: g, message: m })
        assert.equal(a.transport.send(g, m), true)
      }
      a.transport.flush()
      await waitFor(() => b.batches.length === tick + 1, `batch of tick ${tick}`)
      const { from, batch } = b.batches[tick]!
      assert.equal(from, 1)
      assert.equal(batchSize(batch), 200)
      assert.equal(batch.heartbeats.groupIds.length, 100, 'heartbeats packed apart')
      const got = new Map<number, Message>()
      forEachMessage(batch, { from, to: 2 }, (g, m) => got.set(g, m))
      for (const { groupId, message: m } of sent) {
        const r = got.get(groupId)!
        assert.equal(r.type, m.type)
        assert.equal(r.index, m.index)
        assert.equal(r.commit, m.commit)
        assert.deepEqual([...(r.entries[0]?.data ?? [])], [...(m.entries[0]?.data ?? [])])
      }
      assert.equal(await metric(a.registry, 'rill_transport_frames_sent_total', { peer: 2 }), tick + 1, 'one frame per flush')
      assert.equal(await metric(b.registry, 'rill_transport_frames_received_total', { peer: 1 }), tick + 1)
    }
    // A flush with nothing queued sends nothing; the other direction works too.
    a.transport.flush()
    assert.equal(b.transport.send(9, message({ type: MessageType.HeartbeatResp, from: 2, to: 1, term: 2 })), true)
    b.transport.flush()
    await waitFor(() => a.batches.length === 1, 'answer')
    assert.equal(a.batches[0]!.batch.heartbeatResps.groupIds[0], 9)
    assert.equal(await metric(a.registry, 'rill_transport_frames_sent_total', { peer: 2 }), 3)
    assert.equal(await metric(a.registry, 'rill_transport_messages_sent_total', { peer: 2 }), 600)
    assert.ok((await metric(a.registry, 'rill_transport_bytes_sent_total', { peer: 2 })) > 100 * 64, 'bytes counted')
  } finally {
    await a.transport.close()
    await b.transport.close()
  }
})

test('outgoing connections come from the configured peer host; the lower id dials', async () => {
  const a = await node({ id: 1, host: '127.0.0.11' })
  const b = await node({ id: 2, host: '127.0.0.12' })
  const c = await node({ id: 3, host: '127.0.0.13' })
  try {
    mesh([a, b, c])
    await waitFor(() => a.transport.connected(2) && a.transport.connected(3) && b.transport.connected(3), 'full mesh')
    assert.equal(b.transport.peerInfo(1)!.remoteAddress, '127.0.0.11')
    assert.equal(c.transport.peerInfo(1)!.remoteAddress, '127.0.0.11')
    assert.equal(c.transport.peerInfo(2)!.remoteAddress, '127.0.0.12')
    assert.equal(a.transport.peerInfo(2)!.localAddress, '127.0.0.11')
    // Only the lower id dialed: 1 dialed 2 and 3, 2 dialed 3, 3 dialed nobody.
    assert.equal(await metric(a.registry, 'rill_transport_connect_attempts_total', { broker: 1 }), 2)
    assert.equal(await metric(b.registry, 'rill_transport_connect_attempts_total', { broker: 2 }), 1)
    assert.equal(await metric(c.registry, 'rill_transport_connect_attempts_total', { broker: 3 }), 0)
    // A raw listener sees the source address too.
    const raw = await rawAcceptor({ id: 9, host: '127.0.0.19' })
    a.transport.setPeers(new Map([[2, b.transport.address()], [3, c.transport.address()], [9, { host: '127.0.0.19', port: raw.port }]]))
    const peer = await raw.accepted
    assert.equal(peer.socket.remoteAddress, '127.0.0.11')
    await waitFor(() => a.transport.connected(9), 'raw peer connected')
    peer.socket.destroy()
    raw.server.close()
  } finally {
    await Promise.all([a, b, c].map((n) => n.transport.close()))
  }
})

test('a restarted peer is reconnected with backoff and traffic resumes', async () => {
  const a = await node({ id: 1, host: '127.0.0.11' })
  let b = await node({ id: 2, host: '127.0.0.12' })
  try {
    mesh([a, b])
    await waitFor(() => a.transport.connected(2), 'first connection')
    const port = b.transport.address().port
    await b.transport.close()
    await waitFor(() => !a.transport.connected(2), 'disconnect noticed')
    // While the peer is down, flushed messages are dropped (Raft re-sends).
    assert.equal(a.transport.send(1, app(1, 2, 1)), true)
    a.transport.flush()
    assert.equal(await metric(a.registry, 'rill_transport_messages_dropped_total', { reason: 'disconnected' }), 1)
    await waitFor(() => a.transport.peerInfo(2)!.attempts >= 2, 'failed attempts while down')
    b = await node({ id: 2, host: '127.0.0.12', port })
    b.transport.setPeers(new Map([[1, a.transport.address()]]))
    await waitFor(() => a.transport.connected(2) && b.transport.connected(1), 'reconnection', 5_000)
    assert.equal(a.transport.peerInfo(2)!.attempts, 0)
    const failures = await metric(a.registry, 'rill_transport_connect_failures_total', { peer: 2, reason: 'connect' })
    assert.ok(failures >= 1, `connect failures counted (${failures})`)
    a.transport.send(4, app(1, 2, 5))
    a.transport.flush()
    await waitFor(() => b.batches.length === 1, 'message after reconnect')
    assert.equal(b.batches[0]!.batch.groups[0]!.groupId, 4)
  } finally {
    await a.transport.close()
    await b.transport.close()
  }
})

test('queue bounds drop the newest message and report it', async () => {
  const a = await node({ id: 1, host: '127.0.0.11', limits: { queueMessagesMax: 10, queueBytesMax: 16 * 1024, frameBytesMax: 64 * 1024 } })
  try {
    a.transport.setPeers(new Map([[2, { host: '127.0.0.12', port: 1 }]]))
    const results = Array.from({ length: 15 }, (_, i) => a.transport.send(1, app(1, 2, i, 16)))
    assert.deepEqual(results, [...Array(10).fill(true), ...Array(5).fill(false)])
    assert.equal(await metric(a.registry, 'rill_transport_messages_dropped_total', { reason: 'queue_full' }), 5)
    assert.equal(a.transport.peerInfo(2)!.queuedMessages, 10)
    a.transport.flush()
    // Byte bound: 1 KiB entries fill 16 KiB after a dozen.
    let accepted = 0
    while (a.transport.send(1, app(1, 2, accepted, 1024))) accepted++
    assert.ok(accepted >= 8 && accepted < 16, `accepted ${accepted}`)
    assert.ok(a.transport.peerInfo(2)!.queuedBytes <= 16 * 1024, 'byte bound holds')
    // Larger than the bound alone, or for nobody: refused outright.
    a.transport.flush()
    assert.equal(a.transport.send(1, app(1, 2, 1, 20 * 1024)), false)
    assert.equal(a.transport.send(1, app(1, 7, 1)), false)
    assert.equal(await metric(a.registry, 'rill_transport_messages_dropped_total', { reason: 'too_large' }), 1)
    assert.equal(await metric(a.registry, 'rill_transport_messages_dropped_total', { reason: 'unknown_peer' }), 1)
  } finally {
    await a.transport.close()
  }
})

test('socket backpressure: a peer that stops reading makes messages queue (bounded), then drop; drain resumes', async () => {
  const limits = { queueMessagesMax: 1_000, queueBytesMax: 1024 * 1024, frameBytesMax: 4 * 1024 * 1024 }
  const a = await node({ id: 1, host: '127.0.0.11', limits })
  const raw = await rawAcceptor({ id: 2, host: '127.0.0.12' })
  try {
    a.transport.setPeers(new Map([[2, { host: '127.0.0.12', port: raw.port }]]))
    const peer = await raw.accepted
    await waitFor(() => a.transport.connected(2), 'connected')
    peer.socket.pause()
    let refused = 0
    let flushes = 0
    // Each flush is ~256 KiB; the kernel buffers some, then write() says wait.
    for (; flushes < 400 && refused === 0; flushes++) {
      for (let i = 0; i < 16; i++) if (!a.transport.send(i, app(1, 2, i, 16 * 1024))) refused++
      a.transport.flush()
      await new Promise((resolve) => setImmediate(resolve))
    }
    assert.ok(refused > 0, 'send refused once the queue behind a full socket filled')
    assert.ok(a.transport.peerInfo(2)!.queuedBytes <= limits.queueBytesMax, 'byte bound holds')
    const framesBefore = await metric(a.registry, 'rill_transport_frames_sent_total', { peer: 2 })
    assert.ok(framesBefore < flushes, `fewer frames (${framesBefore}) than flushes (${flushes}): queued while draining`)
    assert.ok(await metric(a.registry, 'rill_transport_messages_dropped_total', { reason: 'queue_full' }) > 0, 'drops counted')
    // The reader resumes: the socket drains and the queue goes out as one frame.
    peer.frames.length = 0
    peer.socket.resume()
    await waitFor(() => a.transport.peerInfo(2)!.queuedMessages === 0, 'queue flushed on drain')
    assert.equal(await metric(a.registry, 'rill_transport_frames_sent_total', { peer: 2 }), framesBefore + 1)
    peer.socket.destroy()
  } finally {
    raw.server.close()
    await a.transport.close()
  }
})

test('pings keep a quiet link open; a peer that goes silent is closed after the idle timeout', async () => {
  const limits = { pingIntervalMs: 50, idleTimeoutMs: 300 }
  const a = await node({ id: 1, host: '127.0.0.11', limits })
  const b = await node({ id: 2, host: '127.0.0.12', limits })
  try {
    mesh([a, b])
    await waitFor(() => a.transport.connected(2), 'connected')
    // No traffic for three idle timeouts: pings hold the link.
    const until = performance.now() + 900
    await waitFor(() => performance.now() > until || !a.transport.connected(2) || !b.transport.connected(1), 'quiet period', 2_000)
    assert.equal(a.transport.connected(2) && b.transport.connected(1), true, 'quiet link stays up')
    // Broker 1 leaves; a hand-driven broker 1 connects and then says nothing.
    await a.transport.close()
    await waitFor(() => !b.transport.connected(1), 'slot freed')
    const raw = await rawDial({ from: 1, to: 2, host: '127.0.0.12', port: b.transport.address().port, localAddress: '127.0.0.11' })
    await waitFor(() => b.transport.connected(1), 'silent peer admitted')
    raw.socket.pause() // reads nothing, writes nothing: a half-dead peer
    await waitFor(() => !b.transport.connected(1), 'silent peer closed', 2_000)
    assert.equal(await metric(b.registry, 'rill_transport_connections_rejected_total', { reason: 'idle' }), 1)
    raw.socket.destroy()
  } finally {
    await a.transport.close()
    await b.transport.close()
  }
})
