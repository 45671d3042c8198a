/**
 * What the benches against real broker processes share: a fresh cluster on
 * loopback (the test helpers' startCluster: `node bin/rill.mjs broker` ×
 * N, free ports, a temporary data directory) that is ready for topics of
 * replication 3, and the small helpers of their reports.
 */
import { execFileSync } from 'node:child_process'
import { loadavg } from 'node:os'
import { call, startCluster, waitFor, type TestCluster } from '../test/broker/helpers.ts'

export type { TestCluster }

/** Longest wait for every broker of a fresh cluster to register with the controller, ms (a busy machine takes seconds). */
const registerWaitMs = 60_000

/**
 * Starts `brokers` brokers (from dist/: run `npm run build` first) and waits
 * until the controller lists them all unfenced, so a topic of replication
 * `brokers` can be created at once.
 */
export async function startBenchCluster(log: (line: string) => void, brokers = 3): Promise<TestCluster> {
  log(`starting ${brokers} brokers`)
  const cluster = await startCluster({ brokers })
  try {
    const url = cluster.brokers[0]!.url
    await waitFor(
      async () => (await call(url, 'GET', '/v1/metadata')).body.brokers.filter((b: { fenced?: boolean }) => !b.fenced).length === brokers,
      registerWaitMs,
      'brokers registered',
    )
  } catch (error) {
    await cluster.stopAll()
    throw error
  }
  return cluster
}

/** The `q` quantile of ascending `sorted` (0 when empty). */
export function quantile(sorted: readonly number[], q: number): number {
  return sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

/** One-minute load average, 2 decimals: how busy the (shared) machine was. */
export function loadAverage(): string {
  return loadavg()[0]!.toFixed(2)
}

/** The commit checked out (short), or "unknown" outside a git work tree. */
export function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: new URL('.', import.meta.url), encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}
