/**
 * A one-broker stand-in on loopback (node:http, msgpack) for producer tests
 * that need no Raft: metadata for a few topics, producer ids, and produce
 * answers that can be held back (to fill the producer's buffer) — every
 * batch received is recorded with its partition and values.
 */
import { createServer, type Server } from 'node:http'
import { Packr, Unpackr } from 'msgpackr'
import { decodeBatch, readBatchHeader } from '../../src/wire/index.ts'

const packr = new Packr({ useRecords: false, moreTypes: false })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', moreTypes: false })

/** The token this broker hands out with producer id 77 (not checked here: broker.ts checks tokens). */
export const fakeProducerToken = '7'.repeat(64)

export interface ReceivedBatch {
  topic: string
  partition: number
  values: string[]
  keys: (string | null)[]
  baseSequence: number
  /** When it arrived (Date.now). */
  receivedAtMs: number
  /** The producerToken the batch came with (null: none). */
  producerToken: string | null
}

export class FakeBroker {
  readonly server: Server
  url = ''
  readonly batches: ReceivedBatch[] = []
  readonly topics: Map<string, number>
  readonly #logEnd = new Map<string, number>()
  /** While true, produce answers wait for `release()`. */
  hold = false
  #held: (() => void)[] = []
  /** Produces still to refuse with 429 THROTTLED (over quota) before writing anything, and the wait they ask for. */
  throttle = { count: 0, throttleMs: 0 }
  /** When each THROTTLED refusal was sent (Date.now). */
  readonly refusedAtMs: number[] = []

  constructor(topics: Record<string, number>) {
    this.topics = new Map(Object.entries(topics))
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const answer = (status: number, body: unknown): void => {
          res.writeHead(status, { 'content-type': 'application/msgpack' })
          res.end(packr.pack(body))
        }
        const url = req.url ?? ''
        if (url === '/v1/metadata') {
          const topicList = [...this.topics].map(([name, n]) => ({
            name,
            partitions: Array.from({ length: n }, (_, partition) => ({ partition, leader: 1, replicas: [1], highWatermark: 0 })),
          }))
          return answer(200, { brokers: [{ id: 1, url: this.url }], controller: { leader: 1 }, topics: topicList })
        }
        if (url === '/v1/producers') return answer(200, { producerId: 77, producerEpoch: 0, producerToken: fakeProducerToken })
        const m = /^\/v1\/topics\/([^/]+)\/partitions\/(\d+)\/records$/.exec(url)
        if (m === null) return answer(404, { error: { code: 'INVALID_REQUEST', message: 'no route' } })
        if (this.throttle.count > 0) {
          this.throttle.count--
          this.refusedAtMs.push(Date.now())
          const throttleMs = this.throttle.throttleMs
          return answer(429, { error: { code: 'THROTTLED', message: `over quota: retry in ${throttleMs} ms`, throttleMs } })
        }
        const body = unpackr.unpack(Buffer.concat(chunks)) as { batch: Uint8Array; producerToken?: string }
        const header = readBatchHeader(body.batch)
        const records = decodeBatch(body.batch).records
        const topic = decodeURIComponent(m[1]!)
        const partition = Number(m[2])
        const decoder = new TextDecoder()
        this.batches.push({
          topic,
          partition,
          values: records.map((r) => decoder.decode(r.value)),
          keys: records.map((r) => (r.key === null ? null : decoder.decode(r.key))),
          baseSequence: header.baseSequence,
          receivedAtMs: Date.now(),
          producerToken: body.producerToken ?? null,
        })
        const id = `${topic}/${partition}`
        const baseOffset = this.#logEnd.get(id) ?? 0
        this.#logEnd.set(id, baseOffset + records.length)
        const send = (): void => answer(200, { partition, baseOffset, lastOffset: baseOffset + records.length - 1 })
        if (this.hold) this.#held.push(send)
        else send()
      })
    })
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`
    return this
  }

  /** Answers every held produce and stops holding. */
  release(): void {
    this.hold = false
    for (const send of this.#held.splice(0)) send()
  }

  async close(): Promise<void> {
    this.release()
    this.server.closeAllConnections()
    await new Promise((resolve) => this.server.close(resolve))
  }
}
