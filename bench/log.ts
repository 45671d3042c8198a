/**
 * Benchmark of src/log (issue 3): appends of 1 KiB, 16 KiB and 256 KiB in
 * each persistence mode next to two references measured in the same run (a
 * plain fs.write loop: the raw write bandwidth; a plain write+fdatasync
 * loop: the raw fsync rate), sync with 64 concurrent appenders (group
 * commit), and sync over 1, 10, 100 and 1000 partition logs at once.
 * Also the checksum measurement behind crc32c.ts.
 *
 * Why these shapes: a Raft leader appends one batch per proposal round and
 * keeps several in flight (DESIGN.md decision 5), so "appenders" are
 * concurrent promise chains, each awaiting its own append before the next.
 *
 * Bounded: every case runs `caseMs` (~1.5 s); the whole run takes about a
 * minute. Progress goes to stderr; the table to stdout and to
 * bench/results/log.md, a bar chart to bench/results/log.svg. Data goes to
 * a temp directory on the same disk as the repo (BENCH_DIR to override),
 * removed at the end.
 *
 * Usage: npm run bench:log
 */
import fs from 'node:fs'
import { createRequire } from 'node:module'
import { promisify } from 'node:util'
import { crc32 } from 'node:zlib'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { crc32c, openLogStore, type EntryToAppend, type LogStore, type PartitionLog, type PersistenceMode } from '../src/log/index.ts'

/** How long each measured case runs. */
const caseMs = Number(process.env.BENCH_CASE_MS ?? 1500)
/** Batch sizes appended. */
const sizes = [1024, 16 * 1024, 256 * 1024] as const
/** Concurrent appenders of the group-commit case. */
const appendersMax = 64
/** Partition counts of the multi-log case. */
const partitionCounts = [1, 10, 100, 1000] as const
/** Batch size of the multi-log case. */
const partitionBatchBytes = 1024

const root = process.env.BENCH_DIR ?? join(new URL('..', import.meta.url).pathname, '.bench-tmp')
const write = promisify(fs.write) as unknown as (fd: number, b: Uint8Array) => Promise<number>
/** sodium-native ships no types; the one function measured here. */
const sodium = createRequire(import.meta.url)('sodium-native') as { crypto_generichash(out: Buffer, input: Buffer): void }
const fdatasync = promisify(fs.fdatasync)

interface Row {
  section: string
  name: string
  mbPerS: number
  appendsPerS: number
  fsyncsPerS: number
  note: string
  /** This row against its issue target, filled in once the references are known. */
  target?: string
}
const rows: Row[] = []

function progress(message: string): void {
  process.stderr.write(`[bench:log] ${message}\n`)
}

function kib(bytes: number): string {
  return bytes >= 1024 ? `${bytes / 1024} KiB` : `${bytes} B`
}

function fresh(tag: string): string {
  const dir = join(root, tag)
  fs.rmSync(dir, { recursive: true, force: true })
  fs.mkdirSync(dir, { recursive: true })
  return dir
}

function record(row: Row): Row {
  rows.push(row)
  progress(`${row.section} | ${row.name}: ${row.mbPerS.toFixed(1)} MB/s, ${row.appendsPerS.toFixed(0)} appends/s, ${row.fsyncsPerS.toFixed(0)} fsyncs/s ${row.note}`)
  return row
}

// ---- checksum -------------------------------------------------------------

function benchChecksums(): void {
  const out = Buffer.alloc(16)
  for (const size of sizes) {
    const b = Buffer.alloc(size)
    for (let i = 0; i < size; i++) b[i] = (i * 31) & 0xff
    const fns: [string, () => void][] = [
      ['CRC32C (TS, slicing-by-16)', () => crc32c(0, b)],
      ['BLAKE2b-128 (sodium-native)', () => sodium.crypto_generichash(out, b)],
      ['CRC-32/IEEE (node:zlib, native)', () => crc32(b)],
    ]
    for (const [name, fn] of fns) {
      for (let i = 0; i < 64; i++) fn()
      let n = 0
      const t0 = performance.now()
      while (performance.now() - t0 < 300) for (let i = 0; i < 16; i++, n++) fn()
      const s = (performance.now() - t0) / 1000
      record({ section: 'checksum', name: `${name}, ${kib(size)}`, mbPerS: (n * size) / 1e6 / s, appendsPerS: n / s, fsyncsPerS: 0, note: '' })
    }
  }
}

