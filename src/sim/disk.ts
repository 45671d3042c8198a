/**
 * The simulator's disk: one machine's file system in memory, behind the same
 * seam the log uses for node:fs (`LogIo`, src/log/io.ts), so the simulator
 * runs the real DiskLog, WAL, LogStore and FileSnapshotStore on it.
 * Deterministic given its seeded Random and a virtual Runtime: async
 * operations (fsync, fdatasync, reads) complete after a latency drawn from
 * a configured range (`runtime.setTimer`; at latency 0, `runtime.defer`).
 *
 * Durability, modelled as a crash-consistency checker needs it:
 *
 *   file:       durable bytes + unsynced ops [write, write, truncate, ...]
 *               fsync/fdatasync: the ops issued before the call become durable
 *   directory:  durable entries + unsynced ops [link, unlink, rename, ...]
 *               (create, mkdir, rename, unlink); durable only by an fsync of
 *               the directory itself (fsyncDir): an fsynced file whose
 *               directory entry is not durable may vanish
 *
 *   crash('power-loss')     every file and directory keeps its durable state
 *                           plus a random prefix of its unsynced ops, the last
 *                           kept write possibly torn at a random byte (and the
 *                           rest of its range zeros: the size got there, the
 *                           data did not); then that is what is on disk
 *   crash('process-crash')  the page cache survives: nothing written is lost,
 *                           nothing becomes durable that was not
 *
 * Either way every descriptor is closed and every operation in flight is
 * dropped: its promise never settles (the process that awaited it is dead;
 * nothing completes after a crash), and the machine's next process has
 * another pid, so the store's directory lock left behind is stale.
 *
 * Faults, each seeded and changeable at any time (`setFaults`): a byte
 * budget (a write past it is short, the next one fails with ENOSPC), EIO on
 * reads and on fsyncs at given rates, latency ranges with a factor (slow
 * mode), and `stall(ms)`: nothing async completes before it ends. Errors
 * look like node's (an Error with `code`, `errno`, `syscall`, `path`), so
 * the log maps them as it maps real ones. `counters()` lets the simulator's
 * livelock detector see whether a broker's disk work makes progress.
 *
 * Paths are POSIX strings ("/data/logs/t1-0/..."), resolved from "/" (which
 * always exists). Descriptors are never reused, so a stale one fails with
 * EBADF instead of reaching another file. No hard links, no permissions, no
 * symlinks. Give the disk the simulator's root runtime, not a process scope:
 * the disk outlives the processes that use it.
 */
import { posix } from 'node:path'
import type { Runtime, SeededRandom } from '../base/index.ts'
import type { LogIo, OpenFlags } from '../log/index.ts'

/**
 * What a crash does to data not yet fsynced: `power-loss` (the machine
 * loses power: unsynced writes and directory entries are lost or torn) or
 * `process-crash` (the process dies, the kernel's page cache survives:
 * nothing written is lost).
 */
export type CrashKind = 'power-loss' | 'process-crash'

/** Faults and timings of a SimDisk; every field can change while it runs (`setFaults`). */
export interface SimDiskFaults {
  /** fsync/fdatasync latency range [min, max], virtual ms. */
  readonly fsyncLatencyMs: readonly [number, number]
  /** Async read latency range [min, max], virtual ms. */
  readonly readLatencyMs: readonly [number, number]
  /** Multiplies every latency drawn (slow mode: a degraded disk). 1 = as drawn. */
  readonly latencyFactor: number
  /** Bytes the disk holds (the sum of file sizes); a write past it is short, then fails with ENOSPC. */
  readonly capacityBytes: number
  /** Probability that a read (sync or async) fails with EIO. */
  readonly readErrorRate: number
  /** Probability that an fsync or fdatasync fails with EIO (its writes stay unsynced). */
  readonly fsyncErrorRate: number
}

/** Options of a SimDisk. */
export interface SimDiskOptions {
  /** Source of every random choice (latencies, faults, what a power loss keeps); forked per purpose. */
  readonly random: SeededRandom
  /** The simulator's root runtime (the disk outlives process scopes). */
  readonly runtime: Runtime
  /** What `crash()` does without an argument. Default 'power-loss'. */
  readonly crashKind?: CrashKind
  /** Power loss: probability that the last unsynced write kept is torn. Default 0.5. */
  readonly tornWriteRate?: number
  /** Initial faults (defaults: no latency, no errors, no budget). */
  readonly faults?: Partial<SimDiskFaults>
}

