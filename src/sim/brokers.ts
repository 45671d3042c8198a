/**
 * Whole brokers under the simulator: N real `Broker`s — controller group,
 * partition groups, ready loops, read-ahead, DiskLog/WAL, reconciler, group
 * coordinator — each on its own simulated disk (SimDisk, through the log's
 * file-system seam), joined by the simulated network, in one process, on
 * one virtual clock. Nothing here is a second implementation: the broker
 * code is the code `rill broker` runs; only the runtime, the disk, the
 * links and the calls between brokers are the simulator's.
 *
 *   SimBrokerCluster
 *     ├─ VirtualRuntime ─ scope per broker process (killed by a crash)
 *     ├─ SimNetwork ───── endpoint per broker process (PeerNetwork + PeerCalls)
 *     └─ SimBroker ×N ─── SimDisk (survives crashes, loses what a crash loses)
 *                         Broker (a new instance per start)
 *
 * A crash is not a stop: the scope dies (no timer of the old process runs
 * again, no pending disk operation completes), the disk keeps what the
 * crash mode allows, and a restart opens a fresh Broker on that disk.
 */
import { pino, type Logger } from 'pino'
import { ErrorCode, RillError, SeededRandom } from '../base/index.ts'
import { Broker } from '../broker/broker.ts'
import type { BrokerConfig } from '../broker/config.ts'
import { noDescriptorProbe } from '../broker/descriptors.ts'
import type { PersistenceMode } from '../log/index.ts'
import { SimDisk, type CrashKind } from './disk.ts'
import { SimNetwork, type CallTarget } from './network.ts'
import { VirtualRuntime, type RuntimeScope } from './runtime.ts'

export interface SimBrokerClusterOptions {
  readonly seed: number
  readonly brokers: number
  readonly persistence: PersistenceMode
  readonly tickMs?: number
  readonly electionTicks?: number
  readonly heartbeatTicks?: number
  /** Receives one line per event worth knowing (and the brokers' logs) when set. */
  readonly trace?: (line: string) => void
}

/** One broker's machine: its disk outlives its processes. */
export class SimBroker {
  readonly id: number
  readonly disk: SimDisk
  readonly url: string
  scope: RuntimeScope | null = null
  broker: Broker | null = null
  /** Processes started so far (seeds each one's randomness apart). */
  incarnation = 0
  /** Set while a start is under way or failed: why it is not serving. */
  startError: unknown = null

  constructor(id: number, disk: SimDisk) {
    this.id = id
    this.disk = disk
    this.url = `http://10.0.0.${id}:9092`
  }

  /** Up and serving. */
  get up(): boolean {
    return this.broker !== null && this.scope?.alive === true
  }
}

/** A healthy disk's timings (virtual ms): an SSD's fsync and read, order of magnitude. */
export const diskTimings = { fsyncLatencyMs: [0.2, 2], readLatencyMs: [0.02, 0.3], latencyFactor: 1 } as const

/** Where brokers keep their data on their simulated disk. */
export const simDataDir = '/var/lib/rill'

export class SimBrokerCluster {
  readonly runtime = new VirtualRuntime()
  readonly random: SeededRandom
  readonly network: SimNetwork
  readonly brokers = new Map<number, SimBroker>()
  readonly options: SimBrokerClusterOptions
  readonly #trace: ((line: string) => void) | undefined

  constructor(options: SimBrokerClusterOptions) {
    this.options = options
    this.random = new SeededRandom(options.seed)
    this.#trace = options.trace
    this.network = new SimNetwork({ random: this.random.fork(), runtime: this.runtime, ...(options.trace === undefined ? {} : { trace: options.trace }) })
    for (let id = 1; id <= options.brokers; id++) {
      const disk = new SimDisk({ random: this.random.fork(), runtime: this.runtime, faults: diskTimings })
      this.brokers.set(id, new SimBroker(id, disk))
      this.network.setUrl(id, this.brokers.get(id)!.url)
    }
  }

  #afterEvent: (() => boolean)[] = []

  /** Runs `check` after every event until it returns true (a fault that waits for a moment). */
  afterEvent(check: () => boolean): void {
    this.#afterEvent.push(check)
  }

  /** Called by the schedule after each event. */
  runAfterEvent(): void {
    if (this.#afterEvent.length > 0) this.#afterEvent = this.#afterEvent.filter((check) => !check())
  }

  trace(line: string): void {
    this.#trace?.(`[${this.runtime.nowMs().toFixed(1)}] ${line}`)
  }

  ids(): number[] {
    return [...this.brokers.keys()]
  }

  up(): SimBroker[] {
    return [...this.brokers.values()].filter((b) => b.up)
  }

  #config(b: SimBroker): BrokerConfig {
    const seeds = this.ids().map((id) => ({ id, host: `10.0.0.${id}`, port: 9093 }))
    return {
      id: b.id,
      dir: simDataDir,
      http: { host: `10.0.0.${b.id}`, port: 9092 },
      peer: { host: `10.0.0.${b.id}`, port: 9093 },
      seeds,
      clusterId: 'sim',
      secret: new Uint8Array(32).fill(7),
      secretIsDevelopment: false,
      defaultPersistence: this.options.persistence,
      rack: null,
      tickMs: this.options.tickMs ?? 50,
      electionTicks: this.options.electionTicks ?? 20,
      heartbeatTicks: this.options.heartbeatTicks ?? 2,
      logLevel: this.#trace === undefined ? 'silent' : 'info',
      join: [],
      shutdownTimeoutMs: 10_000,
      auth: 'none',
      superUsers: [],
      // The simulated network carries no TLS: it stands in for the transport's authenticated stream.
      tls: null,
      // Quotas are the HTTP edge's; the simulator runs no HTTP.
      quotas: { produceBytesPerSecond: null, fetchBytesPerSecond: null, requestsPerSecond: null, throttleMsMax: 5_000 },
      // No HTTP server in the simulator; partition bounds as wide as the API allows.
      httpConnections: { max: null, perAddressMax: 256, idleMs: 60_000, requestMs: 30_000 },
      topicPartitionsMax: 10_000,
      clusterPartitionsMax: 1_000_000,
    }
  }

