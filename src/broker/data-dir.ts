/**
 * The data directory a broker is given, created before anything opens a
 * file in it. A broker given a bad --dir must say so and exit, not hang:
 * this walk is bounded and reports each failure as a coded storage error.
 */
import { join, resolve, sep } from 'node:path'
import { ErrorCode, RillError } from '../base/index.ts'
import type { LogIo } from '../log/index.ts'

/** Path components created for a data directory (a bound on the walk). */
const dataDirDepthMax = 64

/**
 * mkdir -p, one component at a time: Node's recursive mkdir spins forever on
 * some paths (measured: `/proc/anything` on Node 20), and a broker given a
 * bad --dir must say so and exit, not hang.
 */
export function makeDataDirectory(io: LogIo, dir: string): void {
  const parts = resolve(dir).split(sep).filter((p) => p.length > 0)
  if (parts.length > dataDirDepthMax) throw new RillError(ErrorCode.STORAGE_UNUSABLE, `data directory ${dir} is nested too deep`)
  let path: string = sep
  for (const part of parts) {
    path = join(path, part)
    try {
      if (!io.existsSync(path)) io.mkdirSync(path)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EEXIST') continue
      throw new RillError(ErrorCode.STORAGE_UNUSABLE, `cannot create data directory ${path}: ${code ?? String(error)}`, { cause: error })
    }
  }
}
