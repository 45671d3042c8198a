/**
 * Retention by time and size over the partitions hosted here: one pass at a
 * time (a tick that finds a pass still running skips its own), one
 * partition at a time within it (deleting segments is file I/O). A failure
 * in one partition is logged and the pass goes on.
 */
import type { Logger } from 'pino'
import type { Runtime } from '../base/index.ts'
import type { HostedPartition } from './hosted-groups.ts'

/** Ticks between retention passes over hosted partitions. */
export const retentionTicks = 200

export class Retention {
  readonly #logger: Logger
  readonly #runtime: Runtime
  readonly #hosted: { values(): Iterable<HostedPartition> }
  readonly #isStopped: () => boolean
  #running = false

  constructor(options: { logger: Logger; runtime: Runtime; hosted: { values(): Iterable<HostedPartition> }; isStopped: () => boolean }) {
    this.#logger = options.logger
    this.#runtime = options.runtime
    this.#hosted = options.hosted
    this.#isStopped = options.isStopped
  }

  /** Retention by time and size, one partition at a time (segment deletes are file I/O). */
  async run(): Promise<void> {
    if (this.#running) return
    this.#running = true
    try {
      for (const h of [...this.#hosted.values()]) {
        if (this.#isStopped()) return
        const deleted = await h.replica.applyRetention(this.#runtime.wallMs()).catch((error: unknown) => {
          this.#logger.warn({ event: 'retention_failed', topic: h.topic, partition: h.partition, err: error }, 'retention failed')
          return 0
        })
        if (deleted > 0) this.#logger.info({ event: 'retention', topic: h.topic, partition: h.partition, segments: deleted }, 'retention deleted segments')
      }
    } finally {
      this.#running = false
    }
  }
}