/** Work done so far, for the simulator's livelock detector. */
export interface SimDiskCounters {
  readonly writes: number
  readonly bytesWritten: number
  readonly reads: number
  readonly bytesRead: number
  readonly fsyncs: number
  /** Directory operations: creates, mkdirs, renames, unlinks. */
  readonly dirOps: number
  /** Errors injected (ENOSPC, EIO). */
  readonly faults: number
  readonly crashes: number
  /** Async operations started and not yet completed. */
  readonly inflight: number
}

/** A file's state, for tests. */
export interface SimFileState {
  readonly bytes: number
  readonly durableBytes: number
  readonly unsyncedOps: number
}

const faultsDefault: SimDiskFaults = {
  fsyncLatencyMs: [0, 0],
  readLatencyMs: [0, 0],
  latencyFactor: 1,
  capacityBytes: Infinity,
  readErrorRate: 0,
  fsyncErrorRate: 0,
}

/** Pid of the disk's first process; each crash moves to the next. */
const pidFirst = 1000
/** Size fstat reports for a directory. */
const dirStatBytes = 4096

const errnos: Record<string, [number, string]> = {
  ENOENT: [-2, 'no such file or directory'],
  EIO: [-5, 'i/o error'],
  EBADF: [-9, 'bad file descriptor'],
  EEXIST: [-17, 'file already exists'],
  ENOTDIR: [-20, 'not a directory'],
  EISDIR: [-21, 'illegal operation on a directory'],
  EINVAL: [-22, 'invalid argument'],
  ENOSPC: [-28, 'no space left on device'],
  ENOTEMPTY: [-39, 'directory not empty'],
}

/** An error shaped like node's fs errors (code, errno, syscall, path). */
function fsError(code: keyof typeof errnos, syscall: string, path?: string): NodeJS.ErrnoException {
  const [errno, text] = errnos[code]!
  const error: NodeJS.ErrnoException = new Error(`${code}: ${text}, ${syscall}${path === undefined ? '' : ` '${path}'`}`)
  error.code = code
  error.errno = errno
  error.syscall = syscall
  if (path !== undefined) error.path = path
  return error
}

/** A growable byte array: a file's content. */
class Bytes {
  #buf: Buffer = Buffer.alloc(0)
  length = 0

