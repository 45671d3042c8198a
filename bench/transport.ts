/**
 * Benchmark of src/transport: App messages with 1 KiB entries between two
 * transports on loopback (broker 1 on 127.0.0.11 → broker 2 on
 * 127.0.0.12), plus a heartbeat-only case (1,000 groups per tick).
 *
 * Both transports run in this one process, so the numbers include the
 * encoding AND the strict decoding on one core: a lower bound of what two
 * brokers on two cores do. The sender works like a broker tick: it queues
 * `messagesPerFlush` messages (one per group), flushes, and yields to the
 * event loop; it keeps at most `flushesInFlightMax` flushes unreceived, so
 * the run measures throughput and not queue drops.
 *
 * Writes the table to stdout and bench/results/transport.md, a bar chart to
 * bench/results/transport.svg. Usage: npm run bench:transport
 */
import { writeFileSync } from 'node:fs'
import { Registry } from 'prom-client'
import { SeededRandom } from '../src/base/index.ts'
import { EntryType, MessageType, message, type Entry, type Message } from '../src/raft/index.ts'
import { Transport, batchSize, type PeerBatch } from '../src/transport/index.ts'
import { barChartSvg } from './chart.ts'

/** How long each case runs. */
const caseMs = Number(process.env.BENCH_CASE_MS ?? 1500)
/** Entry payload size. */
const entryBytes = 1024
/** Flushes sent but not yet received before the sender waits. */
const flushesInFlightMax = 4

interface Case {
  readonly name: string
  readonly messagesPerFlush: number
  readonly entriesPerMessage: number
}

const cases: Case[] = [
  { name: '1 msg × 1 entry / flush', messagesPerFlush: 1, entriesPerMessage: 1 },
  { name: '10 msgs × 1 entry / flush', messagesPerFlush: 10, entriesPerMessage: 1 },
  { name: '100 msgs × 1 entry / flush', messagesPerFlush: 100, entriesPerMessage: 1 },
  { name: '100 msgs × 16 entries / flush', messagesPerFlush: 100, entriesPerMessage: 16 },
  { name: '10 msgs × 64 entries / flush', messagesPerFlush: 10, entriesPerMessage: 64 },
  { name: '1000 heartbeats / flush', messagesPerFlush: 1000, entriesPerMessage: 0 },
]

interface Row {
  readonly c: Case
  readonly messagesPerS: number
  readonly mbPerS: number
  readonly framesPerS: number
}

const secret = Buffer.alloc(32, 1)

function progress(line: string): void {
  process.stderr.write(`[bench:transport] ${line}\n`)
}

async function pair(): Promise<{ a: Transport; b: Transport }> {
  const make = (id: number, host: string): Transport =>
    new Transport({ brokerId: id, clusterId: 'bench', secret, listen: { host, port: 0 }, registry: new Registry(), random: new SeededRandom(id) })
  const a = make(1, '127.0.0.11')
  const b = make(2, '127.0.0.12')
  await a.start()
  await b.start()
  a.setPeers(new Map([[2, b.address()]]))
  b.setPeers(new Map([[1, a.address()]]))
  while (!a.connected(2)) await new Promise((resolve) => setTimeout(resolve, 5))
  return { a, b }
}

function messages(c: Case): Message[] {
  const data = new Uint8Array(entryBytes).fill(0x5a)
  const out: Message[] = []
  for (let g = 0; g < c.messagesPerFlush; g++) {
    if (c.entriesPerMessage === 0) {
      out.push(message({ type: MessageType.Heartbeat, from: 1, to: 2, term: 7, commit: 1000 + g, context: 0 }))
      continue
    }
    const entries: Entry[] = []
    for (let i = 0; i < c.entriesPerMessage; i++) entries.push({ term: 7, index: 101 + i, type: EntryType.Normal, data })
    out.push(message({ type: MessageType.App, from: 1, to: 2, term: 7, logTerm: 7, index: 100, commit: 100, entries }))
  }
  return out
}

async function run(c: Case): Promise<Row> {
  const { a, b } = await pair()
  const msgs = messages(c)
  let received = 0
  let entryBytesReceived = 0
  let framesReceived = 0
  b.onBatch((_from, batch: PeerBatch) => {
    framesReceived++
    received += batchSize(batch)
    for (const { message: m } of batch.groups) for (const e of m.entries) entryBytesReceived += e.data.byteLength
  })
  let flushes = 0
  const started = performance.now()
  while (performance.now() - started < caseMs) {
    if (flushes - framesReceived >= flushesInFlightMax) {
      await new Promise((resolve) => setImmediate(resolve))
      continue
    }
    for (let g = 0; g < msgs.length; g++) a.send(g, msgs[g]!)
    a.flush()
    flushes++
    await new Promise((resolve) => setImmediate(resolve))
  }
  const seconds = (performance.now() - started) / 1000
  await a.close()
  await b.close()
  return { c, messagesPerS: received / seconds, mbPerS: entryBytesReceived / seconds / 1e6, framesPerS: framesReceived / seconds }
}

const rows: Row[] = []
for (const c of cases) {
  const row = await run(c)
  rows.push(row)
  progress(`${c.name}: ${row.messagesPerS.toFixed(0)} msgs/s, ${row.mbPerS.toFixed(1)} MB/s, ${row.framesPerS.toFixed(0)} frames/s`)
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')
const table = [
  '# Transport: broker 1 → broker 2 over loopback TCP (one process, both ends)',
  '',
  `node ${process.version}, ${entryBytes}-byte entries, ${caseMs} ms per case, at most ${flushesInFlightMax} flushes in flight, handshake-authenticated connection, strict decoding on receive`,
  '',
  '| case | messages/s | entry MB/s | frames/s |',
  '| --- | ---: | ---: | ---: |',
  ...rows.map((r) => `| ${r.c.name} | ${fmt(r.messagesPerS)} | ${r.c.entriesPerMessage === 0 ? '-' : r.mbPerS.toFixed(1)} | ${fmt(r.framesPerS)} |`),
  '',
  'messages/s counts Raft messages received (an App with 16 entries is one message); MB/s counts entry payload bytes.',
  '',
  '![chart](transport.svg)',
].join('\n')
process.stdout.write(`${table}\n`)
writeFileSync(new URL('./results/transport.md', import.meta.url), `${table}\n`)
writeFileSync(
  new URL('./results/transport.svg', import.meta.url),
  barChartSvg({
    title: 'Transport throughput, 1 KiB entries (MB/s of entry data)',
    unit: 'MB/s of entry payload received, loopback, both ends in one process',
    bars: rows.filter((r) => r.c.entriesPerMessage > 0).map((r) => ({ label: r.c.name, value: r.mbPerS })),
  }),
)
