/**
 * `npm run bench:raft` — how fast the Raft core commits, with nothing else in
 * the way: a 3-node group in one process, a zero-latency in-memory network,
 * MemoryStorage "disks" that are durable at once. For each batch size (entries
 * per propose call) the leader keeps `batchesPerRound` proposals in flight per
 * round; a round delivers every message and persists every Ready.
 *
 * Prints a Markdown table (and writes bench/results/raft.md + raft.svg):
 * committed entries/s at the leader, median of `runs` timed runs.
 * Target (issue 2): >= 1,000,000 entries/s at batch 100.
 */
import { writeFileSync } from 'node:fs'
import { SeededRandom } from '../src/base/index.ts'
import type { Message, Ready } from '../src/raft/index.ts'
import { MemoryStorage, Raft, Role } from '../src/raft/index.ts'
import { barChartSvg } from './chart.ts'

const batchSizes: readonly number[] = process.env.BENCH_BATCHES === undefined ? [1, 10, 100, 1000] : process.env.BENCH_BATCHES.split(",").map(Number)
/** Proposals issued per round (pipelining depth). */
const batchesPerRound = 8
/** Wall-clock per timed run. */
const runMs = 1500
const runs = Number(process.env.BENCH_RUNS ?? 5)
const entryBytes = 16

interface Group {
  nodes: Raft[]
  storages: MemoryStorage[]
  inbox: Message[]
}

function newGroup(seed: number): Group {
  const conf = { voters: [1, 2, 3], learners: [] }
  const random = new SeededRandom(seed)
  const storages = [1, 2, 3].map(() => MemoryStorage.bootstrap(conf))
  const nodes = storages.map((storage, i) => new Raft({ id: i + 1, storage, random: random.fork(), uncommittedBytesMax: 1 << 30 }))
  return { nodes, storages, inbox: [] }
}

/** Processes every node's Ready until quiet; returns entries committed at node 1. */
function stabilize(g: Group): number {
  let committed = 0
  for (let pass = 0; pass < 1000; pass++) {
    let busy = false
    for (let i = 0; i < g.nodes.length; i++) {
      const node = g.nodes[i]!
      const rd: Ready | null = node.ready()
      if (rd === null) continue
      busy = true
      for (const m of rd.messages) g.inbox.push(m)
      const s = g.storages[i]!
      if (rd.snapshot !== null) s.applySnapshot(rd.snapshot)
      if (rd.entries.length > 0) s.append(rd.entries)
      if (rd.hardState !== null) s.setHardState(rd.hardState)
      for (const m of rd.messagesAfterPersist) g.inbox.push(m)
      if (i === 0) committed += rd.committedEntries.length
      node.advance(rd)
    }
    if (g.inbox.length > 0) {
      busy = true
      const msgs = g.inbox
      g.inbox = []
      for (const m of msgs) g.nodes[m.to - 1]!.step(m)
    }
    if (!busy) break
  }
  return committed
}

function elect(g: Group): void {
  g.nodes[0]!.campaign()
  stabilize(g)
  if (g.nodes[0]!.role !== Role.Leader) throw new Error('bench: node 1 did not become leader')
}

function measure(batch: number, seed: number): number {
  const g = newGroup(seed)
  elect(g)
  const leader = g.nodes[0]!
  const payload = Array.from({ length: batch }, () => new Uint8Array(entryBytes))
  let committed = 0
  let rounds = 0
  // Compact the in-memory logs now and then so memory stays flat.
  const compactEvery = Math.max(1, Math.floor(200_000 / (batch * batchesPerRound)))
  const start = performance.now()
  let now = start
  while (now - start < runMs) {
    for (let b = 0; b < batchesPerRound; b++) {
      const r = leader.propose(payload)
      if (!r.ok) throw new Error(`bench: propose refused: ${r.reason}`)
    }
    committed += stabilize(g)
    if (++rounds % compactEvery === 0) {
      for (let i = 0; i < 3; i++) {
        const s = g.storages[i]!
        const applied = g.nodes[i]!.log.applied
        if (applied > s.snapshot().meta.index) {
          s.createSnapshot(applied, g.nodes[i]!.confState(), new Uint8Array(0))
          s.compact(applied)
        }
      }
      now = performance.now()
    }
    if ((rounds & 15) === 0) now = performance.now()
  }
  const seconds = (performance.now() - start) / 1000
  return committed / seconds
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

const rows: { batch: number; rate: number; runs: number[] }[] = []
for (const batch of batchSizes) {
  const rates: number[] = []
  for (let r = 0; r < runs; r++) {
    rates.push(measure(batch, 1000 + r))
    process.stderr.write(`bench:raft batch ${batch}: run ${r + 1}/${runs} ${Math.round(rates[r]!).toLocaleString('en-US')} entries/s\n`)
  }
  rows.push({ batch, rate: median(rates), runs: rates })
}

const lines = [
  `# Raft core: committed entries/s (3 nodes, one process, zero-latency network, in-memory storage)`,
  '',
  `node ${process.version}, ${batchesPerRound} proposals in flight per round, ${entryBytes}-byte entries, median of ${runs} runs of ${runMs} ms`,
  '',
  '| batch (entries/propose) | committed entries/s (median) | min | max |',
  '| ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.batch} | ${Math.round(r.rate).toLocaleString('en-US')} | ${Math.round(Math.min(...r.runs)).toLocaleString('en-US')} | ${Math.round(Math.max(...r.runs)).toLocaleString('en-US')} |`,
  ),
  '',
  `Target: >= 1,000,000 entries/s at batch 100 — ${rows.find((r) => r.batch === 100)!.rate >= 1_000_000 ? 'met' : 'NOT met'}.`,
  '',
  '![chart](raft.svg)',
]
const table = lines.join('\n')
process.stdout.write(`${table}\n`)
writeFileSync(new URL('./results/raft.md', import.meta.url), `${table}\n`)
writeFileSync(
  new URL('./results/raft.svg', import.meta.url),
  barChartSvg({
    title: 'Raft core: committed entries/s by batch size (median)',
    unit: 'entries/s',
    bars: rows.map((r) => ({ label: `batch ${r.batch}`, value: r.rate })),
  }),
)
