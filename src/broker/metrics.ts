/**
 * The broker's own metrics (the log store and the transport register
 * theirs): leaderships won, produce commit latency, and gauges read from
 * the hosted replicas when /metrics is scraped. Gauges are computed on
 * collect, not kept up to date on every change: a broker with a thousand
 * partitions pays for them once per scrape, not once per tick.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client'
import type { HostedGroup } from '../partition/index.ts'
import { Role } from '../raft/index.ts'
import type { Acks } from '../wire/index.ts'

/** What the gauges read: the replicas hosted here (the controller group is counted apart). */
export interface MetricsSource {
  values(): Iterable<{ readonly replica: HostedGroup }>
  readonly size: number
  /** Replicas assigned here that are not open (no descriptors, a failed open): retried. */
  offlineCount(): number
}

export class BrokerMetrics {
  readonly #elections: Counter
  readonly #commitSeconds: Histogram<'acks'>
  readonly #openFailures: Counter<'reason'>

  constructor(options: { registry: Registry; hosted: MetricsSource }) {
    const { registry, hosted } = options
    this.#elections = new Counter({ name: 'rill_partition_leaderships_won_total', help: 'Times a partition replica on this broker became leader', registers: [registry] })
    this.#commitSeconds = new Histogram({
      name: 'rill_produce_commit_seconds',
      help: 'Time from a produce reaching its leader to its acknowledgement (commit for acks=all, local durability for acks=leader)',
      labelNames: ['acks'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    })
    this.#openFailures = new Counter({
      name: 'rill_replica_open_failures_total',
      help: 'Times an assigned replica did not open: descriptors (too few left above the reserve), error (its open failed); each is retried',
      labelNames: ['reason'],
      registers: [registry],
    })
    registerReplicaGauges(registry, hosted)
  }

  /** An assigned replica did not open this pass. */
  replicaOpenFailed(reason: 'descriptors' | 'error'): void {
    this.#openFailures.inc({ reason })
  }

  /** A partition replica here became leader. */
  leadershipWon(): void {
    this.#elections.inc()
  }

  /** A produce was acknowledged `seconds` after it reached this leader. */
  commitObserved(acks: Acks, seconds: number): void {
    this.#commitSeconds.observe({ acks }, seconds)
  }
}

function registerReplicaGauges(registry: Registry, hosted: MetricsSource): void {
  new Gauge({
    name: 'rill_replica_lag_entries_max',
    help: 'Largest number of log entries a follower is behind, over the partitions led here',
    registers: [registry],
    collect() {
      let lag = 0
      for (const p of hosted.values()) {
        const raft = p.replica.raft
        if (raft.role !== Role.Leader) continue
        const last = raft.log.lastIndex()
        for (const [id, pr] of raft.progress) if (id !== raft.id) lag = Math.max(lag, last - pr.match)
      }
      this.set(lag)
    },
  })
  new Gauge({
    name: 'rill_replicas_offline',
    help: 'Partition replicas assigned to this broker that are not open (no descriptors left, a failed open); retried with backoff',
    registers: [registry],
    collect() {
      this.set(hosted.offlineCount())
    },
  })
  new Gauge({
    name: 'rill_partitions_quiet',
    help: 'Partition replicas whose Raft group is quiet (idle, no heartbeats)',
    registers: [registry],
    collect() {
      let n = 0
      for (const p of hosted.values()) if (p.replica.raft.quiesced) n++
      this.set(n)
    },
  })
  new Gauge({
    name: 'rill_groups_hosted',
    help: 'Raft groups hosted by this broker (partition replicas and the controller)',
    registers: [registry],
    collect() {
      this.set(hosted.size + 1)
    },
  })
  new Gauge({
    name: 'rill_partitions_led',
    help: 'Partition replicas this broker leads',
    registers: [registry],
    collect() {
      let n = 0
      for (const p of hosted.values()) if (p.replica.raft.role === Role.Leader) n++
      this.set(n)
    },
  })
  new Gauge({
    name: 'rill_under_replicated_partitions',
    help: 'Partitions led here whose followers are not all caught up to the commit index',
    registers: [registry],
    collect() {
      let n = 0
      for (const p of hosted.values()) {
        const raft = p.replica.raft
        if (raft.role !== Role.Leader) continue
        for (const [id, pr] of raft.progress) if (id !== raft.id && pr.match < raft.log.committed) {
          n++
          break
        }
      }
      this.set(n)
    },
  })
}