// ---- references -----------------------------------------------------------

async function rawWrite(size: number): Promise<Row> {
  const dir = fresh('raw')
  const fd = fs.openSync(join(dir, 'f'), 'w')
  const b = Buffer.alloc(size, 7)
  let n = 0
  const t0 = performance.now()
  while (performance.now() - t0 < caseMs) {
    await write(fd, b)
    n++
  }
  const s = (performance.now() - t0) / 1000
  fs.closeSync(fd)
  fs.rmSync(dir, { recursive: true, force: true })
  return record({ section: 'reference', name: `raw fs.write loop, ${kib(size)}`, mbPerS: (n * size) / 1e6 / s, appendsPerS: n / s, fsyncsPerS: 0, note: '' })
}

async function rawWriteSync(size: number, label = `raw write+fdatasync loop, ${kib(size)}`): Promise<Row> {
  const dir = fresh('rawsync')
  const fd = fs.openSync(join(dir, 'f'), 'w')
  const b = Buffer.alloc(size, 7)
  let n = 0
  const t0 = performance.now()
  while (performance.now() - t0 < caseMs) {
    await write(fd, b)
    await fdatasync(fd)
    n++
  }
  const s = (performance.now() - t0) / 1000
  fs.closeSync(fd)
  fs.rmSync(dir, { recursive: true, force: true })
  return record({ section: 'reference', name: label, mbPerS: (n * size) / 1e6 / s, appendsPerS: n / s, fsyncsPerS: n / s, note: '' })
}

// ---- log cases ------------------------------------------------------------

function payload(size: number): Uint8Array {
  const b = new Uint8Array(size)
  for (let i = 0; i < size; i++) b[i] = (i * 13) & 0xff
  return b
}

async function fsyncCount(registry: Registry): Promise<number> {
  const m = await registry.getSingleMetric('rill_log_fsync_total')?.get()
  return (m?.values ?? []).filter((v) => v.labels.kind === 'wal' || v.labels.kind === 'segment').reduce((n, v) => n + v.value, 0)
}

/**
 * Runs `appenders` concurrent appenders over `logs` for caseMs; appender k
 * writes to logs[(k + round) % logs.length]. Returns bytes and appends done.
 */
async function drive(logs: PartitionLog[], appenders: number, size: number): Promise<{ bytes: number; appends: number; seconds: number }> {
  const data = payload(size)
  const next = logs.map((l) => l.lastIndex() + 1)
  const offsets = logs.map(() => 0)
  let appends = 0
  const t0 = performance.now()
  const deadline = t0 + caseMs
  const one = async (k: number): Promise<void> => {
    for (let round = 0; performance.now() < deadline; round++) {
      const p = (k + round * appenders) % logs.length
      const index = next[p]!++
      const ts = Date.now()
      const e: EntryToAppend = { index, term: 1, type: 0, data, baseOffset: offsets[p]!, recordCount: 10, timestampMinMs: ts, timestampMaxMs: ts }
      offsets[p]! += 10
      await logs[p]!.append([e])
      appends++
    }
  }
  await Promise.all(Array.from({ length: appenders }, (_, k) => one(k)))
  const seconds = (performance.now() - t0) / 1000
  return { bytes: appends * (size + 56), appends, seconds }
}

