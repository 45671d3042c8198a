/**
 * Helpers of the transport tests: transports on loopback with ephemeral
 * ports, condition waits (no fixed sleeps), metric reads, and a hand-driven
 * peer that speaks the handshake itself so tests can misbehave after it.
 */
import net from 'node:net'
import type { Logger } from 'pino'
import { Registry } from 'prom-client'
import { SeededRandom } from '../../src/base/index.ts'
import { Transport, type PeerBatch, type TransportLimits, type TransportTls } from '../../src/transport/index.ts'
import { FrameReader, encodeFrame, handshakeFrameBytesMax } from '../../src/transport/frame.ts'
import {
  authValue,
  challengeValue,
  helloValue,
  newNonce,
  parseAuth,
  parseChallenge,
  parseHello,
  parseWelcome,
  protocolVersion,
  prove,
  welcomeValue,
  type Transcript,
} from '../../src/transport/handshake.ts'
import { createPackr } from '../../src/transport/raft-codec.ts'

export const clusterId = 'test-cluster'
export const secret = Buffer.alloc(32, 7)

/** Fast timings so failure paths finish quickly. */
export const fastLimits: Partial<TransportLimits> = {
  handshakeMs: 1_000,
  pingIntervalMs: 200,
  idleTimeoutMs: 2_000,
  backoffMsMin: 10,
  backoffMsMax: 100,
}

export interface Node {
  readonly transport: Transport
  readonly registry: Registry
  readonly batches: Array<{ from: number; batch: PeerBatch }>
}

/** A started transport listening on `host`:0 with its own registry; records every batch. */
export async function node(options: { id: number; host: string; secret?: Uint8Array; clusterId?: string; port?: number; limits?: Partial<TransportLimits>; tls?: TransportTls; logger?: Logger }): Promise<Node> {
  const registry = new Registry()
  const transport = new Transport({
    brokerId: options.id,
    clusterId: options.clusterId ?? clusterId,
    secret: options.secret ?? secret,
    listen: { host: options.host, port: options.port ?? 0 },
    registry,
    random: new SeededRandom(options.id),
    limits: { ...fastLimits, ...options.limits },
    ...(options.tls === undefined ? {} : { tls: options.tls }),
    ...(options.logger === undefined ? {} : { logger: options.logger }),
  })
  const batches: Node['batches'] = []
  transport.onBatch((from, batch) => batches.push({ from, batch }))
  await transport.start()
  return { transport, registry, batches }
}

/** Tells every node about every other (addresses as actually listened on). */
export function mesh(nodes: readonly Node[]): void {
  const peers = new Map(nodes.map((n) => [n.transport.brokerId, n.transport.address()]))
  for (const n of nodes) n.transport.setPeers(peers)
}

/** Resolves once `condition()` holds; fails after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = performance.now() + timeoutMs
  while (!(await condition())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Sum of a metric's values whose labels include `labels`. */
export async function metric(registry: Registry, name: string, labels: Record<string, string | number> = {}): Promise<number> {
  const m = registry.getSingleMetric(name)
  if (m === undefined) return 0
  const { values } = await m.get()
  let sum = 0
  for (const v of values) {
    if (Object.entries(labels).every(([k, want]) => String(v.labels[k]) === String(want))) sum += v.value
  }
  return sum
}

/** A socket with frame reading, for hand-driven peers. */
export class RawPeer {
  readonly socket: net.Socket
  readonly packr = createPackr()
  readonly reader = new FrameReader(64 * 1024 * 1024)
  readonly frames: unknown[] = []
  closed = false

  constructor(socket: net.Socket) {
    this.socket = socket
    socket.on('data', (chunk: Buffer) => {
      this.reader.push(chunk, (payload) => {
        this.frames.push(this.packr.unpack(payload))
        return true
      })
    })
    socket.on('close', () => { this.closed = true })
    socket.on('error', () => {})
  }

  send(value: unknown): void {
    this.socket.write(encodeFrame(this.packr, value))
  }

  async next(): Promise<unknown> {
    await waitFor(() => this.frames.length > 0 || this.closed, 'a frame')
    if (this.frames.length === 0) throw new Error('closed')
    return this.frames.shift()
  }
}

/** Dials `to` at `address` as broker `from` and completes the handshake by hand (throws on a refusal). */
export async function rawDial(options: { from: number; to: number; port: number; host: string; localAddress?: string; secret?: Uint8Array }): Promise<RawPeer> {
  const socket = net.connect({ host: options.host, port: options.port, localAddress: options.localAddress })
  await new Promise<void>((resolve, reject) => { socket.once('connect', resolve); socket.once('error', reject) })
  const peer = new RawPeer(socket)
  const dialerNonce = newNonce()
  peer.send(helloValue({ version: protocolVersion, nonce: dialerNonce }))
  const challenge = parseChallenge(await peer.next())
  const t: Transcript = { clusterId, dialerId: options.from, acceptorId: options.to, dialerNonce, acceptorNonce: challenge.nonce }
  peer.send(authValue({ from: options.from, mac: prove('dialer', t, options.secret ?? secret) }))
  parseWelcome(await peer.next())
  return peer
}

/** A listener that accepts one broker's dial as broker `id` and completes the handshake by hand. */
export async function rawAcceptor(options: { id: number; host: string }): Promise<{ server: net.Server; port: number; accepted: Promise<RawPeer> }> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen({ host: options.host, port: 0 }, resolve))
  const accepted = new Promise<RawPeer>((resolve) => {
    server.once('connection', (socket) => {
      const peer = new RawPeer(socket)
      void (async () => {
        const hello = parseHello(await peer.next())
        const acceptorNonce = newNonce()
        const t: Transcript = { clusterId, dialerId: 0, acceptorId: options.id, dialerNonce: hello.nonce, acceptorNonce }
        peer.send(challengeValue({ version: protocolVersion, nonce: acceptorNonce, mac: prove('acceptor', t, secret) }))
        parseAuth(await peer.next())
        peer.send(welcomeValue())
        resolve(peer)
      })()
    })
  })
  const port = (server.address() as net.AddressInfo).port
  return { server, port, accepted }
}

export { handshakeFrameBytesMax }