  #logger(id: number): Logger {
    if (this.#trace === undefined) return pino({ level: 'silent' })
    const trace = (line: string): void => this.trace(`b${id} ${line.trimEnd()}`)
    return pino({ level: 'info', base: { b: id }, timestamp: false }, { write: trace })
  }

  /**
   * Starts broker `id`'s process (it must be down). Resolves when it serves,
   * or rejects with why it could not start (a damaged disk, say).
   */
  async start(id: number): Promise<void> {
    const b = this.brokers.get(id)!
    // A process is running or starting already (a heal and a scheduled restart may both ask).
    if (b.scope !== null && b.scope.alive) return
    const scope = this.runtime.scope()
    b.scope = scope
    b.broker = null
    b.startError = null
    b.incarnation++
    const endpoint = this.network.endpoint(id, scope)
    this.trace(`start broker ${id} (incarnation ${b.incarnation})`)
    try {
      const broker = await Broker.start(this.#config(b), this.#logger(id), {
        httpUrl: b.url,
        env: {
          runtime: scope,
          network: endpoint,
          peerCalls: endpoint.peerCalls(),
          random: new SeededRandom(this.options.seed * 1_000_003 + id * 7919 + b.incarnation),
          io: b.disk.process(),
          newMemberId: memberIds(id, b.incarnation),
          newNonce: nonces(new SeededRandom(this.options.seed * 1_000_033 + id * 104_729 + b.incarnation)),
          // Every simulated broker lives in this one process: the real descriptor count says nothing about any of them.
          descriptors: noDescriptorProbe,
        },
      })
      if (!scope.alive) return
      b.broker = broker
      endpoint.serveCalls(callTarget(broker))
    } catch (error) {
      if (!scope.alive) return
      b.startError = error
      this.trace(`broker ${id} failed to start: ${(error as Error).message}`)
      throw error
    }
  }

  /** The process dies at once; the disk keeps what `mode` allows. */
  crash(id: number, mode: CrashKind): void {
    const b = this.brokers.get(id)!
    if (b.scope === null) return
    this.trace(`crash broker ${id} (${mode})`)
    b.scope.kill()
    b.scope = null
    b.broker = null
    this.network.detach(id)
    b.disk.crash(mode)
  }

  /** Graceful stop (SIGTERM): hand leadership away, close everything. */
  async stop(id: number): Promise<void> {
    const b = this.brokers.get(id)!
    const broker = b.broker
    if (broker === null) return
    this.trace(`stop broker ${id}`)
    await broker.stop()
    b.scope?.kill()
    b.scope = null
    b.broker = null
    this.network.detach(id)
    // The process exits: its descriptors close and the next process has another pid (the page cache stays).
    b.disk.crash('process-crash')
  }

  /** A broker that is up, chosen by the seed; throws when none is. */
  anyUp(): SimBroker {
    const up = this.up()
    if (up.length === 0) throw new RillError(ErrorCode.NO_QUORUM, 'no broker is up')
    return up[this.random.int(up.length)]!
  }
}

/** How the network hands another broker's calls to a broker's own methods. */
function callTarget(broker: Broker): CallTarget {
  return {
    async controller(call) {
      switch (call.kind) {
        case 'registerBroker':
          return broker.registerBroker(call.request)
        case 'createTopic':
          await broker.createTopic(call.request)
          return
        case 'createOffsetsTopic':
          return broker.createOffsetsTopic()
        case 'deleteTopic':
          return broker.deleteTopic(call.name)
        case 'security':
          return broker.security.runForwarded(call.command)
      }
    },
    leaderships: () => broker.localLeaderships(),
    identity: (nonce) => broker.identity(nonce),
    topicStatus: (name) => broker.topicStatus(name),
  }
}

/** Incarnation ids and challenge nonces of a simulated broker process: 16 bytes as hex, the same on every replay. */
function nonces(random: SeededRandom): () => string {
  return () => {
    let hex = ''
    for (let i = 0; i < 4; i++) hex += random.int(0x1_0000_0000).toString(16).padStart(8, '0')
    return hex
  }
}

/** Consumer-group member ids a simulated broker process hands out: unique and the same on every replay. */
function memberIds(broker: number, incarnation: number): () => string {
  let n = 0
  return () => `m${broker}.${incarnation}.${++n}`
}
