/**
 * A simulated Raft cluster: the real `Raft` core of every node driven by a
 * virtual clock, a faulty network and crashing disks, all from one seed.
 *
 *   EventHeap (virtual ms) ──▶ tick / deliver / disk-done / client events
 *        │
 *   SimNode: Raft ──ready──▶ messages ──▶ SimNetwork (drop, delay, dup, reorder, partitions)
 *                   │     ─▶ persist job ──▶ disk (sequential, latency; crash loses the unsynced tail)
 *                   │     ─▶ committed entries ──▶ app state (commands, rolling hash)
 *                   └─advance() after the job is durable, then messagesAfterPersist go out
 *
 * SafetyChecker runs after every Ready. The API mirrors the classic 6.824
 * test harness (checkOneLeader, one, nCommitted, disconnect, crash, ...).
 */
import { assert, SeededRandom } from '../base/index.ts'
import type { ConfChange, ConfState, Entry, LogIndex, Message, NodeId, Ready, Snapshot, Term } from '../raft/index.ts'
import { EntryType, MemoryStorage, MessageType, messageTypeNames, Raft, Role } from '../raft/index.ts'
import { SafetyChecker, SafetyViolation } from './checker.ts'
import { EventHeap } from './heap.ts'

export interface SimOptions {
  readonly seed: number
  /** Initial voters, ids 1..nodes. */
  readonly nodes?: number
  /** Extra nodes, ids nodes+1..nodes+spares, started empty and outside the group. */
  readonly spares?: number
  readonly tickMs?: number
  readonly electionTicks?: number
  readonly heartbeatTicks?: number
  readonly preVote?: boolean
  readonly checkQuorum?: boolean
  /** Take a snapshot (and compact the log) every this many applied entries; 0 = never. */
  readonly snapshotEvery?: number
  readonly snapshotChunkBytes?: number
  readonly msgBytesMax?: number
  /** Padding added to every command (bytes), to exercise message sizes. */
  readonly commandPadBytes?: number
  readonly reliable?: boolean
  /** Idle groups go quiet (RaftConfig.quiesce); the sim plays the broker's failure detector. */
  readonly quiesce?: boolean
  /** Fraction of storage reads answered "not in memory yet" (a disk-backed log loading). */
  readonly storageUnavailableRate?: number
  /** Receives one line per event when set. */
  readonly trace?: (line: string) => void
}

/** Per-message bytes counted besides entries and snapshot data (headers on the wire). */
const messageHeaderBytes = 64
/** Bound on Ready iterations per processing pass: a node never spins. */
const readyPassesMax = 64
/** Bound on events per `run` call: a runaway schedule fails instead of hanging. */
const eventsPerRunMax = 5_000_000

export interface ProposalResult {
  readonly index: LogIndex
  readonly term: Term
  readonly isLeader: boolean
}

interface AppState {
  applied: LogIndex
  hash: number
  /** index -> command (or -1 for no-op / conf change) */
  cmdAt: Map<LogIndex, number>
}

interface PendingRead {
  readonly issuedAtMs: number
  /** Highest index of any write acknowledged before this read was issued. */
  readonly mustSeeIndex: LogIndex
  readIndex: LogIndex
  done: boolean
  result: LogIndex
}

class SimNode {
  readonly id: NodeId
  storage: MemoryStorage
  raft: Raft | null = null
  epoch = 0
  persistQueue: Ready[] = []
  diskBusy = false
  app: AppState = { applied: 0, hash: 0, cmdAt: new Map() }
  /** index -> command proposed here, to acknowledge when applied here. */
  proposals = new Map<LogIndex, number>()
  reads = new Map<number, PendingRead>()
  processScheduled = false

  constructor(id: NodeId, storage: MemoryStorage) {
    this.id = id
    this.storage = storage
  }

  get alive(): boolean {
    return this.raft !== null
  }
}

export function encodeCommand(cmd: number, padBytes: number): Uint8Array {
  const out = new Uint8Array(8 + padBytes)
  new DataView(out.buffer).setFloat64(0, cmd, true)
  return out
}

export function decodeCommand(data: Uint8Array): number {
  if (data.byteLength < 8) return -1
  return new DataView(data.buffer, data.byteOffset, data.byteLength).getFloat64(0, true)
}

export class SimCluster {
  readonly options: SimOptions
  readonly random: SeededRandom
  readonly checker: SafetyChecker
  readonly nodes = new Map<NodeId, SimNode>()
  nowMs = 0

