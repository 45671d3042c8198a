/**
 * This broker's side of the controller: the controller Raft group (a voter
 * on seed brokers, a learner elsewhere), its copy of the cluster metadata,
 * and the way commands reach the controller leader.
 *
 *   propose(cmd) ── leader here ──▶ RaftGroup.propose ──applied──▶ waiter resolves
 *   forward(call) ─ leader elsewhere ─▶ PeerCalls.controller(its URL)
 *
 * Every other part reads the metadata through `state` (replaced whole when
 * a snapshot is installed: read it each time, never keep it) and hears of
 * each change through `onApplied`. A broker registers itself on start and
 * again whenever the metadata does not show it, unfenced; the controller
 * leader lets every registered broker follow the metadata log as a learner.
 *
 * A registration that would move a registered broker to other addresses is
 * checked first (`#checkMove`), as Kafka refuses a second registration of a
 * broker id whose session is alive (DUPLICATE_BROKER_REGISTRATION; KRaft
 * tells incarnations apart by a random incarnation id per process start):
 *
 *   old address still answers as that id, another incarnation ──▶ DUPLICATE_BROKER_REGISTRATION
 *   new address does not answer as that id and incarnation ────▶ UNAUTHORIZED
 *   otherwise (the old process is gone, the new one proves itself) ──▶ registered at once
 *
 * Both are challenges with a fresh nonce, answered with a MAC made with the
 * cluster secret over the answerer's id, incarnation and addresses
 * (internal-auth.ts). "Live" is a fresh answer at the registered address,
 * not a session timer: a broker restarted on new ports (a real move) is
 * registered as soon as its new address answers, without waiting for the
 * old session to expire; and a session kept alive by the NEW process's peer
 * link (a lower id dials, and the link names only the id) cannot keep the
 * old addresses forever. Two processes configured with one id: the second
 * is refused for as long as the first answers. A first registration of an
 * id is not challenged (there is nothing to take over); the MAC on the
 * internal route already proves the sender holds the cluster secret.
 */
import { join } from 'node:path'
import type { Logger } from 'pino'
import { ErrorCode, RillError, type Runtime, type SeededRandom } from '../base/index.ts'
import type { Command } from '../controller/index.ts'
import { ControllerState, encodeCommand } from '../controller/index.ts'
import { CommandType } from '../controller/types.ts'
import type { LogIo, LogStore } from '../log/index.ts'
import type { Entry, Message, NodeId, Snapshot } from '../raft/index.ts'
import { ConfChangeType, EntryType, Role } from '../raft/index.ts'
import { FileSnapshotStore, RaftGroup } from '../partition/index.ts'
import type { BrokerConfig } from './config.ts'
import { controllerGroupId } from './names.ts'
import type { BrokerRegistration, ControllerCall, PeerCalls } from './peer-calls.ts'
import { identityValid, type IdentityAnswer } from './internal-auth.ts'

/** How long a controller proposal may take to apply. */
export const controllerWaitMsMax = 10_000
/** Ticks between checks that this broker is registered and unfenced. */
export const registrationCheckTicks = 10
/** How long a request waits for a controller leader (and its address) before answering NO_QUORUM. */
const forwardLeaderWaitMs = 3000
/** Forwarded requests to the controller leader time out after this. */
const forwardTimeoutMs = 10_000
/** How long the controller leader waits for a broker's answer to an identity challenge (old and new address, at once), ms. */
export const identityTimeoutMs = 2000
/** At most one warning per this long about a registration refused as a duplicate or unproven, ms (it is retried every check). */
const registrationWarnMs = 30_000

/** A broker as a client is told to find it: its id and HTTP base URL. */
export type BrokerRef = { id: number; url: string } | null

interface ControllerWaiter {
  readonly term: number
  readonly resolve: () => void
  readonly reject: (e: RillError) => void
}

