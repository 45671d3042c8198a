/**
 * The HTTP layer's own metrics (DESIGN.md decision 11), in a registry of its
 * own that /metrics serves together with the broker's: request counts and
 * latency per route, produce and fetch records and bytes per topic (rates
 * are `rate()` of these counters).
 */
import { Counter, Histogram, Registry } from 'prom-client'

/** Latency buckets in seconds: 0.5 ms .. 30 s (long-polls reach the top). */
const latencyBucketsSeconds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

export class ApiMetrics {
  readonly registry = new Registry()
  readonly requests = new Counter({
    name: 'rill_http_requests_total',
    help: 'HTTP requests answered, by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [this.registry],
  })
  readonly latency = new Histogram({
    name: 'rill_http_request_duration_seconds',
    help: 'HTTP request latency from arrival to answer, by method and route',
    labelNames: ['method', 'route'] as const,
    buckets: latencyBucketsSeconds,
    registers: [this.registry],
  })
  readonly produceRecords = new Counter({
    name: 'rill_produce_records_total',
    help: 'Records acknowledged to producers, by topic',
    labelNames: ['topic'] as const,
    registers: [this.registry],
  })
  readonly produceBytes = new Counter({
    name: 'rill_produce_bytes_total',
    help: 'Record batch bytes acknowledged to producers, by topic',
    labelNames: ['topic'] as const,
    registers: [this.registry],
  })
  readonly fetchRecords = new Counter({
    name: 'rill_fetch_records_total',
    help: 'Records returned to consumers (batches counted whole), by topic',
    labelNames: ['topic'] as const,
    registers: [this.registry],
  })
  readonly fetchBytes = new Counter({
    name: 'rill_fetch_bytes_total',
    help: 'Stored record batch bytes read for consumers, by topic',
    labelNames: ['topic'] as const,
    registers: [this.registry],
  })

  /** Prometheus text of the broker's registry and this one. */
  async text(broker: Registry): Promise<{ contentType: string; body: string }> {
    const merged = Registry.merge([broker, this.registry])
    return { contentType: merged.contentType, body: await merged.metrics() }
  }
}
