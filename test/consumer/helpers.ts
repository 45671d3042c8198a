/**
 * Helpers of the consumer tests: a real cluster (test/broker/helpers.ts),
 * topics created and records produced over plain HTTP (following 421 and
 * retrying 503, as any client does), and consumers collected until a
 * condition holds — never a fixed sleep.
 */
import { call, startCluster, waitFor, type TestCluster } from '../broker/helpers.ts'
import type { Consumer, ConsumerBatch } from '../../consumer/index.ts'

export { startCluster, waitFor, call }
export type { TestCluster }

const text = new TextDecoder()

/** Creates a topic through any broker, retrying while the controller elects. */
export async function createTopic(c: TestCluster, name: string, partitions: number, replicationFactor = 3): Promise<void> {
  const live = c.brokers.filter((b) => b.child !== null).length
  await waitFor(async () => (await call(c.brokers[0]!.url, 'GET', '/v1/metadata')).body.brokers.filter((b: { fenced?: boolean }) => b.fenced !== true).length >= live, 30_000, 'brokers registered')
  const end = Date.now() + 30_000
  for (;;) {
    const r = await call(c.brokers[0]!.url, 'POST', '/v1/topics', { name, partitions, replicationFactor, config: { persistence: 'async' } })
    if (r.status === 201) break
    if ((r.status !== 503 && r.status !== 400) || Date.now() > end) throw new Error(`create ${name}: ${r.status} ${JSON.stringify(r.body)}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  // Every partition has a leader that every broker knows of.
  await waitFor(async () => {
    for (const b of c.brokers) {
      if (b.child === null) continue
      const m = (await call(b.url, 'GET', '/v1/metadata')).body
      const t = m.topics.find((x: { name: string }) => x.name === name)
      if (t === undefined || t.partitions.some((p: { leader: number | null }) => p.leader === null)) return false
    }
    return true
  }, 30_000, `leaders of ${name}`)
}

export interface Produced {
  readonly partition: number
  readonly baseOffset: number
  readonly lastOffset: number
}

/** Produces `values` as one batch to a partition (acks=all), following the leader. */
export async function produce(c: TestCluster, topic: string, partition: number, values: readonly string[], extra: { key?: string; headers?: { key: string; value: string }[] } = {}): Promise<Produced> {
  let url = c.brokers.find((b) => b.child !== null)!.url
  const end = Date.now() + 30_000
  let last = ''
  const records = values.map((value) => ({ value, ...(extra.key === undefined ? {} : { key: extra.key }), ...(extra.headers === undefined ? {} : { headers: extra.headers }) }))
  while (Date.now() < end) {
    try {
      const r = await call(url, 'POST', `/v1/topics/${topic}/partitions/${partition}/records`, { records, acks: 'all' })
      if (r.status === 200) return r.body as Produced
      last = `${r.status} ${JSON.stringify(r.body)}`
      if (r.status === 421 && r.body?.error?.leader?.url) {
        url = r.body.error.leader.url
        continue
      }
      if (r.status !== 503 && r.status !== 421) throw new Error(`produce: ${last}`)
    } catch (error) {
      if (String(error).includes('produce:')) throw error
      last = String(error)
    }
    const alive = c.brokers.filter((b) => b.child !== null)
    url = alive[Math.floor(Math.random() * alive.length)]!.url
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`produce to ${topic}/${partition} never acknowledged: ${last}`)
}

/** A record as the tests compare them. */
export interface Seen {
  readonly topic: string
  readonly partition: number
  readonly offset: number
  readonly value: string
}

export function seen(batch: ConsumerBatch): Seen[] {
  return batch.records.map((r) => ({ topic: batch.topic, partition: batch.partition, offset: r.offset, value: text.decode(r.value) }))
}

/** Iterates `consumer` until `until(all seen so far)` holds; fails after `timeoutMs`. */
export async function collect(consumer: Consumer, until: (all: Seen[]) => boolean, timeoutMs = 20_000): Promise<Seen[]> {
  const all: Seen[] = []
  const timer = setTimeout(() => void consumer.close(), timeoutMs)
  try {
    for await (const batch of consumer) {
      all.push(...seen(batch))
      if (until(all)) return all
    }
  } finally {
    clearTimeout(timer)
  }
  throw new Error(`consumer closed after ${timeoutMs} ms with ${all.length} records: ${JSON.stringify(all.slice(-5))}`)
}

export function decode(bytes: Uint8Array | null): string | null {
  return bytes === null ? null : text.decode(bytes)
}
