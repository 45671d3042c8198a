/**
 * A tiny synchronous driver for unit tests of the Raft core: nodes keep their
 * Readies until the test persists them, messages wait in an outbox until the
 * test delivers them. Nothing happens unless the test says so.
 */
import { SeededRandom } from '../../src/base/index.ts'
import type { ConfState, Entry, Message, NodeId, RaftConfig, Ready } from '../../src/raft/index.ts'
import { MemoryStorage, Raft } from '../../src/raft/index.ts'

export interface TestNode {
  readonly raft: Raft
  readonly storage: MemoryStorage
  /** Readies taken but not yet persisted, oldest first. */
  readonly pending: Ready[]
  readonly applied: Entry[]
}

export class TestNet {
  readonly nodes = new Map<NodeId, TestNode>()
  /** Messages sent and not yet delivered. */
  outbox: Message[] = []

  constructor(ids: readonly NodeId[], options: Partial<RaftConfig> & { conf?: ConfState; seed?: number } = {}) {
    const conf = options.conf ?? { voters: [...ids], learners: [] }
    const random = new SeededRandom(options.seed ?? 1)
    for (const id of ids) {
      const storage = MemoryStorage.bootstrap(conf)
      this.add(id, storage, { ...options, random: random.fork() })
    }
  }

  add(id: NodeId, storage: MemoryStorage, options: Partial<RaftConfig> = {}): TestNode {
    const raft = new Raft({ random: new SeededRandom(id), ...options, id, storage })
    const node: TestNode = { raft, storage, pending: [], applied: [] }
    this.nodes.set(id, node)
    return node
  }

  node(id: NodeId): TestNode {
    const n = this.nodes.get(id)
    if (n === undefined) throw new Error(`no node ${id}`)
    return n
  }

  raft(id: NodeId): Raft {
    return this.node(id).raft
  }

  /** Takes every Ready of `id`: sends its immediate messages, keeps it pending. */
  take(id: NodeId): Ready[] {
    const n = this.node(id)
    const out: Ready[] = []
    for (let rd = n.raft.ready(); rd !== null; rd = n.raft.ready()) {
      this.outbox.push(...rd.messages)
      for (const e of rd.committedEntries) n.applied.push(e)
      n.pending.push(rd)
      out.push(rd)
    }
    return out
  }

  /** Persists every pending Ready of `id`, sends what waited for it, advances. */
  persist(id: NodeId): void {
    const n = this.node(id)
    while (n.pending.length > 0) {
      const rd = n.pending.shift()!
      if (rd.snapshot !== null) n.storage.applySnapshot(rd.snapshot)
      if (rd.entries.length > 0) n.storage.append(rd.entries)
      if (rd.hardState !== null) n.storage.setHardState(rd.hardState)
      this.outbox.push(...rd.messagesAfterPersist)
      n.raft.advance(rd)
    }
  }

  /** Delivers queued messages (those `keep` accepts; the rest are dropped). */
  deliver(keep: (m: Message) => boolean = () => true): number {
    const msgs = this.outbox
    this.outbox = []
    let n = 0
    for (const m of msgs) {
      const target = this.nodes.get(m.to)
      if (target === undefined || !keep(m)) continue
      target.raft.step(m)
      n++
    }
    return n
  }

  /** Takes, persists and delivers until nothing moves (bounded). */
  stabilize(keep: (m: Message) => boolean = () => true): void {
    for (let round = 0; round < 1000; round++) {
      let moved = false
      for (const id of this.nodes.keys()) {
        if (this.take(id).length > 0) moved = true
        if (this.node(id).pending.length > 0) moved = true
        this.persist(id)
      }
      if (this.outbox.length > 0) moved = true
      this.deliver(keep)
      if (!moved) return
    }
    throw new Error('stabilize: did not settle in 1000 rounds')
  }

  /** Makes `id` leader by campaigning and stabilizing. */
  elect(id: NodeId): void {
    this.raft(id).campaign()
    this.stabilize()
  }
}

export const data = (s: string): Uint8Array => new TextEncoder().encode(s)