async function logCase(o: { section: string; name: string; mode: PersistenceMode; size: number; appenders: number; partitions: number; note?: (r: { mbPerS: number; fsyncsPerS: number; bytesPerFsync: number }) => string }): Promise<Row & { bytesPerFsync: number }> {
  const dir = fresh('log')
  const registry = new Registry()
  const store: LogStore = await openLogStore({ dir, registry })
  const logs: PartitionLog[] = []
  for (let p = 0; p < o.partitions; p++) logs.push(await store.openLog({ name: `t-${p}`, mode: o.mode }))
  const f0 = await fsyncCount(registry)
  const r = await drive(logs, o.appenders, o.size)
  const fsyncs = (await fsyncCount(registry)) - f0
  await store.close()
  fs.rmSync(dir, { recursive: true, force: true })
  const mbPerS = r.bytes / 1e6 / r.seconds
  const fsyncsPerS = fsyncs / r.seconds
  const bytesPerFsync = fsyncs > 0 ? r.bytes / fsyncs : 0
  const row = record({ section: o.section, name: o.name, mbPerS, appendsPerS: r.appends / r.seconds, fsyncsPerS, note: o.note?.({ mbPerS, fsyncsPerS, bytesPerFsync }) ?? '' })
  return Object.assign(row, { bytesPerFsync })
}

// ---- report ---------------------------------------------------------------

function markdown(summary: string[]): string {
  const lines = [
    '# bench:log',
    '',
    `Machine: ${process.platform} ${process.arch}, Node ${process.version}, data in ${root}. Each case ${caseMs} ms. Bytes count entry headers (56 B) + bodies.`,
    '',
    '| section | case | MB/s | appends/s | fsyncs/s | note | vs target |',
    '| --- | --- | ---: | ---: | ---: | --- | --- |',
    ...rows.map((r) => `| ${r.section} | ${r.name} | ${r.mbPerS.toFixed(1)} | ${r.appendsPerS.toFixed(0)} | ${r.fsyncsPerS.toFixed(0)} | ${r.note} | ${r.target ?? ''} |`),
    '',
    '## Targets',
    '',
    ...summary.map((s) => `- ${s}`),
    '',
  ]
  return lines.join('\n')
}

function svg(): string {
  const chartRows = rows.filter((r) => r.section !== 'checksum')
  const barH = 16
  const gap = 4
  const left = 330
  const width = 900
  const max = Math.max(...chartRows.map((r) => r.mbPerS))
  const colors: Record<string, string> = { reference: '#888888', async: '#2b8cbe', sync: '#e34a33', memory: '#31a354', 'sync, 64 appenders': '#fdae6b', partitions: '#756bb1' }
  const h = chartRows.length * (barH + gap) + 40
  const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')
  const bars = chartRows.map((r, i) => {
    const y = 30 + i * (barH + gap)
    const w = Math.max(1, ((width - left - 90) * r.mbPerS) / max)
    const color = colors[r.section] ?? '#444444'
    return [
      `<text x="${left - 6}" y="${y + 12}" text-anchor="end" font-size="11">${esc(`${r.section}: ${r.name}`)}</text>`,
      `<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${color}"/>`,
      `<text x="${(left + w + 4).toFixed(1)}" y="${y + 12}" font-size="11">${r.mbPerS.toFixed(1)} MB/s</text>`,
    ].join('')
  })
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${h}" font-family="sans-serif">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="18" font-size="14" font-weight="bold">rill bench:log — throughput (MB/s, higher is better)</text>`,
    ...bars,
    '</svg>',
    '',
  ].join('\n')
}

// ---- main -----------------------------------------------------------------