export interface ControllerClientOptions {
  readonly config: BrokerConfig
  readonly logger: Logger
  readonly store: LogStore
  readonly io: LogIo
  readonly random: SeededRandom
  readonly runtime: Runtime
  readonly peerCalls: PeerCalls
  /** This broker's HTTP base URL, as it registers it. */
  readonly httpUrl: string
  /** This process's incarnation id (random per start), sent with each registration. */
  readonly incarnation: string
  /** Challenge nonces (16 unguessable bytes as hex; the simulator's come from its seed). */
  readonly newNonce: () => string
  readonly send: (gid: number, msgs: readonly Message[]) => void
  readonly isStopped: () => boolean
  /** The metadata changed (entries applied or a snapshot installed). */
  readonly onApplied: () => void
  /** The controller's role or leader changed. */
  readonly onLeaderChange: () => void
}

export class ControllerClient {
  readonly #brokerId: number
  readonly #config: BrokerConfig
  readonly #logger: Logger
  readonly #options: ControllerClientOptions
  readonly #runtime: Runtime
  #group!: RaftGroup
  #state = new ControllerState()
  #applied = 0
  readonly #waiters = new Map<number, ControllerWaiter>()
  #registering = false
  /** The last registration refusal warned about, and when (ms): one warning per `registrationWarnMs`. */
  #warned = { message: '', atMs: -Infinity }

  constructor(options: ControllerClientOptions) {
    this.#brokerId = options.config.id
    this.#config = options.config
    this.#logger = options.logger
    this.#runtime = options.runtime
    this.#options = options
  }

  /** The metadata as applied here (a new object after each snapshot install). */
  get state(): ControllerState {
    return this.#state
  }

