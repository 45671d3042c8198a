/**
 * Metrics of src/log on the caller's prom-client Registry (never the global
 * one: a test, a benchmark and a broker each pass their own). Two stores on
 * one registry share the metric objects.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { Clock } from '../base/index.ts'

/** The metrics one store (and its logs) update. */
export interface LogMetrics {
  /** Bytes appended (entry headers + bodies), by persistence mode. */
  readonly appendBytes: Counter<'mode'>
  /** Entries appended, by persistence mode. */
  readonly appendEntries: Counter<'mode'>
  /** fsync/fdatasync calls, by what was synced (wal, segment, dir, state). */
  readonly fsyncs: Counter<'kind'>
  /** fsync latency in seconds, by what was synced. */
  readonly fsyncSeconds: Histogram<'kind'>
  /** Requests (appends, truncations) made durable by one WAL fsync: the group-commit factor. */
  readonly groupCommitRequests: Histogram<string>
  /** Open logs by persistence mode: the mode each log runs in. */
  readonly openLogs: Gauge<'mode'>
  /** Bytes of sync appends made durable by fsyncing their segments instead of copying them into the WAL (wal.ts). */
  readonly directBytes: Counter<string>
}

function getOrCreate<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make()
}

/** Creates (or finds) the log metrics on `registry`. */
export function createLogMetrics(registry: Registry): LogMetrics {
  const registers = [registry]
  return {
    appendBytes: getOrCreate(registry, 'rill_log_append_bytes_total', () =>
      new Counter({ name: 'rill_log_append_bytes_total', help: 'Bytes appended to partition logs (headers + bodies)', labelNames: ['mode'], registers })),
    appendEntries: getOrCreate(registry, 'rill_log_append_entries_total', () =>
      new Counter({ name: 'rill_log_append_entries_total', help: 'Entries appended to partition logs', labelNames: ['mode'], registers })),
    fsyncs: getOrCreate(registry, 'rill_log_fsync_total', () =>
      new Counter({ name: 'rill_log_fsync_total', help: 'fsync calls by the log store', labelNames: ['kind'], registers })),
    fsyncSeconds: getOrCreate(registry, 'rill_log_fsync_seconds', () =>
      new Histogram({
        name: 'rill_log_fsync_seconds',
        help: 'fsync latency',
        labelNames: ['kind'],
        buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
        registers,
      })),
    groupCommitRequests: getOrCreate(registry, 'rill_log_group_commit_requests', () =>
      new Histogram({
        name: 'rill_log_group_commit_requests',
        help: 'Appends and truncations made durable by one WAL fsync',
        buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096],
        registers,
      })),
    openLogs: getOrCreate(registry, 'rill_log_open_logs', () =>
      new Gauge({ name: 'rill_log_open_logs', help: 'Open partition logs by persistence mode', labelNames: ['mode'], registers })),
    directBytes: getOrCreate(registry, 'rill_log_wal_direct_bytes_total', () =>
      new Counter({ name: 'rill_log_wal_direct_bytes_total', help: 'Bytes of sync appends made durable in their segments instead of the WAL', registers })),
  }
}

/**
 * Runs an fsync (`fn`) and counts it under `kind`, timed on the store's
 * clock (its runtime: virtual under the simulator), not prom-client's own.
 */
export async function timedSync(ctx: { readonly metrics: LogMetrics; readonly runtime: Clock }, kind: string, fn: () => Promise<void>): Promise<void> {
  const startMs = ctx.runtime.nowMs()
  await fn()
  ctx.metrics.fsyncSeconds.observe({ kind }, (ctx.runtime.nowMs() - startMs) / 1000)
  ctx.metrics.fsyncs.inc({ kind })
}