async function main(): Promise<void> {
  fs.mkdirSync(root, { recursive: true })
  const started = performance.now()
  const summary: string[] = []
  try {
    progress('checksums')
    benchChecksums()
    for (const size of sizes) {
      progress(`size ${kib(size)}`)
      const raw = await rawWrite(size)
      const rawSync = await rawWriteSync(size)
      for (const mode of ['async', 'sync', 'memory'] as const) {
        await logCase({ section: mode, name: `1 appender, ${kib(size)}`, mode, size, appenders: 1, partitions: 1 })
      }
      const asyncPiped = await logCase({ section: 'async', name: `4 appenders, ${kib(size)}`, mode: 'async', size, appenders: 4, partitions: 1 })
      const async1 = rows.find((r) => r.section === 'async' && r.name === `1 appender, ${kib(size)}`)!
      for (const r of [async1, asyncPiped]) r.target = `${((100 * r.mbPerS) / raw.mbPerS).toFixed(0)}% of raw fs.write (>= 80%)`
      summary.push(
        `async ${kib(size)} vs raw fs.write (${raw.mbPerS.toFixed(0)} MB/s): 1 appender ${((100 * async1.mbPerS) / raw.mbPerS).toFixed(0)}%, 4 appenders ${((100 * asyncPiped.mbPerS) / raw.mbPerS).toFixed(0)}% (target >= 80%)`,
      )
      const group = await logCase({
        section: 'sync, 64 appenders',
        name: `1 log, ${kib(size)}`,
        mode: 'sync',
        size,
        appenders: appendersMax,
        partitions: 1,
        note: (r) => `${(r.bytesPerFsync / 1024).toFixed(0)} KiB per group commit`,
      })
      const ideal = (rawSync.fsyncsPerS * group.bytesPerFsync) / 1e6
      // The fair reference: a raw loop whose every fsync covers the same bytes as one group commit
      // (the literal target multiplies the fsync rate of small writes by a large commit, which no disk reaches).
      const commitBytes = Math.max(size, Math.round(group.bytesPerFsync / 4096) * 4096)
      const atCommitSize = await rawWriteSync(commitBytes, `raw write+fdatasync loop, ${kib(commitBytes)} (one group commit)`)
      group.target = `${((100 * group.mbPerS) / ideal).toFixed(0)}% of raw fsync rate x commit bytes (>= 80%); ${((100 * group.mbPerS) / atCommitSize.mbPerS).toFixed(0)}% of raw loop at commit bytes`
      summary.push(
        `sync ${kib(size)}, 64 appenders: ${group.mbPerS.toFixed(0)} MB/s = ${((100 * group.mbPerS) / ideal).toFixed(0)}% of raw fsync rate x bytes per group commit (${rawSync.fsyncsPerS.toFixed(0)}/s x ${(group.bytesPerFsync / 1024).toFixed(0)} KiB = ${ideal.toFixed(0)} MB/s; target >= 80%), ${((100 * group.mbPerS) / atCommitSize.mbPerS).toFixed(0)}% of a raw write+fdatasync loop writing one group commit's bytes (${atCommitSize.mbPerS.toFixed(0)} MB/s)`,
      )
    }
    progress('partitions')
    const byCount = new Map<number, number>()
    for (const n of partitionCounts) {
      const r = await logCase({ section: 'partitions', name: `sync, ${n} logs, 64 appenders, ${kib(partitionBatchBytes)}`, mode: 'sync', size: partitionBatchBytes, appenders: appendersMax, partitions: n, note: (x) => `${(x.bytesPerFsync / 1024).toFixed(0)} KiB per fsync` })
      byCount.set(n, r.mbPerS)
    }
    const at1000 = rows.find((r) => r.section === 'partitions' && r.name.startsWith('sync, 1000 logs, 64'))!
    at1000.target = `${(byCount.get(1000)! / byCount.get(1)!).toFixed(2)}x of 1 log (>= 0.5x)`
    const one = await logCase({ section: 'partitions', name: `sync, 1000 logs, 1000 appenders, ${kib(partitionBatchBytes)}`, mode: 'sync', size: partitionBatchBytes, appenders: 1000, partitions: 1000 })
    summary.push(
      `sync at 1000 partitions vs 1 partition (64 appenders, 1 KiB): ${byCount.get(1000)!.toFixed(1)} vs ${byCount.get(1)!.toFixed(1)} MB/s = ${(byCount.get(1000)! / byCount.get(1)!).toFixed(2)}x (target >= 0.5x); with one appender per partition: ${one.mbPerS.toFixed(1)} MB/s`,
    )
  } finally {
    fs.rmSync(root, { recursive: true, force: true })
  }
  const md = markdown(summary)
  const outDir = new URL('./results/', import.meta.url).pathname
  fs.mkdirSync(outDir, { recursive: true })
  fs.writeFileSync(join(outDir, 'log.md'), md)
  fs.writeFileSync(join(outDir, 'log.svg'), svg())
  process.stdout.write(md)
  progress(`done in ${((performance.now() - started) / 1000).toFixed(0)} s; wrote bench/results/log.md and log.svg`)
}

await main()
