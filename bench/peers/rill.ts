/**
 * The peer workloads against rill, through its SDKs: the same three a peer
 * run does (bench/peers/{nats,rabbitmq}/bench.mjs) — publish N records as
 * fast as they are acknowledged, consume them all, then one record at a time,
 * each awaited. Every loop is bounded by a count and a time limit.
 * (bench/sdk.ts does the same against its own topics; it exports nothing,
 * so the few lines are here.)
 */
import { Producer } from '../../producer/index.ts'
import { Consumer } from '../../consumer/index.ts'
import { quantile } from '../http-lib.ts'

export interface RillRun {
  persistence: string
  replicas: number
  size: number
  count: number
  pubMsgsPerSec: number
  pubMBps: number
  consumed: number
  conMsgsPerSec: number
  seqCount: number
  seqP50Ms: number
  seqP99Ms: number
}

/** Records per `send` call: the SDK batches them per partition (as the peers' clients batch frames). */
const sendChunk = 1000
/** `send` calls not yet acknowledged, at most (the SDK's buffer bounds memory too). */
const sendsInFlightMax = 64

function value(size: number): Buffer {
  return Buffer.alloc(size, 0x61)
}

async function publish(brokers: string[], topic: string, count: number, size: number, limitMs: number): Promise<{ acked: number; seconds: number }> {
  const producer = new Producer({ brokers, acks: 'all' })
  const v = value(size)
  const pending: Promise<unknown>[] = []
  let acked = 0
  const start = performance.now()
  try {
    for (let i = 0; i < count && performance.now() - start < limitMs; i += sendChunk) {
      const n = Math.min(sendChunk, count - i)
      pending.push(producer.send(topic, Array.from({ length: n }, () => ({ value: v }))).then(() => (acked += n)))
      if (pending.length >= sendsInFlightMax) await pending.shift()
    }
    await Promise.all(pending)
    return { acked, seconds: (performance.now() - start) / 1000 }
  } finally {
    await producer.close()
  }
}

async function consume(brokers: string[], topic: string, count: number, limitMs: number): Promise<{ read: number; seconds: number }> {
  const consumer = new Consumer({ brokers, groupId: `peers-${topic}`, fromBeginning: true })
  await consumer.subscribe([topic])
  let read = 0
  const start = performance.now()
  try {
    for await (const batch of consumer) {
      read += batch.records.length
      if (read >= count || performance.now() - start > limitMs) break
    }
    return { read, seconds: (performance.now() - start) / 1000 }
  } finally {
    await consumer.close()
  }
}

async function oneAtATime(brokers: string[], topic: string, count: number, size: number, limitMs: number): Promise<number[]> {
  const producer = new Producer({ brokers, acks: 'all', lingerMs: 0 })
  const v = value(size)
  const out: number[] = []
  const start = performance.now()
  try {
    for (let i = 0; i < count && performance.now() - start < limitMs; i++) {
      const t0 = performance.now()
      await producer.send(topic, { value: v })
      out.push(performance.now() - t0)
    }
    return out.sort((a, b) => a - b)
  } finally {
    await producer.close()
  }
}

/** The three workloads on `topic` (fresh, empty): publish, consume all, one at a time. */
export async function rillWorkloads(
  brokers: string[],
  topic: string,
  o: { persistence: string; replicas: number; size: number; count: number; latCount: number; limitMs: number; progress: (m: string) => void },
): Promise<RillRun> {
  o.progress(`rill ${o.persistence} RF${o.replicas} ${o.size} B: publish ${o.count}`)
  const p = await publish(brokers, topic, o.count, o.size, o.limitMs)
  o.progress(`  ${Math.round(p.acked / p.seconds)} msgs/s; consume`)
  const c = await consume(brokers, topic, p.acked, o.limitMs)
  if (c.read < p.acked) throw new Error(`rill ${topic}: ${p.acked} acknowledged, only ${c.read} read back`)
  o.progress(`  ${Math.round(c.read / c.seconds)} msgs/s; one at a time × ${o.latCount}`)
  const lat = await oneAtATime(brokers, topic, o.latCount, o.size, o.limitMs)
  return {
    persistence: o.persistence,
    replicas: o.replicas,
    size: o.size,
    count: p.acked,
    pubMsgsPerSec: p.acked / p.seconds,
    pubMBps: (p.acked * o.size) / p.seconds / 1e6,
    consumed: c.read,
    conMsgsPerSec: c.read / c.seconds,
    seqCount: lat.length,
    seqP50Ms: quantile(lat, 0.5),
    seqP99Ms: quantile(lat, 0.99),
  }
}
