/**
 * Partition replicas in one process for tests: the real Raft core, the real
 * log (memory, or on disk in sync mode), the real record batch format;
 * messages go through an in-process network with a per-replica "down" switch.
 */
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { SeededRandom } from '../../src/base/index.ts'
import { MemoryLog, openLogStore, type LogStore, type OpenLogOptions } from '../../src/log/index.ts'
import type { Message, NodeId } from '../../src/raft/index.ts'
import { FileSnapshotStore, MemorySnapshotStore, Partition } from '../../src/partition/index.ts'
import { decodeBatch, encodeBatch, readBatchHeader, stampBaseOffset } from '../../src/wire/record-batch.ts'

export const codec = { readHeader: readBatchHeader, stampBaseOffset }
export const text = (s: string): Uint8Array => new TextEncoder().encode(s)

export interface Cluster {
  replicas: Map<NodeId, Partition>
  down: Set<NodeId>
  stop: () => Promise<void>
  store?: LogStore
}

export async function startCluster(
  options: { ids?: NodeId[]; dir?: string; seed?: number; log?: Partial<OpenLogOptions>; snapshotEntries?: number; quiesce?: boolean } = {},
): Promise<Cluster> {
  const ids = options.ids ?? [1, 2, 3]
  const replicas = new Map<NodeId, Partition>()
  const down = new Set<NodeId>()
  const random = new SeededRandom(options.seed ?? 7)
  const store = options.dir === undefined ? undefined : await openLogStore({ dir: options.dir, registry: new Registry() })
  const send = (msgs: readonly Message[]): void => {
    for (const m of msgs) {
      setImmediate(() => {
        if (down.has(m.from) || down.has(m.to)) return
        replicas.get(m.to)?.step(m)
      })
    }
  }
  for (const id of ids) {
    const log = store === undefined ? new MemoryLog({ name: `t-${id}` }) : await store.openLog({ name: `t-${id}`, mode: 'sync', ...options.log })
    const snapshots = options.dir === undefined ? new MemorySnapshotStore() : new FileSnapshotStore(join(options.dir, `snap-${id}`))
    replicas.set(
      id,
      await Partition.open({ group: 't/0', replicaId: id, log, snapshots, bootstrap: { voters: ids, learners: [] }, codec, random: random.fork(), send, snapshotEntries: options.snapshotEntries ?? 50, quiesce: options.quiesce ?? false }),
    )
  }
  const ticker = setInterval(() => {
    for (const [id, p] of replicas) if (!down.has(id)) p.tick()
  }, 2)
  const stop = async (): Promise<void> => {
    clearInterval(ticker)
    for (const p of replicas.values()) await p.close()
    await store?.close()
  }
  return { replicas, down, stop, ...(store === undefined ? {} : { store }) }
}

export async function until(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 2))
  }
}

export async function leaderOf(c: Cluster): Promise<Partition> {
  let found: Partition | undefined
  await until(() => {
    found = [...c.replicas].find(([id, p]) => !c.down.has(id) && p.isReadyLeader())?.[1]
    return found !== undefined
  })
  return found!
}

export function batchOf(values: string[], producer?: { id: number; epoch: number; seq: number }): Uint8Array {
  return encodeBatch({
    records: values.map((v) => ({ value: text(v) })),
    ...(producer === undefined ? {} : { producerId: producer.id, producerEpoch: producer.epoch, baseSequence: producer.seq }),
  })
}

export async function readAll(p: Partition, hw: number, from = 0): Promise<string[]> {
  const out: string[] = []
  let offset = from
  while (offset < hw) {
    const r = await p.fetch({ offset, bytesMax: 1 << 20, waitMs: 0 })
    for (const b of r.batches) for (const rec of decodeBatch(b).records) out.push(`${rec.offset}:${new TextDecoder().decode(rec.value)}`)
    if (r.nextOffset === offset) break
    offset = r.nextOffset
  }
  return out
}

