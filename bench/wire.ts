/**
 * Benchmark of src/wire: the record batch codec on the paths DESIGN.md
 * decision 3 puts it on.
 *
 *   encode    the producer SDK (or the JSON edge) building a batch
 *   validate  the leader checking every produced batch (sizes, count, a walk
 *             over the record lengths, CRC32C) — on the hot path, so MB/s
 *   decode    the consumer SDK (and the broker's JSON fetch path)
 *   json→batch / batch→json   the JSON edge for curl users, for scale
 *   crc32c    the checksum alone: the ceiling for validate
 *
 * Records of 100 B and 1 KiB values (no key, no headers), batches of 100.
 * Each case runs `runs` times for `runMs`; the median run is reported.
 * MB/s counts batch bytes (header + records). One core, Node 20.
 *
 * Usage: npm run bench:wire   (BENCH_RUN_MS, BENCH_RUNS to override)
 * Writes bench/results/wire.md (table) and bench/results/wire.svg (chart).
 */
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { SeededRandom, crc32c } from '../src/base/index.ts'
import { decodeBatch, encodeBatch, recordsFromJson, recordsToJson, stampBaseOffset, validateBatch, type RecordInput } from '../src/wire/index.ts'
import { barChartSvg } from './chart.ts'

/** Duration of one measured run. */
const runMs = Number(process.env.BENCH_RUN_MS ?? 300)
/** Runs per case; the median is reported. */
const runs = Number(process.env.BENCH_RUNS ?? 7)
/** Records per batch. */
const batchRecords = 100
/** Value sizes measured. */
const valueSizes = [100, 1024] as const
/** Distinct batches cycled through, so one batch's bytes do not sit in L1 the whole time. */
const batchesDistinct = 16

interface Row {
  op: string
  valueBytes: number
  recordsPerS: number
  mbPerS: number
  batchBytes: number
}

const rows: Row[] = []
const loadAtStart = os.loadavg().map((l) => l.toFixed(1)).join(' / ')
/** Results are folded into this so the work cannot be optimised away. */
let sink = 0

function progress(message: string): void {
  process.stderr.write(`[bench:wire] ${message}\n`)
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

/** Runs `op` (one batch per call) for runMs, `runs` times; returns the median batches per second. */
function measure(op: (i: number) => void): number {
  for (let i = 0; i < 200; i++) op(i) // warm up: let the JIT settle
  const rates: number[] = []
  for (let r = 0; r < runs; r++) {
    let n = 0
    const start = performance.now()
    let elapsed = 0
    while (elapsed < runMs) {
      for (let k = 0; k < 20; k++) op(n++)
      elapsed = performance.now() - start
    }
    rates.push((n / elapsed) * 1000)
  }
  return median(rates)
}

function records(random: SeededRandom, valueBytes: number): RecordInput[] {
  return Array.from({ length: batchRecords }, () => {
    const value = new Uint8Array(valueBytes)
    for (let i = 0; i < valueBytes; i++) value[i] = 32 + random.int(95) // printable, so the JSON path can use utf8
    return { value }
  })
}

function row(op: string, valueBytes: number, batchesPerS: number, batchBytes: number): void {
  const r = { op, valueBytes, recordsPerS: batchesPerS * batchRecords, mbPerS: (batchesPerS * batchBytes) / 1e6, batchBytes }
  rows.push(r)
  progress(`${op} ${valueBytes} B: ${(r.recordsPerS / 1e6).toFixed(2)} M records/s, ${r.mbPerS.toFixed(0)} MB/s`)
}

function benchSize(valueBytes: number): void {
  const random = new SeededRandom(valueBytes)
  const inputs = Array.from({ length: batchesDistinct }, () => records(random, valueBytes))
  const batches = inputs.map((rs) => encodeBatch({ records: rs, producerId: 1, producerEpoch: 0, baseSequence: 0, timestampMs: 1_700_000_000_000 }))
  batches.forEach((b, i) => stampBaseOffset(b, i * batchRecords))
  const batchBytes = batches[0]!.length
  const pick = (i: number): number => i % batchesDistinct

  row('encode', valueBytes, measure((i) => {
    sink += encodeBatch({ records: inputs[pick(i)]!, producerId: 1, producerEpoch: 0, baseSequence: i, timestampMs: 1_700_000_000_000 }).length
  }), batchBytes)
  row('validate', valueBytes, measure((i) => {
    sink += validateBatch(batches[pick(i)]!).recordCount
  }), batchBytes)
  row('decode', valueBytes, measure((i) => {
    sink += decodeBatch(batches[pick(i)]!).records.length
  }), batchBytes)
  row('crc32c only', valueBytes, measure((i) => {
    sink += crc32c(0, batches[pick(i)]!.subarray(16))
  }), batchBytes)
  const decoder = new TextDecoder()
  const jsonBodies = inputs.map((rs) => JSON.stringify({ records: rs.map((r) => ({ value: decoder.decode(r.value) })) }))
  row('JSON body → batch', valueBytes, measure((i) => {
    const body = JSON.parse(jsonBodies[pick(i)]!) as { records: unknown }
    sink += encodeBatch({ records: recordsFromJson(body.records, 'utf8'), timestampMs: 1 }).length
  }), batchBytes)
  row('batch → JSON answer', valueBytes, measure((i) => {
    sink += JSON.stringify({ records: recordsToJson(decodeBatch(batches[pick(i)]!).records, 'utf8') }).length
  }), batchBytes)
}

function table(): string {
  const lines = [
    '# bench:wire',
    '',
    `Machine: ${os.platform()} ${os.arch()}, ${os.cpus()[0]?.model ?? 'unknown CPU'}, Node ${process.version}, one core.`,
    `Batches of ${batchRecords} records, value only (no key, no headers), ${batchesDistinct} distinct batches cycled.`,
    `Median of ${runs} runs of ${runMs} ms each. MB/s counts whole batch bytes (52-byte header + records).`,
    `Load average at start: ${loadAtStart} on ${os.cpus().length} CPUs (a shared machine: other load makes single rows noisy, rerun on a quiet machine before drawing fine conclusions).`,
    'The JSON rows include JSON.parse / JSON.stringify of the body: the cost of the curl path, for scale.',
    '',
    '| operation | value size | batch bytes | records/s | MB/s |',
    '| --- | ---: | ---: | ---: | ---: |',
  ]
  for (const r of rows) {
    lines.push(`| ${r.op} | ${r.valueBytes} B | ${r.batchBytes} | ${Math.round(r.recordsPerS).toLocaleString('en-US')} | ${r.mbPerS.toFixed(0)} |`)
  }
  return `${lines.join('\n')}\n`
}

function main(): void {
  progress(`runs=${runs} runMs=${runMs}`)
  for (const size of valueSizes) benchSize(size)
  const out = join(new URL('.', import.meta.url).pathname, 'results')
  fs.mkdirSync(out, { recursive: true })
  const md = table()
  fs.writeFileSync(join(out, 'wire.md'), md)
  const svg = barChartSvg({
    title: 'rill record batch codec (batches of 100 records)',
    unit: 'MB/s of batch bytes, one core',
    bars: rows.map((r) => ({ label: `${r.op}, ${r.valueBytes} B`, value: r.mbPerS })),
  })
  fs.writeFileSync(join(out, 'wire.svg'), svg)
  process.stdout.write(md)
  if (sink === 0.5) progress('unreachable') // keeps `sink` observable
}

main()
