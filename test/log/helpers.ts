// Shared helpers of the log tests: temp directories, entry factories, a
// model comparison. Not a test file itself.
import fs from 'node:fs'
import os from 'node:os'
import { join } from 'node:path'
import { Registry } from 'prom-client'
import { openLogStore, type EntryToAppend, type LogEntry, type LogStore, type LogStoreOptions } from '../../src/log/index.ts'

/** A fresh temp directory; removed by the returned cleanup. */
export function tempDir(tag: string): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(join(os.tmpdir(), `rill-log-${tag}-`))
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) }
}

/** Opens a store on `dir` with its own registry. */
export function store(dir: string, extra: Partial<LogStoreOptions> = {}): Promise<LogStore> {
  return openLogStore({ dir, registry: new Registry(), ...extra })
}

/** A deterministic data entry: body bytes derived from index and term. */
export function entry(index: number, term: number, options: { bytes?: number; offset?: number; type?: number; records?: number; ts?: number } = {}): EntryToAppend {
  const bytes = options.bytes ?? 32
  const data = new Uint8Array(bytes)
  for (let i = 0; i < bytes; i++) data[i] = (index * 31 + term * 7 + i) & 0xff
  const records = options.records ?? (options.type === 1 ? 0 : 1)
  const ts = options.ts ?? (records > 0 ? 1_700_000_000_000 + index : 0)
  return {
    index,
    term,
    type: options.type ?? 0,
    data,
    baseOffset: records > 0 ? (options.offset ?? index * 10) : 0,
    recordCount: records,
    timestampMinMs: ts,
    timestampMaxMs: ts,
  }
}

/** Consecutive entries from `first` to `last` in one term. */
export function entries(first: number, last: number, term: number, bytes = 32): EntryToAppend[] {
  const out: EntryToAppend[] = []
  for (let i = first; i <= last; i++) out.push(entry(i, term, { bytes }))
  return out
}

/** Comparable view of an entry. */
export function plain(e: LogEntry): object {
  return { ...e, data: Buffer.from(e.data).toString('hex') }
}