  #heap = new EventHeap()
  #seq = 0
  readonly #tickMs: number
  /** Directed links that drop everything: `${from}>${to}`. */
  #blocked = new Set<string>()
  /** Nodes cut off from everyone (6.824's disconnect). */
  #disconnected = new Set<NodeId>()
  reliable: boolean
  longReordering = false
  longDelays = false
  /** Unreliable-network fault rates. */
  dropRate = 0.1
  duplicateRate = 0.02
  diskLatencyMsMax = 2

  /** cmd -> index at which its proposer applied it (acknowledged to the client). */
  readonly acked = new Map<number, LogIndex>()
  maxAckedIndex = 0
  messagesSent = 0
  bytesSent = 0
  readonly #sentBy = new Map<NodeId, number>()
  #readContext = 0
  readonly #trace: ((line: string) => void) | undefined

  constructor(options: SimOptions) {
    this.options = options
    this.random = new SeededRandom(options.seed)
    this.checker = new SafetyChecker(() => this.nowMs)
    this.#tickMs = options.tickMs ?? 10
    this.reliable = options.reliable ?? true
    this.#trace = options.trace
    const n = options.nodes ?? 3
    const spares = options.spares ?? 0
    const conf: ConfState = { voters: range(1, n), learners: [] }
    for (let id = 1; id <= n + spares; id++) {
      const storage = id <= n ? MemoryStorage.bootstrap(conf) : new MemoryStorage()
      storage.unavailableRate = options.storageUnavailableRate ?? 0
      storage.unavailableRandom = () => this.random.next()
      this.nodes.set(id, new SimNode(id, storage))
    }
    for (const id of this.nodes.keys()) this.#start(id)
  }

  // ───────────────────────────── time ─────────────────────────────

