/**
 * Where a partition replica keeps its latest Raft snapshot (partition state
 * at an index + membership). One file, replaced atomically:
 *
 *   "RILLSNAP" | u32 version | u32 crc32c(0, body) | u32 bodyBytes | body (msgpack)
 *
 * written to a temporary name, fsynced, renamed over the old one, and the
 * directory fsynced: a crash leaves the old or the new snapshot, never half.
 * The directory itself is created durably (its parents fsynced) on the first
 * save.
 *
 * File operations go through the log's seam (`LogIo`, src/log/io.ts), so the
 * simulator's crashing disk holds snapshots too. The file is written to the
 * page cache synchronously, as log appends are (io.ts says why); snapshots
 * are small (partition state, metadata) and bounded by snapshotFileBytesMax.
 */
import { join } from 'node:path'
import { pack, unpack } from 'msgpackr'
import { crc32c, ErrorCode, RillError } from '../base/index.ts'
import { isErrorCode, mkdirDurable, nodeIo, readFile, storageError, writeFileAtomic, type LogIo } from '../log/index.ts'
import type { Snapshot } from '../raft/index.ts'

export interface SnapshotStore {
  /** The saved snapshot, or null if none. */
  load(): Promise<Snapshot | null>
  /** Replaces the saved snapshot durably. */
  save(snapshot: Snapshot): Promise<void>
}

const magic = 'RILLSNAP'
const version = 1
const headerBytes = 20
/** Largest snapshot file accepted (partition state is small; this is a sanity bound). */
export const snapshotFileBytesMax = 256 << 20

export class MemorySnapshotStore implements SnapshotStore {
  #snapshot: Snapshot | null = null

  async load(): Promise<Snapshot | null> {
    return this.#snapshot
  }

  async save(snapshot: Snapshot): Promise<void> {
    this.#snapshot = snapshot
  }
}

/** Options of a FileSnapshotStore. */
export interface FileSnapshotStoreOptions {
  /** File operations: node:fs by default; the simulator passes its disk. */
  readonly io?: LogIo
}

export class FileSnapshotStore implements SnapshotStore {
  readonly #dir: string
  readonly #path: string
  readonly #io: LogIo

  constructor(dir: string, options: FileSnapshotStoreOptions = {}) {
    this.#dir = dir
    this.#path = join(dir, 'snapshot.bin')
    this.#io = options.io ?? nodeIo
  }

  async load(): Promise<Snapshot | null> {
    let bytes: Buffer
    try {
      bytes = await readFile(this.#io, this.#path)
    } catch (error) {
      if (isErrorCode(error, 'ENOENT')) return null
      throw new RillError(ErrorCode.STORAGE_UNUSABLE, `snapshot ${this.#path}: ${(error as Error).message}`, { cause: error })
    }
    return decodeSnapshotFile(bytes, this.#path)
  }

  async save(snapshot: Snapshot): Promise<void> {
    try {
      await mkdirDurable(this.#io, this.#dir)
      await writeFileAtomic(this.#io, this.#path, encodeSnapshotFile(snapshot))
    } catch (error) {
      // ENOSPC is STORAGE_FULL, anything else STORAGE_UNUSABLE: a coded error, never a raw errno.
      throw storageError(error, `snapshot ${this.#path}`)
    }
  }
}

export function encodeSnapshotFile(s: Snapshot): Uint8Array {
  const body: Uint8Array = pack([s.meta.index, s.meta.term, s.meta.conf.voters, s.meta.conf.learners, s.data])
  const out = new Uint8Array(headerBytes + body.byteLength)
  out.set(new TextEncoder().encode(magic), 0)
  const view = new DataView(out.buffer)
  view.setUint32(8, version, true)
  view.setUint32(12, crc32c(0, body), true)
  view.setUint32(16, body.byteLength, true)
  out.set(body, headerBytes)
  return out
}

export function decodeSnapshotFile(bytes: Uint8Array, name: string): Snapshot {
  const bad = (why: string): RillError => new RillError(ErrorCode.STORAGE_CORRUPT, `snapshot ${name}: ${why}`)
  if (bytes.byteLength < headerBytes || bytes.byteLength > snapshotFileBytesMax) throw bad(`size ${bytes.byteLength} out of bounds`)
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== magic) throw bad('not a snapshot file (bad magic)')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const v = view.getUint32(8, true)
  if (v !== version) throw new RillError(ErrorCode.STORAGE_UNUSABLE, `snapshot ${name}: unknown format version ${v}`)
  const length = view.getUint32(16, true)
  if (headerBytes + length !== bytes.byteLength) throw bad(`body length ${length} does not match file size`)
  const body = bytes.subarray(headerBytes)
  if (crc32c(0, body) !== view.getUint32(12, true)) throw bad('checksum mismatch')
  const parsed: unknown = unpack(body)
  if (!Array.isArray(parsed) || parsed.length !== 5) throw bad('malformed body')
  const [index, term, voters, learners, data] = parsed as unknown[]
  const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.every((n) => Number.isSafeInteger(n) && (n as number) > 0)
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(term) || !isIds(voters) || !isIds(learners) || !(data instanceof Uint8Array)) {
    throw bad('malformed fields')
  }
  return { meta: { index: index as number, term: term as number, conf: { voters, learners } }, data }
}
