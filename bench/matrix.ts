/**
 * `npm run bench:matrix` — throughput and ack latency across the settings a
 * user tunes, on a fresh 3-broker cluster on loopback, each cell measured
 * by the very code of `rill bench produce` / `rill bench consume`
 * (src/cli/bench.ts, from the same flags):
 *
 *   persistence sync | async | memory  ×  replication 1 | 3  ×  records of 100 B | 1 KiB
 *
 *   per cell:  fresh topic (6 partitions) ──▶ produce N records, acks=all   → records/s, MB/s, ack p50/p99/p99.9
 *              ──▶ consume them back from a follower (RF 1: the leader)    → records/s, MB/s
 *              ──▶ every acknowledged record read back exactly once, or the cell FAILED
 *              ──▶ topic deleted (memory topics would otherwise pile up in RAM)
 *
 * A benchmark that loses data has failed: any cell whose acknowledged
 * records are not all read back makes the run exit 1 (the results are still
 * written, with the cell marked). Writes bench/results/matrix.json,
 * matrix.md and matrix.svg; with MATRIX_CELLS only the table on stdout.
 *
 * Bounded: each cell's produce stops after MATRIX_DURATION_S, its read-back
 * after readBackS; 12 cells at most. Progress lines on stderr.
 *
 * Env: MATRIX_RECORDS (100000 per cell), MATRIX_DURATION_S (60),
 * MATRIX_PRODUCERS (1), MATRIX_PARTITIONS (6), MATRIX_CELLS (run only the cells
 * matching one of these comma-separated names or runs of `-`-separated name
 * parts: `async-rf3-100`, `memory`, `rf3-1024`),
 * MATRIX_NOTE (a sentence for the top of matrix.md, e.g. how busy the machine was).
 */
import { writeFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { barChartSvg } from './chart.ts'
import { gitCommit, loadAverage, startBenchCluster, type TestCluster } from './lib.ts'
import { call } from '../test/broker/helpers.ts'
import { benchConsume, benchProduce, parseBenchArgs, summaryLine, type BenchContext, type BenchOptions, type BenchResult } from '../src/cli/bench.ts'

const records = Number(process.env.MATRIX_RECORDS ?? 100_000)
const durationS = Number(process.env.MATRIX_DURATION_S ?? 60)
const producers = Number(process.env.MATRIX_PRODUCERS ?? 1)
const partitions = Number(process.env.MATRIX_PARTITIONS ?? 6)
const cellFilter = process.env.MATRIX_CELLS?.split(',').map((s) => s.trim()).filter((s) => s !== '') ?? null
/** Longest read-back of one cell, s: reading is faster than writing, so this is slack, not a target. */
const readBackS = 300

const persistences = ['sync', 'async', 'memory'] as const
const replicationFactors = [1, 3] as const
const recordSizes = [100, 1024] as const

interface Cell {
  readonly name: string
  readonly persistence: (typeof persistences)[number]
  readonly replicationFactor: number
  readonly recordBytes: number
}

interface CellResult extends Cell {
  readonly produce: BenchResult
  readonly consume: BenchResult
  /** Every acknowledged record read back exactly once. */
  readonly ok: boolean
}

function progress(line: string): void {
  process.stderr.write(`[bench:matrix] ${line}\n`)
}

function cells(): Cell[] {
  const all: Cell[] = []
  for (const recordBytes of recordSizes) {
    for (const replicationFactor of replicationFactors) {
      for (const persistence of persistences) all.push({ name: `${persistence}-rf${replicationFactor}-${recordBytes}`, persistence, replicationFactor, recordBytes })
    }
  }
  // Whole `-`-separated parts: `sync` is not `async`, `rf3` is every RF 3 cell, `async-rf3` two cells.
  return cellFilter === null ? all : all.filter((c) => cellFilter.some((f) => `-${c.name}-`.includes(`-${f}-`)))
}

/** `rill bench MODE` options for a cell, from flags, as the command line would give them. */
function options(mode: 'produce' | 'consume', cell: Cell, topic: string, brokers: string): BenchOptions {
  const common = ['--brokers', brokers, '--topic', topic, '--record-bytes', String(cell.recordBytes), '--count', String(records)]
  const o =
    mode === 'produce'
      ? parseBenchArgs(['produce', ...common, '--partitions', String(partitions), '--replication-factor', String(cell.replicationFactor), '--persistence', cell.persistence, '--producers', String(producers), '--acks', 'all', '--duration', String(durationS)], {})
      : parseBenchArgs(['consume', ...common, '--read-from', 'follower', '--duration', String(readBackS)], {})
  if (o === 'help') throw new Error('unreachable: no --help given')
  return o
}

async function runCell(cell: Cell, cluster: TestCluster): Promise<CellResult> {
  const brokers = cluster.brokers.map((b) => b.url).join(',')
  const topic = `matrix-${cell.name}`
  // The bench's own lines start with what runs ("produce: 3 s, ..."): prefixed with the cell.
  const ctx: BenchContext = { progress: (line) => progress(`${cell.name} ${line}`), signal: new AbortController().signal }
  const produce = await benchProduce(options('produce', cell, topic, brokers), ctx)
  progress(`${cell.name}: ${summaryLine(produce)}`)
  const consume = await benchConsume(options('consume', cell, topic, brokers), ctx, { runId: produce.runId!, expected: produce.records })
  progress(`${cell.name}: ${summaryLine(consume)}`)
  const v = consume.verified!
  const ok = v.missing === 0 && v.duplicates === 0 && consume.records === produce.records
  if (!ok) progress(`${cell.name}: FAILED: ${produce.records} acknowledged, ${consume.records} read, ${v.missing} missing, ${v.duplicates} read twice`)
  const deleted = await call(cluster.brokers[0]!.url, 'DELETE', `/v1/topics/${topic}`)
  if (deleted.status !== 200) progress(`${cell.name}: delete ${topic}: ${deleted.status} ${JSON.stringify(deleted.body)}`)
  return { ...cell, produce, consume, ok }
}

const fmt = (n: number): string => Math.round(n).toLocaleString('en-US')

function markdown(results: readonly CellResult[], header: { date: string; commit: string; loadStart: string; loadEnd: string }): string {
  const size = (b: number): string => (b === 1024 ? '1 KiB' : `${b} B`)
  const lines = [
    '# bench:matrix — persistence × replication × record size, 3 brokers on loopback',
    '',
    `${header.date}, commit ${header.commit}; ${cpus().length} CPUs (${cpus()[0]?.model ?? 'unknown'}); load average ${header.loadStart} at start, ${header.loadEnd} at end.`,
    ...(process.env.MATRIX_NOTE === undefined ? [] : ['', process.env.MATRIX_NOTE]),
    '',
    `Each cell: a fresh topic of ${partitions} partitions; \`rill bench produce\` with ${producers} producer(s), up to ${fmt(records)} records (at most ${durationS} s), acks=all, SDK default batching; then \`rill bench consume --read-from follower\` (RF 1: the leader) reads them back, and every acknowledged record must be read exactly once.`,
    'Ack latency is per `send` of up to 100 records, under full load (not one record at a time). The machine is shared: compare rows of one run.',
    '',
    '| persistence | RF | record | acknowledged | produce records/s | produce MB/s | ack p50 ms | ack p99 ms | ack p99.9 ms | consume records/s | consume MB/s | read back |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |',
    ...results.map((r) => {
      const p = r.produce
      const c = r.consume
      const l = p.ackLatencyMs!
      const v = c.verified!
      const back = r.ok ? `all ${fmt(p.records)}` : `**FAILED**: ${fmt(v.missing)} missing, ${fmt(v.duplicates)} twice`
      return `| ${r.persistence} | ${r.replicationFactor} | ${size(r.recordBytes)} | ${fmt(p.records)} | ${fmt(p.recordsPerSec)} | ${p.mbPerSec.toFixed(1)} | ${l.p50.toFixed(2)} | ${l.p99.toFixed(2)} | ${l.p999.toFixed(2)} | ${fmt(c.recordsPerSec)} | ${c.mbPerSec.toFixed(1)} | ${back} |`
    }),
    '',
    'Reproduce: `npm run bench:matrix` (env MATRIX_RECORDS, MATRIX_DURATION_S, MATRIX_PRODUCERS, MATRIX_PARTITIONS, MATRIX_CELLS; docs/bench.md).',
    '',
  ]
  return lines.join('\n')
}

async function main(): Promise<number> {
  const list = cells()
  if (list.length === 0) throw new Error(`MATRIX_CELLS=${process.env.MATRIX_CELLS} matches no cell`)
  const loadStart = loadAverage()
  progress(`${list.length} cells, up to ${fmt(records)} records each (${durationS} s at most), ${producers} producer(s), ${partitions} partitions`)
  const cluster = await startBenchCluster(progress)
  const results: CellResult[] = []
  try {
    for (const cell of list) {
      progress(`cell ${results.length + 1}/${list.length}: ${cell.name}`)
      results.push(await runCell(cell, cluster))
    }
  } finally {
    await cluster.stopAll()
  }
  const header = { date: new Date().toISOString(), commit: gitCommit(), loadStart, loadEnd: loadAverage() }
  const md = markdown(results, header)
  process.stdout.write(md)
  if (cellFilter === null) {
    const json = { ...header, cpus: cpus().length, settings: { records, durationS, producers, partitions, acks: 'all', readBackFrom: 'follower' }, cells: results }
    writeFileSync(new URL('./results/matrix.json', import.meta.url), JSON.stringify(json, null, 2) + '\n')
    writeFileSync(new URL('./results/matrix.md', import.meta.url), md)
    const label = (r: CellResult): string => `${r.persistence} RF${r.replicationFactor} ${r.recordBytes === 1024 ? '1KiB' : `${r.recordBytes}B`}`
    const bars = results.flatMap((r) => [
      { label: `${label(r)} produce`, value: r.produce.recordsPerSec },
      { label: `${label(r)} consume`, value: r.consume.recordsPerSec },
    ])
    writeFileSync(new URL('./results/matrix.svg', import.meta.url), barChartSvg({ title: `bench:matrix: records/s, 3 brokers, acks=all (${header.date.slice(0, 10)}, ${header.commit})`, unit: 'records/s', bars }))
    progress('wrote bench/results/matrix.json, matrix.md, matrix.svg')
  }
  const failed = results.filter((r) => !r.ok)
  if (failed.length > 0) {
    progress(`FAILED: acknowledged records not read back in ${failed.map((r) => r.name).join(', ')}`)
    return 1
  }
  return 0
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error)
    process.exit(1)
  },
)