  #at(delayMs: number, run: () => void): void {
    this.#heap.push({ timeMs: this.nowMs + delayMs, seq: this.#seq++, run })
  }

  /** Runs events for `ms` of virtual time. */
  run(ms: number): void {
    const end = this.nowMs + ms
    let events = 0
    for (;;) {
      const next = this.#heap.peek()
      if (next === undefined || next.timeMs > end) break
      this.#heap.pop()
      this.nowMs = next.timeMs
      next.run()
      events++
      assert(events < eventsPerRunMax, `sim: more than ${eventsPerRunMax} events in one run (livelock?)`)
    }
    this.nowMs = end
  }

  /** Runs until `pred` holds (checked every tick) or `maxMs` passes. Returns whether it held. */
  runUntil(pred: () => boolean, maxMs: number): boolean {
    const end = this.nowMs + maxMs
    while (this.nowMs < end) {
      if (pred()) return true
      this.run(Math.min(this.#tickMs, end - this.nowMs))
    }
    return pred()
  }

  trace(line: string): void {
    if (this.#trace !== undefined) this.#trace(`${String(this.nowMs).padStart(7)}ms ${line}`)
  }

  // ──────────────────────────── nodes ─────────────────────────────

  node(id: NodeId): SimNode {
    const n = this.nodes.get(id)
    assert(n !== undefined, `sim: no node ${id}`)
    return n
  }

  raft(id: NodeId): Raft | null {
    return this.node(id).raft
  }

  #start(id: NodeId): void {
    const node = this.node(id)
    node.epoch++
    node.raft = new Raft({
      id,
      group: 'sim',
      storage: node.storage,
      random: this.random.fork(),
      electionTicks: this.options.electionTicks ?? 10,
      heartbeatTicks: this.options.heartbeatTicks ?? 1,
      preVote: this.options.preVote ?? true,
      checkQuorum: this.options.checkQuorum ?? true,
      msgBytesMax: this.options.msgBytesMax ?? 64 << 10,
      snapshotChunkBytes: this.options.snapshotChunkBytes ?? 1024,
      quiesce: this.options.quiesce ?? false,
    })
    node.app = restoreApp(node.storage.snapshot())
    this.checker.onSnapshot(id, node.app.applied, node.app.hash)
    node.persistQueue = []
    node.diskBusy = false
    node.proposals = new Map()
    node.reads = new Map()
    node.processScheduled = false
    const epoch = node.epoch
    const tick = (): void => {
      if (node.epoch !== epoch || node.raft === null) return
      this.#detectLostLeader(node, node.raft)
      node.raft.tick()
      this.#process(node)
      this.#at(this.#tickMs, tick)
    }
    // A random phase: nodes do not tick in lockstep.
    this.#at(1 + this.random.int(this.#tickMs), tick)
    this.trace(`node ${id} start term=${node.raft.term} last=${node.raft.log.lastIndex()} commit=${node.raft.log.committed}`)
  }

  /**
   * What the broker does from its peer connections: a quiet follower whose
   * leader is down or cut off is woken so its election timer runs again.
   */
  #detectLostLeader(node: SimNode, raft: Raft): void {
    if (!raft.quiesced || raft.role === Role.Leader) return
    const lead = raft.lead
    const leader = lead === 0 ? undefined : this.nodes.get(lead)
    if (leader === undefined || !leader.alive || !this.#linkUp(node.id, lead) || !this.#linkUp(lead, node.id)) raft.unquiesce()
  }

  /**
   * Crashes a node: volatile state is gone; of the disk writes under way a
   * random prefix made it to disk (never acted on), the rest is lost.
   */
  crash(id: NodeId): void {
    const node = this.node(id)
    if (!node.alive) return
    const keep = this.random.int(node.persistQueue.length + 1)
    for (let i = 0; i < keep; i++) writeReady(node.storage, node.persistQueue[i]!)
    node.epoch++
    node.raft = null
    node.persistQueue = []
    node.diskBusy = false
    this.trace(`node ${id} crash (kept ${keep} unsynced writes)`)
  }

  restart(id: NodeId): void {
    const node = this.node(id)
    if (node.alive) this.crash(id)
    this.#start(id)
  }

  /** Schedules a Ready pass for the node at the current time (coalesced). */
  #kick(node: SimNode): void {
    if (node.processScheduled) return
    node.processScheduled = true
    const epoch = node.epoch
    this.#at(0, () => {
      node.processScheduled = false
      if (node.epoch === epoch) this.#process(node)
    })
  }

  #process(node: SimNode): void {
    const raft = node.raft
    if (raft === null) return
    for (let pass = 0; pass < readyPassesMax; pass++) {
      const rd = raft.ready()
      if (rd === null) return
      this.#handleReady(node, raft, rd)
    }
  }

  #handleReady(node: SimNode, raft: Raft, rd: Ready): void {
    this.checker.onEntries(node.id, raft, rd.entries)
    this.checker.onState(node.id, raft, rd.entries)
    if (rd.softState !== null) this.trace(`node ${node.id} ${rd.softState.role} term=${raft.term} leader=${rd.softState.leader}`)
    for (const m of rd.messages) this.#send(m)
    if (rd.snapshot !== null) {
      node.app = restoreApp(rd.snapshot)
      this.checker.onSnapshot(node.id, node.app.applied, node.app.hash)
      this.trace(`node ${node.id} installs snapshot @${rd.snapshot.meta.index}`)
    }
    for (const e of rd.committedEntries) this.#apply(node, e)
    for (const rs of rd.readStates) {
      const r = node.reads.get(rs.context)
      if (r !== undefined && r.readIndex === 0) r.readIndex = rs.index
    }
    this.#serveReads(node)
    node.persistQueue.push(rd)
    this.#pumpDisk(node)
    this.#maybeSnapshot(node, raft)
  }

  /**
   * The disk does one write at a time; a write takes everything queued when
   * it starts (group commit), so a slow disk delays but never falls behind.
   */
  #pumpDisk(node: SimNode): void {
    if (node.diskBusy || node.persistQueue.length === 0) return
    node.diskBusy = true
    const epoch = node.epoch
    const batch = node.persistQueue.length
    const latency = this.diskLatencyMsMax > 0 ? this.random.int(this.diskLatencyMsMax + 1) : 0
    this.#at(latency, () => {
      if (node.epoch !== epoch || node.raft === null) return
      const done = node.persistQueue.splice(0, batch)
      for (const rd of done) writeReady(node.storage, rd)
      for (const rd of done) {
        for (const m of rd.messagesAfterPersist) this.#send(m)
        node.raft.advance(rd)
      }
      node.diskBusy = false
      this.#process(node)
      this.#pumpDisk(node)
    })
  }

  #apply(node: SimNode, e: Entry): void {
    assert(e.index === node.app.applied + 1, () => `sim: node ${node.id} applies ${e.index} after ${node.app.applied}`)
    node.app.hash = this.checker.onApply(node.id, e, node.app.hash)
    node.app.applied = e.index
    const cmd = e.type === EntryType.Normal ? decodeCommand(e.data) : -1
    node.app.cmdAt.set(e.index, cmd)
    const proposed = node.proposals.get(e.index)
    if (proposed !== undefined) {
      node.proposals.delete(e.index)
      if (proposed === cmd && !this.acked.has(cmd)) {
        this.acked.set(cmd, e.index)
        if (e.index > this.maxAckedIndex) this.maxAckedIndex = e.index
      }
    }
  }

  #maybeSnapshot(node: SimNode, raft: Raft): void {
    const every = this.options.snapshotEvery ?? 0
    if (every <= 0) return
    const snapIndex = node.storage.snapshot().meta.index
    const applied = node.app.applied
    if (applied - snapIndex < every || applied > node.storage.lastIndex()) return
    // An installed snapshot not yet durable: storage still holds the old log there.
    if (raft.log.unstable.snapshot !== null) return
    node.storage.createSnapshot(applied, raft.confState(), encodeApp(node.app))
    node.storage.compact(applied)
    this.trace(`node ${node.id} snapshot @${applied}`)
  }

  // ─────────────────────────── network ────────────────────────────

  #linkUp(from: NodeId, to: NodeId): boolean {
    return !this.#disconnected.has(from) && !this.#disconnected.has(to) && !this.#blocked.has(`${from}>${to}`)
  }

  #send(m: Message): void {
    const bytes = messageBytes(m)
    this.messagesSent++
    this.bytesSent += bytes
    this.#sentBy.set(m.from, (this.#sentBy.get(m.from) ?? 0) + 1)
    if (!this.#linkUp(m.from, m.to)) return
    if (!this.reliable && this.random.chance(this.dropRate)) return
    this.#deliverLater(m, this.#delay(m))
    if (!this.reliable && this.random.chance(this.duplicateRate)) this.#deliverLater(m, this.#delay(m))
  }

  #delay(m: Message): number {
    // As 6.824's labrpc: with long reordering, two answers in three are held
    // back 200 ms to ~2 s (skewed short), so they arrive out of order.
    if (this.longReordering && isAnswer(m) && this.random.chance(0.6)) return 200 + this.random.int(1 + this.random.int(2000))
    if (this.longDelays && this.random.chance(0.1)) return this.random.int(7000)
    return this.reliable ? this.random.int(2) : this.random.int(27)
  }

  #deliverLater(m: Message, delayMs: number): void {
    this.#at(delayMs, () => {
      const node = this.nodes.get(m.to)
      if (node === undefined || node.raft === null || !this.#linkUp(m.from, m.to)) return
      this.trace(`${m.from}->${m.to} ${messageTypeNames[m.type]} t${m.term} i${m.index} lt${m.logTerm} n${m.entries.length} c${m.commit}${m.reject ? ' reject' : ''}`)
      node.raft.step(m)
      this.#kick(node)
    })
  }

  /** Cuts a node off from everyone, both ways. */
  disconnect(id: NodeId): void {
    this.#disconnected.add(id)
    this.trace(`disconnect ${id}`)
  }

  connect(id: NodeId): void {
    this.#disconnected.delete(id)
    this.trace(`connect ${id}`)
  }

  isConnected(id: NodeId): boolean {
    return !this.#disconnected.has(id)
  }

  /** Drops everything from `from` to `to` (one way). */
  block(from: NodeId, to: NodeId): void {
    this.#blocked.add(`${from}>${to}`)
  }

  /** Splits the nodes into groups that cannot talk to each other (both ways). */
  partition(groups: readonly (readonly NodeId[])[]): void {
    this.#blocked.clear()
    for (let a = 0; a < groups.length; a++) {
      for (let b = 0; b < groups.length; b++) {
        if (a === b) continue
        for (const x of groups[a]!) for (const y of groups[b]!) this.#blocked.add(`${x}>${y}`)
      }
    }
    this.trace(`partition ${groups.map((g) => `[${g.join(',')}]`).join(' ')}`)
  }

  heal(): void {
    this.#blocked.clear()
    this.#disconnected.clear()
    this.trace('heal')
  }

  sentBy(id: NodeId): number {
    return this.#sentBy.get(id) ?? 0
  }

  // ─────────────────────────── clients ────────────────────────────

  /** Proposes `cmd` at node `id` (6.824's Start). */
  start(id: NodeId, cmd: number): ProposalResult {
    const node = this.node(id)
    const raft = node.raft
    if (raft === null) return { index: 0, term: 0, isLeader: false }
    const r = raft.propose([encodeCommand(cmd, this.options.commandPadBytes ?? 0)])
    if (!r.ok) return { index: 0, term: raft.term, isLeader: raft.role === Role.Leader }
    node.proposals.set(r.index, cmd)
    this.#kick(node)
    this.trace(`node ${id} propose ${cmd} @${r.index}`)
    return { index: r.index, term: r.term, isLeader: true }
  }

  proposeConfChange(id: NodeId, cc: ConfChange): boolean {
    const node = this.node(id)
    if (node.raft === null) return false
    const r = node.raft.proposeConfChange(cc)
    if (r.ok) this.#kick(node)
    this.trace(`node ${id} conf change ${JSON.stringify(cc)} -> ${r.ok ? `@${r.index}` : r.reason}`)
    return r.ok
  }

  transferLeader(id: NodeId, to: NodeId): boolean {
    const node = this.node(id)
    if (node.raft === null) return false
    const r = node.raft.transferLeader(to)
    if (r.ok) this.#kick(node)
    this.trace(`node ${id} transfer leadership to ${to} -> ${r.ok ? 'ok' : r.reason}`)
    return r.ok
  }

  /** Starts a linearizable read at node `id`; poll the returned record until done. */
  read(id: NodeId): PendingRead | null {
    const node = this.node(id)
    if (node.raft === null) return null
    const context = ++this.#readContext
    const r = node.raft.readIndex(context)
    if (!r.ok) return null
    const pending: PendingRead = { issuedAtMs: this.nowMs, mustSeeIndex: this.maxAckedIndex, readIndex: 0, done: false, result: 0 }
    node.reads.set(context, pending)
    this.#kick(node)
    return pending
  }

  #serveReads(node: SimNode): void {
    for (const [ctx, r] of node.reads) {
      if (r.readIndex === 0 || node.app.applied < r.readIndex) continue
      r.done = true
      r.result = node.app.applied
      node.reads.delete(ctx)
      if (r.result < r.mustSeeIndex) {
        throw new SafetyViolation(`t=${this.nowMs}ms node ${node.id}: stale read: state at ${r.result} misses write acknowledged at ${r.mustSeeIndex}`)
      }
    }
  }

  // ─────────────────────── 6.824-style checks ─────────────────────

  /** Leaders among connected live nodes, by term. */
  leaders(): Map<Term, NodeId[]> {
    const out = new Map<Term, NodeId[]>()
    for (const n of this.nodes.values()) {
      if (n.raft === null || !this.isConnected(n.id) || n.raft.role !== Role.Leader) continue
      const list = out.get(n.raft.term) ?? []
      list.push(n.id)
      out.set(n.raft.term, list)
    }
    return out
  }

  /** Waits for exactly one leader among connected nodes (as 6.824's checkOneLeader). */
  checkOneLeader(): NodeId {
    for (let iter = 0; iter < 10; iter++) {
      this.run(450 + this.random.int(100))
      const byTerm = this.leaders()
      let lastTerm = -1
      for (const [term, ids] of byTerm) {
        if (ids.length > 1) throw new Error(`term ${term} has ${ids.length} leaders: ${ids.join(',')}`)
        if (term > lastTerm) lastTerm = term
      }
      if (lastTerm >= 0) return byTerm.get(lastTerm)![0]!
    }
    throw new Error('expected one leader, got none')
  }

  checkNoLeader(): void {
    for (const n of this.nodes.values()) {
      if (n.raft !== null && this.isConnected(n.id) && n.raft.role === Role.Leader) {
        throw new Error(`expected no leader among connected nodes, but ${n.id} claims to be leader`)
      }
    }
  }

  /** All connected live voters agree on the term; returns it. */
  checkTerms(): Term {
    let term = -1
    for (const n of this.nodes.values()) {
      if (n.raft === null || !this.isConnected(n.id) || !n.raft.promotable()) continue
      if (term === -1) term = n.raft.term
      else if (term !== n.raft.term) throw new Error(`servers disagree on term: ${term} vs ${n.raft.term}`)
    }
    return term
  }

  /** How many nodes applied an entry at `index`, and its command; throws if they disagree. */
  nCommitted(index: LogIndex): { count: number; cmd: number } {
    let count = 0
    let cmd = Number.NaN
    for (const n of this.nodes.values()) {
      const c = n.app.cmdAt.get(index)
      if (c === undefined) continue
      if (count > 0 && c !== cmd) throw new Error(`committed values do not match at index ${index}: ${cmd} vs ${c}`)
      count++
      cmd = c
    }
    return { count, cmd }
  }

  /**
   * Proposes `cmd` until `expected` nodes applied it (6.824's one()). Tries
   * every node in turn as leader for up to 10 s of virtual time.
   */
  one(cmd: number, expected: number, retry: boolean): LogIndex {
    const deadline = this.nowMs + 10_000
    let starter = 1
    const ids = [...this.nodes.keys()]
    while (this.nowMs < deadline) {
      let index = -1
      for (let k = 0; k < ids.length; k++) {
        const id = ids[(starter + k) % ids.length]!
        const n = this.node(id)
        if (n.raft === null || !this.isConnected(id)) continue
        const r = this.start(id, cmd)
        if (r.isLeader) {
          index = r.index
          starter = id
          break
        }
      }
      if (index !== -1) {
        const until = this.nowMs + 2_000
        while (this.nowMs < until) {
          const { count, cmd: got } = this.nCommitted(index)
          if (count > 0 && count >= expected && got === cmd) return index
          this.run(20)
        }
        if (!retry) throw new Error(`one(${cmd}) failed to reach agreement`)
      } else {
        this.run(50)
      }
    }
    throw new Error(`one(${cmd}) failed to reach agreement`)
  }

  /** Waits until `count` nodes applied index (or more) and returns the command there. */
  wait(index: LogIndex, count: number, startTerm: Term): number {
    let pause = 10
    for (let iter = 0; iter < 30; iter++) {
      const { count: got } = this.nCommitted(index)
      if (got >= count) break
      this.run(pause)
      if (pause < 1000) pause *= 2
      if (startTerm > -1) {
        for (const n of this.nodes.values()) {
          if (n.raft !== null && n.raft.term > startTerm) return -1
        }
      }
    }
    const { count: got, cmd } = this.nCommitted(index)
    if (got < count) throw new Error(`only ${got} decided for index ${index}; wanted ${count}`)
    return cmd
  }

  /** Live members (voters and learners) as the current leader (or any node) sees them. */
  members(): NodeId[] {
    for (const n of this.nodes.values()) {
      if (n.raft !== null && n.raft.role === Role.Leader) return [...n.raft.voters, ...n.raft.learners].sort((a, b) => a - b)
    }
    const any = [...this.nodes.values()].find((n) => n.raft !== null)
    return any === undefined || any.raft === null ? [] : [...any.raft.voters, ...any.raft.learners].sort((a, b) => a - b)
  }

  totalChecks(): number {
    return this.checker.checks
  }
}