  #room(n: number): void {
    if (n <= this.#buf.length) return
    const grown = Buffer.alloc(Math.max(n, this.#buf.length * 2, 64))
    this.#buf.copy(grown, 0, 0, this.length)
    this.#buf = grown
  }

  write(position: number, data: Uint8Array): void {
    const end = position + data.length
    this.#room(end)
    if (position > this.length) this.#buf.fill(0, this.length, position)
    this.#buf.set(data, position)
    if (end > this.length) this.length = end
  }

  truncate(length: number): void {
    if (length > this.length) {
      this.#room(length)
      this.#buf.fill(0, this.length, length)
    }
    this.length = length
  }

  read(position: number, into: Uint8Array, offset: number, length: number): number {
    const n = Math.max(0, Math.min(length, this.length - position))
    if (n > 0) this.#buf.copy(into, offset, position, position + n)
    return n
  }

  clone(): Bytes {
    const c = new Bytes()
    c.write(0, this.#buf.subarray(0, this.length))
    return c
  }
}

type FileOp = { readonly kind: 'write'; readonly position: number; readonly data: Buffer } | { readonly kind: 'truncate'; readonly length: number }
type DirOp = { readonly kind: 'link'; readonly name: string; readonly node: Node } | { readonly kind: 'unlink'; readonly name: string } | { readonly kind: 'rename'; readonly from: string; readonly to: string }

interface FileNode {
  readonly kind: 'file'
  /** What reads see (the page cache). */
  data: Bytes
  durable: Bytes
  /** Unsynced ops, oldest first; `synced` ops were made durable before them. */
  ops: FileOp[]
  synced: number
  links: number
  openFds: number
}

interface DirNode {
  readonly kind: 'dir'
  entries: Map<string, Node>
  durable: Map<string, Node>
  ops: DirOp[]
  synced: number
}

type Node = FileNode | DirNode

interface Handle {
  readonly node: Node
  readonly path: string
  readonly readable: boolean
  readonly writable: boolean
}

function newFile(): FileNode {
  return { kind: 'file', data: new Bytes(), durable: new Bytes(), ops: [], synced: 0, links: 0, openFds: 0 }
}

function newDir(): DirNode {
  return { kind: 'dir', entries: new Map(), durable: new Map(), ops: [], synced: 0 }
}

function applyFileOp(bytes: Bytes, op: FileOp): void {
  if (op.kind === 'write') bytes.write(op.position, op.data)
  else bytes.truncate(op.length)
}

function applyDirOp(entries: Map<string, Node>, op: DirOp): void {
  if (op.kind === 'link') entries.set(op.name, op.node)
  else if (op.kind === 'unlink') entries.delete(op.name)
  else {
    const node = entries.get(op.from)
    entries.delete(op.from)
    if (node !== undefined) entries.set(op.to, node)
  }
}

/** One machine's disk, in memory, for the simulator. See the top comment. */
export class SimDisk implements LogIo {
  readonly #runtime: Runtime
  readonly #latencyRandom: SeededRandom
  readonly #faultRandom: SeededRandom
  readonly #crashRandom: SeededRandom
  readonly #crashKind: CrashKind
  readonly #tornWriteRate: number
  #faults: SimDiskFaults
  #root: DirNode = newDir()
  #fds = new Map<number, Handle>()
  #badSectors: { readonly path: string; readonly from: number; readonly to: number }[] = []
  #fdNext = 3
  #pid = pidFirst
  /** Bumped by a crash: operations started before it never complete. */
  #epoch = 0
  #stallUntilMs = 0
  #usedBytes = 0
  #counters = { writes: 0, bytesWritten: 0, reads: 0, bytesRead: 0, fsyncs: 0, dirOps: 0, faults: 0, crashes: 0, inflight: 0 }

  constructor(options: SimDiskOptions) {
    this.#runtime = options.runtime
    this.#latencyRandom = options.random.fork()
    this.#faultRandom = options.random.fork()
    this.#crashRandom = options.random.fork()
    this.#crashKind = options.crashKind ?? 'power-loss'
    this.#tornWriteRate = options.tornWriteRate ?? 0.5
    this.#faults = { ...faultsDefault, ...options.faults }
  }

  // ---- control -------------------------------------------------------------

  /** Changes faults and timings from now on (operations in flight keep their latency). */
  setFaults(faults: Partial<SimDiskFaults>): void {
    this.#faults = { ...this.#faults, ...faults }
  }

  faults(): SimDiskFaults {
    return this.#faults
  }

  /** Nothing async completes for `ms` virtual ms (a hung disk, a long GC of the controller). */
  stall(ms: number): void {
    this.#stallUntilMs = Math.max(this.#stallUntilMs, this.#runtime.nowMs() + ms)
  }

  /**
   * The machine crashes: descriptors close, operations in flight never
   * complete, the next process gets a new pid; with 'power-loss' unsynced
   * writes and directory entries are lost or torn (see the top comment).
   */
  crash(kind: CrashKind = this.#crashKind): void {
    this.#epoch++
    this.#counters.crashes++
    this.#counters.inflight = 0
    this.#pid++
    for (const h of this.#fds.values()) if (h.node.kind === 'file') h.node.openFds--
    this.#fds.clear()
    if (kind === 'power-loss') this.#losePower()
    this.#usedBytes = this.#countUsedBytes()
  }

  /**
   * The disk as the machine's current process sees it: the same operations,
   * but after that process crashed every synchronous call throws EIO and
   * every async one never settles, so code left over from a dead process
   * cannot touch what its successor finds. (The disk itself can be passed
   * as `io` too; it serves whichever process is current.)
   */
  process(): LogIo {
    const epoch = this.#epoch
    const check = (): void => {
      if (epoch !== this.#epoch) throw fsError('EIO', 'call from a crashed process')
    }
    const later = <T>(f: () => Promise<T>): Promise<T> => (epoch === this.#epoch ? f() : new Promise<T>(() => {}))
    return {
      openSync: (path, flags) => (check(), this.openSync(path, flags)),
      closeSync: (fd) => (check(), this.closeSync(fd)),
      fstatSync: (fd) => (check(), this.fstatSync(fd)),
      readSync: (fd, buffer, offset, length, position) => (check(), this.readSync(fd, buffer, offset, length, position)),
      read: (fd, buffer, offset, length, position) => later(() => this.read(fd, buffer, offset, length, position)),
      writevSync: (fd, buffers, position) => (check(), this.writevSync(fd, buffers, position)),
      ftruncateSync: (fd, length) => (check(), this.ftruncateSync(fd, length)),
      fdatasync: (fd) => later(() => this.fdatasync(fd)),
      fsync: (fd) => later(() => this.fsync(fd)),
      readdirSync: (path) => (check(), this.readdirSync(path)),
      mkdirSync: (path) => (check(), this.mkdirSync(path)),
      renameSync: (from, to) => (check(), this.renameSync(from, to)),
      rmSync: (path, options) => (check(), this.rmSync(path, options)),
      existsSync: (path) => (check(), this.existsSync(path)),
      pid: () => (check(), this.pid()),
      processAlive: (pid) => (check(), this.processAlive(pid)),
    }
  }

  /** Work done so far. */
  counters(): SimDiskCounters {
    return { ...this.#counters }
  }

  /** Bytes held by files (what `capacityBytes` limits). */
  usedBytes(): number {
    return this.#usedBytes
  }

  /** A file's size, durable size and unsynced op count (tests); undefined if absent. */
  fileState(path: string): SimFileState | undefined {
    const node = this.#lookup(path)
    if (node === undefined || node.kind !== 'file') return undefined
    return { bytes: node.data.length, durableBytes: node.durable.length, unsyncedOps: node.ops.length }
  }

  // ---- LogIo: descriptors --------------------------------------------------

  openSync(path: string, flags: OpenFlags): number {
    const { dir, name, full } = this.#parent(path, 'open')
    let node = name === '' ? this.#root : dir.entries.get(name)
    if (node !== undefined && flags === 'wx') throw fsError('EEXIST', 'open', full)
    if (node === undefined) {
      if (flags === 'r' || flags === 'r+') throw fsError('ENOENT', 'open', full)
      node = newFile()
      this.#dirOp(dir, { kind: 'link', name, node })
    } else if (node.kind === 'dir' && flags !== 'r') {
      throw fsError('EISDIR', 'open', full)
    } else if (node.kind === 'file' && (flags === 'w' || flags === 'w+') && node.data.length > 0) {
      this.#fileOp(node, { kind: 'truncate', length: 0 })
    }
    if (node.kind === 'file') node.openFds++
    const fd = this.#fdNext++
    this.#fds.set(fd, { node, path: full, readable: flags !== 'w' && flags !== 'wx', writable: flags !== 'r' })
    return fd
  }

  closeSync(fd: number): void {
    const h = this.#handle(fd, 'close')
    this.#fds.delete(fd)
    if (h.node.kind === 'file') {
      h.node.openFds--
      this.#releaseIfGone(h.node)
    }
  }

  fstatSync(fd: number): { readonly size: number } {
    const h = this.#handle(fd, 'fstat')
    return { size: h.node.kind === 'file' ? h.node.data.length : dirStatBytes }
  }

  readSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number {
    const file = this.#readable(fd, 'read')
    // Every read counts, failed ones too: the livelock detector looks for reads without progress.
    this.#counters.reads++
    if (this.#inject(this.#faults.readErrorRate) || this.#onBadSectors(fd, position, length)) throw fsError('EIO', 'read')
    return this.#read(file, buffer, offset, length, position)
  }

  read(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): Promise<number> {
    return this.#later(this.#faults.readLatencyMs, () => {
      const file = this.#readable(fd, 'read')
      this.#counters.reads++
      if (this.#inject(this.#faults.readErrorRate) || this.#onBadSectors(fd, position, length)) throw fsError('EIO', 'read')
      return this.#read(file, buffer, offset, length, position)
    })
  }

  /**
   * Bad sectors (a latent sector error): every read of `path` that touches
   * bytes [from, to) fails with EIO, every time, until `clearBadSectors`.
   * Writes still land (a real drive remaps on write).
   */
  badSectors(path: string, from: number, to: number): void {
    this.#badSectors.push({ path: posix.resolve('/', path), from, to })
  }

  /** True while some descriptor has `path` open (the simulator times faults by it). */
  isOpen(path: string): boolean {
    const full = posix.resolve('/', path)
    for (const h of this.#fds.values()) if (h.path === full) return true
    return false
  }

  clearBadSectors(): void {
    this.#badSectors = []
  }

  #onBadSectors(fd: number, position: number, length: number): boolean {
    if (this.#badSectors.length === 0) return false
    const path = this.#fds.get(fd)?.path
    const bad = this.#badSectors.some((b) => b.path === path && position < b.to && position + length > b.from)
    if (bad) this.#counters.faults++
    return bad
  }

  writevSync(fd: number, buffers: readonly Uint8Array[], position: number): number {
    const h = this.#handle(fd, 'write')
    if (!h.writable || h.node.kind !== 'file') throw fsError(h.node.kind === 'dir' ? 'EISDIR' : 'EBADF', 'write')
    const file = h.node
    let total = 0
    for (const b of buffers) total += b.length
    if (total === 0) return 0
    // Only growth costs space; a write that cannot grow the file at all fails, a partial one is short.
    const room = this.#faults.capacityBytes - this.#usedBytes
    const n = position + total <= file.data.length ? total : Math.min(total, Math.max(0, file.data.length + room - position))
    if (n <= 0) {
      this.#counters.faults++
      throw fsError('ENOSPC', 'write')
    }
    const data = Buffer.allocUnsafe(n)
    let at = 0
    for (const b of buffers) {
      if (at >= n) break
      const take = Math.min(b.length, n - at)
      data.set(take === b.length ? b : b.subarray(0, take), at)
      at += take
    }
    this.#fileOp(file, { kind: 'write', position, data })
    this.#counters.writes++
    this.#counters.bytesWritten += n
    return n
  }

  ftruncateSync(fd: number, length: number): void {
    const h = this.#handle(fd, 'ftruncate')
    if (!h.writable || h.node.kind !== 'file') throw fsError('EINVAL', 'ftruncate')
    if (length > h.node.data.length && length - h.node.data.length > this.#faults.capacityBytes - this.#usedBytes) {
      this.#counters.faults++
      throw fsError('ENOSPC', 'ftruncate')
    }
    this.#fileOp(h.node, { kind: 'truncate', length })
  }

  fdatasync(fd: number): Promise<void> {
    return this.#sync(fd, 'fdatasync')
  }

  fsync(fd: number): Promise<void> {
    return this.#sync(fd, 'fsync')
  }

  // ---- LogIo: directory entries --------------------------------------------

  readdirSync(path: string): string[] {
    const node = this.#lookup(path)
    if (node === undefined) throw fsError('ENOENT', 'scandir', posix.resolve('/', path))
    if (node.kind !== 'dir') throw fsError('ENOTDIR', 'scandir', posix.resolve('/', path))
    return [...node.entries.keys()].sort()
  }

  mkdirSync(path: string): void {
    const full = posix.resolve('/', path)
    const names = full.split('/').filter((n) => n !== '')
    let dir = this.#root
    for (const [i, name] of names.entries()) {
      const next = dir.entries.get(name)
      if (next === undefined) {
        const created = newDir()
        this.#dirOp(dir, { kind: 'link', name, node: created })
        dir = created
      } else if (next.kind === 'dir') dir = next
      else throw fsError(i === names.length - 1 ? 'EEXIST' : 'ENOTDIR', 'mkdir', full)
    }
  }

  renameSync(from: string, to: string): void {
    const src = this.#parent(from, 'rename')
    const dst = this.#parent(to, 'rename')
    const node = src.dir.entries.get(src.name)
    if (node === undefined || src.name === '') throw fsError('ENOENT', 'rename', src.full)
    if (src.full === dst.full) return
    const target = dst.dir.entries.get(dst.name)
    if (target?.kind === 'dir' && (node.kind !== 'dir' || target.entries.size > 0)) throw fsError(node.kind === 'dir' ? 'ENOTEMPTY' : 'EISDIR', 'rename', dst.full)
    if (target !== undefined && target.kind === 'file' && node.kind === 'dir') throw fsError('ENOTDIR', 'rename', dst.full)
    if (src.dir === dst.dir) this.#dirOp(src.dir, { kind: 'rename', from: src.name, to: dst.name })
    else {
      // Across directories: two ops, one per directory, each durable with its own directory.
      this.#dirOp(dst.dir, { kind: 'link', name: dst.name, node })
      this.#dirOp(src.dir, { kind: 'unlink', name: src.name })
    }
  }

  rmSync(path: string, options?: { readonly recursive?: boolean }): void {
    const { dir, name, full } = this.#parent(path, 'rm')
    const node = dir.entries.get(name)
    if (node === undefined) return
    if (node.kind === 'dir' && options?.recursive !== true) throw fsError('EISDIR', 'rm', full)
    // Deepest directories first (no recursion: preorder with a stack, reversed), then the entry itself.
    const stack: DirNode[] = node.kind === 'dir' ? [node] : []
    const preorder: DirNode[] = []
    while (stack.length > 0) {
      const d = stack.pop()!
      preorder.push(d)
      for (const child of d.entries.values()) if (child.kind === 'dir') stack.push(child)
    }
    for (const d of preorder.reverse()) for (const n of [...d.entries.keys()]) this.#dirOp(d, { kind: 'unlink', name: n })
    this.#dirOp(dir, { kind: 'unlink', name })
  }

  existsSync(path: string): boolean {
    return this.#lookup(path) !== undefined
  }

  pid(): number {
    return this.#pid
  }

  /** Only the machine's current process is alive: earlier pids died in crashes. */
  processAlive(pid: number): boolean {
    return pid === this.#pid
  }

  // ---- internals -----------------------------------------------------------

  #lookup(path: string): Node | undefined {
    let node: Node = this.#root
    for (const name of posix.resolve('/', path).split('/')) {
      if (name === '') continue
      if (node.kind !== 'dir') return undefined
      const next: Node | undefined = node.entries.get(name)
      if (next === undefined) return undefined
      node = next
    }
    return node
  }

  /** The directory holding `path` and its last name ('' for the root itself). */
  #parent(path: string, syscall: string): { dir: DirNode; name: string; full: string } {
    const full = posix.resolve('/', path)
    if (full === '/') return { dir: this.#root, name: '', full }
    const parent = this.#lookup(posix.dirname(full))
    if (parent === undefined) throw fsError('ENOENT', syscall, full)
    if (parent.kind !== 'dir') throw fsError('ENOTDIR', syscall, full)
    return { dir: parent, name: posix.basename(full), full }
  }

  #handle(fd: number, syscall: string): Handle {
    const h = this.#fds.get(fd)
    if (h === undefined) throw fsError('EBADF', syscall)
    return h
  }

  #readable(fd: number, syscall: string): FileNode {
    const h = this.#handle(fd, syscall)
    if (h.node.kind === 'dir') throw fsError('EISDIR', syscall)
    if (!h.readable) throw fsError('EBADF', syscall)
    return h.node
  }

  #read(file: FileNode, buffer: Uint8Array, offset: number, length: number, position: number): number {
    const n = file.data.read(position, buffer, offset, length)
    this.#counters.bytesRead += n
    return n
  }

  #inject(rate: number): boolean {
    if (rate <= 0 || !this.#faultRandom.chance(rate)) return false
    this.#counters.faults++
    return true
  }

  /** Applies a file op to what reads see and queues it as unsynced. */
  #fileOp(file: FileNode, op: FileOp): void {
    const before = file.data.length
    applyFileOp(file.data, op)
    if (file.links > 0 || file.openFds > 0) this.#usedBytes += file.data.length - before
    file.ops.push(op)
  }

  /** Applies a directory op to the current entries and queues it as unsynced. */
  #dirOp(dir: DirNode, op: DirOp): void {
    const replaced = op.kind === 'link' ? dir.entries.get(op.name) : op.kind === 'rename' ? dir.entries.get(op.to) : dir.entries.get(op.name)
    const moved = op.kind === 'rename' ? dir.entries.get(op.from) : undefined
    applyDirOp(dir.entries, op)
    dir.ops.push(op)
    this.#counters.dirOps++
    if (op.kind === 'link' && op.node.kind === 'file') op.node.links++
    if (replaced !== undefined && replaced !== moved && replaced.kind === 'file' && (op.kind !== 'link' || replaced !== op.node)) {
      replaced.links--
      this.#releaseIfGone(replaced)
    }
  }

  /** A file with no name and no descriptor is gone: its bytes are free. */
  #releaseIfGone(file: FileNode): void {
    if (file.links <= 0 && file.openFds <= 0) this.#usedBytes -= file.data.length
  }

  #sync(fd: number, syscall: 'fsync' | 'fdatasync'): Promise<void> {
    const h = this.#fds.get(fd)
    if (h === undefined) return Promise.reject(fsError('EBADF', syscall))
    const node = h.node
    const target = node.synced + node.ops.length
    this.#counters.fsyncs++
    return this.#later(this.#faults.fsyncLatencyMs, () => {
      if (this.#inject(this.#faults.fsyncErrorRate)) throw fsError('EIO', syscall)
      const n = Math.min(target - node.synced, node.ops.length)
      if (n <= 0) return
      if (node.kind === 'file') for (const op of node.ops.splice(0, n)) applyFileOp(node.durable, op)
      else for (const op of node.ops.splice(0, n)) applyDirOp(node.durable, op)
      node.synced += n
    })
  }

  /**
   * Runs `fn` after a latency drawn from `range` (scaled by the slow-mode
   * factor, and not before a stall ends) and settles with its result. A
   * crash in between drops it: the promise never settles.
   */
  #later<T>(range: readonly [number, number], fn: () => T): Promise<T> {
    const epoch = this.#epoch
    const [min, max] = range
    const latencyMs = (min + (max > min ? this.#latencyRandom.next() * (max - min) : 0)) * this.#faults.latencyFactor
    this.#counters.inflight++
    return new Promise<T>((resolve, reject) => {
      const run = (): void => {
        if (epoch !== this.#epoch) return
        const waitMs = this.#stallUntilMs - this.#runtime.nowMs()
        if (waitMs > 0) {
          this.#runtime.setTimer(run, waitMs)
          return
        }
        this.#counters.inflight--
        try {
          resolve(fn())
        } catch (error) {
          reject(error)
        }
      }
      if (latencyMs > 0) this.#runtime.setTimer(run, latencyMs)
      else this.#runtime.defer(run)
    })
  }

  /**
   * Power loss: from the root down, each directory keeps its durable entries
   * plus a random prefix of its unsynced ops, each file reached its durable
   * bytes plus a random prefix of its ops, the last kept write maybe torn.
   * What is kept is then durable (it is on the platter); the rest is gone.
   */
  #losePower(): void {
    const random = this.#crashRandom
    const files = new Set<FileNode>()
    const dirs = new Set<DirNode>()
    const stack: DirNode[] = [this.#root]
    while (stack.length > 0) {
      const dir = stack.pop()!
      if (dirs.has(dir)) continue
      dirs.add(dir)
      const entries = new Map(dir.durable)
      const kept = random.int(dir.ops.length + 1)
      for (let i = 0; i < kept; i++) applyDirOp(entries, dir.ops[i]!)
      dir.entries = entries
      dir.durable = new Map(entries)
      dir.ops = []
      dir.synced = 0
      for (const name of [...entries.keys()].sort()) {
        const node = entries.get(name)!
        if (node.kind === 'dir') stack.push(node)
        else if (!files.has(node)) {
          files.add(node)
          this.#loseFileWrites(node, random)
        }
      }
    }
    for (const f of files) f.links = 0
    for (const d of dirs) for (const node of d.entries.values()) if (node.kind === 'file') node.links++
  }

  #loseFileWrites(file: FileNode, random: SeededRandom): void {
    const kept = random.int(file.ops.length + 1)
    const bytes = file.durable
    for (let i = 0; i < kept; i++) {
      const op = file.ops[i]!
      if (i < kept - 1 || op.kind !== 'write' || !random.chance(this.#tornWriteRate)) {
        applyFileOp(bytes, op)
        continue
      }
      // Torn: a prefix of the write reached the disk; maybe its size did too (zeros after).
      const cut = random.int(op.data.length)
      if (random.chance(0.5) && op.position + op.data.length > bytes.length) bytes.truncate(op.position + op.data.length)
      bytes.write(op.position, op.data.subarray(0, cut))
    }
    file.data = bytes.clone()
    file.durable = bytes
    file.ops = []
    file.synced = 0
    file.openFds = 0
  }

  #countUsedBytes(): number {
    const files = new Set<FileNode>()
    const stack: DirNode[] = [this.#root]
    while (stack.length > 0) {
      const dir = stack.pop()!
      for (const node of dir.entries.values()) {
        if (node.kind === 'dir') stack.push(node)
        else files.add(node)
      }
    }
    let used = 0
    for (const f of files) used += f.data.length
    return used
  }
}