  /** Opens the controller group: a voter on a seed broker (bootstrapping the seeds), a learner to be elsewhere. */
  async open(): Promise<void> {
    const { config, store, io, random } = this.#options
    const isSeed = config.seeds.some((s) => s.id === this.#brokerId)
    const log = await store.openLog({ name: '__controller', mode: 'sync' })
    const snapshots = new FileSnapshotStore(join(config.dir, 'snapshots', '__controller'), { io })
    this.#group = await RaftGroup.open({
      group: 'controller',
      replicaId: this.#brokerId,
      log,
      snapshots,
      ...(isSeed ? { bootstrap: { voters: config.seeds.map((s) => s.id), learners: [] } } : {}),
      random: random.fork(),
      runtime: this.#runtime,
      send: (msgs) => this.#options.send(controllerGroupId, msgs),
      recordMeta: () => ({ baseOffset: 0, recordCount: 0, timestampMinMs: 0, timestampMaxMs: 0 }),
      electionTicks: config.electionTicks,
      heartbeatTicks: config.heartbeatTicks,
      snapshotEntries: 1000,
      machine: {
        apply: (entries) => this.#apply(entries),
        restore: (snap) => this.#restore(snap),
        snapshotData: () => this.#state.snapshot(),
        appliedIndex: () => this.#applied,
      },
      onSoftState: (role, leader) => {
        this.#logger.info({ event: 'controller_role', role, leader }, `controller ${role}, leader ${leader}`)
        if (role !== Role.Leader) this.#failWaiters(leader)
        this.#options.onLeaderChange()
      },
      onFailure: (error) => this.#logger.fatal({ event: 'controller_failed', err: error }, 'controller storage failed'),
    })
  }

  isLeader(): boolean {
    return this.#group.isLeader()
  }

  /** The controller leader this broker knows of (0: none). */
  leader(): NodeId {
    return this.#group.raft.lead
  }

  tick(): void {
    this.#group.tick()
  }

  step(m: Message): void {
    this.#group.step(m)
  }

  #restore(snap: Snapshot): void {
    this.#state = snap.data.byteLength === 0 ? new ControllerState() : ControllerState.fromSnapshot(snap.data)
    this.#applied = snap.meta.index
    this.#options.onApplied()
  }

  #apply(entries: readonly Entry[]): void {
    for (const e of entries) {
      this.#applied = e.index
      let error: RillError | null = null
      if (e.type === EntryType.Normal && e.data.byteLength > 0) {
        const r = this.#state.applyEntry(e.data)
        if (!r.ok) error = r.error
      }
      const w = this.#waiters.get(e.index)
      if (w === undefined) continue
      this.#waiters.delete(e.index)
      if (w.term !== e.term) w.reject(new RillError(ErrorCode.NOT_LEADER, 'controller leadership changed before the command committed'))
      else if (error !== null) w.reject(error)
      else w.resolve()
    }
    this.#options.onApplied()
  }

  #failWaiters(leader: NodeId): void {
    for (const w of this.#waiters.values()) w.reject(new RillError(ErrorCode.NOT_LEADER, 'controller leadership lost', { details: { leader: this.brokerRef(leader) } }))
    this.#waiters.clear()
  }

  /** Proposes a controller command here (this broker must lead the controller) and waits until it is applied. */
  propose(cmd: Command): Promise<void> {
    const r = this.#group.propose([encodeCommand(cmd)])
    if (!r.ok) return Promise.reject(new RillError(r.code, `controller: ${r.reason}`, { details: { leader: this.brokerRef(r.leader) } }))
    return new Promise((resolve, reject) => {
      const timer = this.#runtime.setTimer(() => {
        this.#waiters.delete(r.index)
        reject(new RillError(ErrorCode.TIMEOUT, `controller command not applied within ${controllerWaitMsMax} ms`))
      }, controllerWaitMsMax)
      this.#waiters.set(r.index, {
        term: r.term,
        resolve: () => {
          timer.cancel()
          resolve()
        },
        reject: (e) => {
          timer.cancel()
          reject(e)
        },
      })
    })
  }

  /** Runs a controller command on the controller leader (another broker) and relays its error. */
  async forward(call: ControllerCall): Promise<void> {
    // During an election, or before our metadata shows the leader's address, wait a little (bounded).
    const deadline = this.#runtime.nowMs() + forwardLeaderWaitMs
    let leader = this.#group.raft.lead
    let url = leader === 0 ? undefined : this.#state.broker(leader)?.httpUrl
    while (url === undefined && this.#runtime.nowMs() < deadline && !this.#options.isStopped()) {
      await this.#runtime.sleep(20)
      leader = this.#group.raft.lead
      url = leader === 0 ? undefined : this.#state.broker(leader)?.httpUrl
    }
    if (url === undefined) throw new RillError(ErrorCode.NO_QUORUM, 'no controller leader known yet')
    if (leader === this.#brokerId) throw new RillError(ErrorCode.NO_QUORUM, 'this broker just became controller leader; retry')
    await this.#options.peerCalls.controller(url, call, forwardTimeoutMs)
  }

  // ─────────────────────────── registration ───────────────────────────

  /** Registers (and unfences) this broker through the controller leader unless the metadata already shows it. */
  async ensureRegistered(): Promise<void> {
    if (this.#registering || this.#options.isStopped()) return
    const me = this.#state.broker(this.#brokerId)
    const peerUrl = `${this.#config.peer.host}:${this.#config.peer.port}`
    const httpUrl = this.#options.httpUrl
    if (me !== undefined && !me.fenced && me.httpUrl === httpUrl && me.peerUrl === peerUrl) return
    this.#registering = true
    try {
      await this.registerBroker({
        id: this.#brokerId,
        httpUrl,
        peerUrl,
        incarnation: this.#options.incarnation,
        ...(this.#config.rack === null ? {} : { rack: this.#config.rack }),
      })
      this.#logger.info({ event: 'registered' }, 'registered with the controller')
    } catch (error) {
      this.#registrationRefused(error)
    } finally {
      this.#registering = false
    }
  }

  /** RegisterBroker + UnfenceBroker on the controller leader (forwarded there if needed). */
  async registerBroker(request: BrokerRegistration): Promise<void> {
    if (!this.#group.isLeader()) {
      try {
        await this.forward({ kind: 'registerBroker', request })
      } catch (error) {
        // Not a voter and no metadata yet: go through a broker we were told to join.
        if (request.id !== this.#brokerId || this.#config.join.length === 0) throw error
        await this.#joinThrough(request)
      }
      return
    }
    const cmd: Command = { type: CommandType.RegisterBroker, id: request.id, httpUrl: request.httpUrl, peerUrl: request.peerUrl, ...(request.rack === undefined ? {} : { rack: request.rack }) }
    const known = this.#state.broker(request.id)
    if (known !== undefined && (known.httpUrl !== request.httpUrl || known.peerUrl !== request.peerUrl)) await this.#checkMove(known, request)
    if (known === undefined || known.httpUrl !== request.httpUrl || known.peerUrl !== request.peerUrl) await this.propose(cmd)
    if (this.#state.broker(request.id)?.fenced !== false) await this.propose({ type: CommandType.UnfenceBroker, id: request.id })
  }

  /**
   * Controller leader: may broker `known.id` move to the request's addresses?
   * Throws DUPLICATE_BROKER_REGISTRATION while the process at the registered
   * address still proves it is that broker (another incarnation), and
   * UNAUTHORIZED unless the process at the new address proves it is the
   * registering one. See the header comment.
   */
  async #checkMove(known: { readonly id: number; readonly httpUrl: string; readonly peerUrl: string }, request: BrokerRegistration): Promise<void> {
    const oldNonce = this.#options.newNonce()
    const newNonce = this.#options.newNonce()
    const calls = this.#options.peerCalls
    const [atOld, atNew] = await Promise.all([
      calls.identity(known.httpUrl, oldNonce, identityTimeoutMs).then((a) => a, () => null),
      calls.identity(request.httpUrl, newNonce, identityTimeoutMs).then((a) => a, (error: unknown) => error as Error),
    ])
    const secret = this.#config.secret
    if (atOld !== null && atOld.id === known.id && atOld.incarnation !== request.incarnation && identityValid(secret, oldNonce, atOld)) {
      throw new RillError(
        ErrorCode.DUPLICATE_BROKER_REGISTRATION,
        `broker ${known.id} is live at ${known.httpUrl} (peer ${known.peerUrl}): it still answers as broker ${known.id}, so it keeps its addresses; ` +
          `stop it before registering broker ${known.id} at ${request.httpUrl}`,
        { details: { broker: known.id, httpUrl: known.httpUrl } },
      )
    }
    const why = unproven(atNew, newNonce, request, secret)
    if (why !== null) {
      throw new RillError(ErrorCode.UNAUTHORIZED, `broker ${request.id} cannot move to ${request.httpUrl} (peer ${request.peerUrl}): ${why}`, {
        details: { broker: request.id, reason: 'unproven-address' },
      })
    }
  }

  /** Logs why this broker's registration was refused: a refusal an operator must act on as a warning (at most one per `registrationWarnMs`). */
  #registrationRefused(error: unknown): void {
    const mustAct = error instanceof RillError && (error.code === ErrorCode.DUPLICATE_BROKER_REGISTRATION || error.code === ErrorCode.UNAUTHORIZED)
    const now = this.#runtime.nowMs()
    if (!mustAct || (error.message === this.#warned.message && now - this.#warned.atMs < registrationWarnMs)) {
      this.#logger.debug({ event: 'register_retry', err: error }, 'registration will be retried')
      return
    }
    this.#warned = { message: error.message, atMs: now }
    this.#logger.warn({ event: 'registration_refused', code: error.code }, `registration refused, retrying: ${error.message}`)
  }

  /** Registers through one of the --join brokers (they forward to the controller leader). */
  async #joinThrough(request: BrokerRegistration): Promise<void> {
    let last: unknown = null
    for (const url of this.#config.join) {
      try {
        await this.#options.peerCalls.controller(url, { kind: 'registerBroker', request }, forwardTimeoutMs)
        return
      } catch (error) {
        last = error
      }
    }
    throw new RillError(ErrorCode.NO_QUORUM, `could not register through ${this.#config.join.join(', ')}: ${String(last)}`)
  }

  /**
   * Controller leader: a registered broker outside the controller group
   * follows the metadata log as a learner (one membership change at a time;
   * a refusal while another is pending is retried on the next check).
   */
  addLearners(): void {
    if (!this.#group.isLeader()) return
    const raft = this.#group.raft
    for (const b of this.#state.brokers()) {
      if (raft.voters.has(b.id) || raft.learners.has(b.id)) continue
      const r = this.#group.proposeConfChange({ type: ConfChangeType.AddLearner, node: b.id })
      this.#logger.info({ event: 'controller_learner', learner: b.id, ok: r.ok }, r.ok ? `broker ${b.id} follows the metadata log` : `adding learner ${b.id} later: ${r.reason}`)
      return
    }
  }

  // ─────────────────────────── answers from the metadata ───────────────────────────


  brokerRef(id: NodeId): BrokerRef {
    const b = id === 0 ? undefined : this.#state.broker(id)
    return b === undefined ? null : { id: b.id, url: b.httpUrl }
  }

  /** Adds `{ id, url }` to a NOT_LEADER error coming from a replica (it knows only the id). */
  withLeaderRef(error: unknown): unknown {
    if (!(error instanceof RillError) || error.code !== ErrorCode.NOT_LEADER) return error
    const leader = error.details['leader']
    if (typeof leader !== 'number') return error
    return new RillError(ErrorCode.NOT_LEADER, error.message, { details: { ...error.details, leader: this.brokerRef(leader) } })
  }

  /**
   * UNKNOWN_TOPIC only once our copy of the metadata is current: a broker
   * that just restarted and has not caught up with the controller log says
   * so (retriable) instead of denying a topic that exists.
   */
  unknownTopic(name: string): RillError {
    const raft = this.#group.raft
    // Behind until it has applied all a leader said is committed (a restarted broker learns the commit index
    // piecemeal: a probe's answer commits only up to the probe; CI once saw UNKNOWN_TOPIC from a broker restarted a moment before).
    if (raft.lead === 0 || this.#applied < Math.max(raft.log.committed, raft.commitSeen)) {
      return new RillError(ErrorCode.NO_QUORUM, `metadata not loaded yet (controller leader ${raft.lead === 0 ? 'unknown' : raft.lead}); retry`)
    }
    return new RillError(ErrorCode.UNKNOWN_TOPIC, `unknown topic ${name}`, { details: { topic: name } })
  }

  // ─────────────────────────── stop ───────────────────────────

  /** Graceful stop: hands controller leadership to the most caught-up voter, if this broker leads. */
  transferAway(): void {
    if (!this.#group.isLeader()) return
    const target = [...this.#group.raft.progress].filter(([id]) => id !== this.#brokerId).sort((a, b) => b[1].match - a[1].match)[0]
    if (target !== undefined) this.#group.transferLeader(target[0])
  }

  /** Closes the group; commands still waiting fail NOT_LEADER. */
  async close(): Promise<void> {
    await this.#group.close()
    this.#failWaiters(0)
  }
}

/** Why the answer at the new address is not the registering broker's, or null if it is. */
function unproven(answer: IdentityAnswer | Error, nonce: string, request: BrokerRegistration, secret: Uint8Array): string | null {
  if (answer instanceof Error) return `it did not answer the identity challenge (${answer.message})`
  if (!identityValid(secret, nonce, answer)) return 'its identity answer is not proven with the cluster secret'
  if (answer.id !== request.id) return `the broker there is broker ${answer.id}`
  if (answer.incarnation !== request.incarnation) return 'the broker there is another process (incarnation) than the one registering'
  if (answer.httpUrl !== request.httpUrl || answer.peerUrl !== request.peerUrl) {
    return `the broker there listens at ${answer.httpUrl} (peer ${answer.peerUrl})`
  }
  return null
}