function range(from: number, to: number): number[] {
  const out: number[] = []
  for (let i = from; i <= to; i++) out.push(i)
  return out
}

function isAnswer(m: Message): boolean {
  switch (m.type) {
    case MessageType.AppResp:
    case MessageType.VoteResp:
    case MessageType.PreVoteResp:
    case MessageType.HeartbeatResp:
    case MessageType.SnapResp:
    case MessageType.ReadIndexResp:
      return true
    default:
      return false
  }
}

function messageBytes(m: Message): number {
  let bytes = messageHeaderBytes
  for (const e of m.entries) bytes += e.data.byteLength + 24
  if (m.data !== null) bytes += m.data.byteLength
  return bytes
}

/** What a disk write of one Ready leaves on disk: snapshot, entries, hard state. */
function writeReady(storage: MemoryStorage, rd: Ready): void {
  if (rd.snapshot !== null) storage.applySnapshot(rd.snapshot)
  if (rd.entries.length > 0) storage.append(rd.entries)
  if (rd.hardState !== null) storage.setHardState(rd.hardState)
}

function encodeApp(app: AppState): Uint8Array {
  const pairs: number[] = []
  for (const [i, c] of app.cmdAt) pairs.push(i, c)
  return new TextEncoder().encode(JSON.stringify({ applied: app.applied, hash: app.hash, pairs }))
}

function restoreApp(snap: Snapshot): AppState {
  if (snap.data.byteLength === 0) return { applied: snap.meta.index, hash: 0, cmdAt: new Map() }
  const parsed = JSON.parse(new TextDecoder().decode(snap.data)) as { applied: number; hash: number; pairs: number[] }
  assert(parsed.applied === snap.meta.index, 'sim: snapshot data does not match its index')
  const cmdAt = new Map<LogIndex, number>()
  for (let i = 0; i < parsed.pairs.length; i += 2) cmdAt.set(parsed.pairs[i]!, parsed.pairs[i + 1]!)
  return { applied: parsed.applied, hash: parsed.hash, cmdAt }
}
