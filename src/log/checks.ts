/**
 * Argument checks shared by every PartitionLog implementation, so that the
 * memory log (tests, caches) refuses exactly what the disk log refuses.
 * Breaking these is a bug in the caller (the Raft core), hence asserts;
 * running out of range on a read is an operating error with a code.
 */
import { ErrorCode, RillError, assert } from '../base/index.ts'
import { assertEntry, entryHeaderBytes, type EntryToAppend, type LogEntry } from './format.ts'

/** Entries in one append call, at most; bigger batches are split by the caller. */
export const appendEntriesMax = 65_536
/** Bytes in one append call, at most (bounds one synchronous page-cache write). */
export const appendBytesMax = 64 * 1024 * 1024

/** Checks one append against the log's bounds and the term before it. */
export function assertAppend(options: {
  name: string
  entries: readonly EntryToAppend[]
  firstIndex: number
  lastIndex: number
  termBefore: (index: number) => number
}): void {
  const { name, entries } = options
  assert(entries.length > 0 && entries.length <= appendEntriesMax, () => `log ${name}: append of ${entries.length} entries`)
  let bytes = 0
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!
    assertEntry(e)
    bytes += entryHeaderBytes + e.data.length
    if (i > 0) {
      const prev = entries[i - 1]!
      assert(e.index === prev.index + 1, () => `log ${name}: append not contiguous: ${e.index} after ${prev.index}`)
      assert(e.term >= prev.term, () => `log ${name}: term ${e.term} of entry ${e.index} below ${prev.term}`)
    }
  }
  if (bytes > appendBytesMax) {
    throw new RillError(ErrorCode.TOO_LARGE, `log ${name}: append of ${bytes} bytes; the limit is ${appendBytesMax}`)
  }
  const first = entries[0]!
  assert(
    first.index >= options.firstIndex && first.index <= options.lastIndex + 1,
    () => `log ${name}: append at ${first.index} outside ${options.firstIndex}..${options.lastIndex + 1}`,
  )
  if (first.index > 1 && first.index - 1 >= options.firstIndex - 1) {
    const before = options.termBefore(first.index - 1)
    assert(first.term >= before, () => `log ${name}: entry ${first.index} term ${first.term} below term ${before} of ${first.index - 1}`)
  }
}

/** Throws OFFSET_OUT_OF_RANGE for a read below the first index. */
export function checkReadStart(name: string, indexStart: number, firstIndex: number): void {
  assert(Number.isSafeInteger(indexStart), () => `log ${name}: bad indexStart ${indexStart}`)
  if (indexStart < firstIndex) {
    throw new RillError(ErrorCode.OFFSET_OUT_OF_RANGE, `log ${name}: index ${indexStart} is compacted; first index is ${firstIndex}`, {
      details: { firstIndex },
    })
  }
}

/** Throws OFFSET_OUT_OF_RANGE for a term query outside firstIndex-1..lastIndex. */
export function termOutOfRange(name: string, index: number, firstIndex: number, lastIndex: number): RillError {
  return new RillError(ErrorCode.OFFSET_OUT_OF_RANGE, `log ${name}: no term for index ${index} (log holds ${firstIndex}..${lastIndex})`, {
    details: { firstIndex, lastIndex },
  })
}

/**
 * A truncation (`truncateAfter`, or an `append` that replaces a conflicting
 * suffix) must read the segment to find where its cut goes. When that read
 * fails with an I/O error the log has not changed at all: unlike a failed
 * write, nothing is lost or half-done, and the same call succeeds once the
 * disk reads again. The error says so (`details.logUnchanged`), so that a
 * caller can retry instead of giving up on the log.
 */
export function cutReadFailed(name: string, index: number, file: string, cause: RillError): RillError {
  return new RillError(ErrorCode.STORAGE_UNUSABLE, `log ${name}: truncating after ${index}: ${cause.message} (nothing changed; retry when the disk reads again)`, {
    cause,
    details: { file, index, logUnchanged: true },
  })
}

/** True if `error` is a truncation's read that failed before the log changed (see cutReadFailed): retrying is safe. */
export function isCutReadFailure(error: unknown): boolean {
  return error instanceof RillError && error.code === ErrorCode.STORAGE_UNUSABLE && error.details.logUnchanged === true
}

/** Bytes an entry counts for against a read's `bytesMax`. */
export function entryBytes(entry: LogEntry): number {
  return entryHeaderBytes + entry.data.length
}
