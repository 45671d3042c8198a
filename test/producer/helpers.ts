/**
 * Real brokers for the producer tests (test/broker/helpers.ts), plus topic
 * creation that waits out elections and a reader that returns a
 * partition's records (value strings) in offset order.
 */
import { call, startCluster, waitFor, type TestCluster } from '../broker/helpers.ts'

export { startCluster, waitFor, type TestCluster }

/** A cluster of `brokers` with all of them registered and unfenced (placement needs live brokers). */
export async function startReadyCluster(brokers = 3): Promise<TestCluster> {
  const c = await startCluster({ brokers })
  try {
    await waitFor(async () => {
      const r = await call(c.brokers[0]!.url, 'GET', '/v1/metadata').catch(() => null)
      // Registered is not enough: a broker is placed on only once the controller unfenced it.
      return r?.status === 200 && r.body.brokers.filter((b: { fenced?: boolean }) => b.fenced !== true).length === brokers
    }, 30_000, `${brokers} brokers registered`)
  } catch (error) {
    await c.stopAll()
    throw error
  }
  return c
}

/** Creates a topic through any broker, retrying 503s (an election) and waiting until every partition has a leader. */
export async function createTopic(c: TestCluster, name: string, partitions: number, replicationFactor: number): Promise<void> {
  const url = c.brokers[0]!.url
  await waitFor(async () => {
    const r = await call(url, 'POST', '/v1/topics', { name, partitions, replicationFactor }).catch(() => null)
    // A broker fenced for a moment (its peer links late on a loaded machine) makes placement refuse: wait, bounded.
    const fencedForNow = r?.status === 400 && r.body?.error?.reason === 'replication-factor'
    if (r !== null && r.status !== 201 && r.status !== 409 && r.status !== 503 && !fencedForNow) throw new Error(`create ${name}: ${r.status} ${JSON.stringify(r.body)}`)
    return r !== null && (r.status === 201 || r.status === 409)
  }, 30_000, `topic ${name} created`)
  await waitFor(async () => {
    const r = await call(url, 'GET', '/v1/metadata').catch(() => null)
    const t = r?.body?.topics?.find((x: { name: string }) => x.name === name)
    return t !== undefined && t.partitions.length === partitions && t.partitions.every((p: { leader: number | null }) => p.leader !== null)
  }, 30_000, `leaders of ${name}`)
}

/** Every committed record of a partition, read through `url` (any live replica), values as strings, offsets checked dense. */
export async function readAll(urls: readonly string[], topic: string, partition: number): Promise<string[]> {
  const values: string[] = []
  let offset = 0
  const endMs = Date.now() + 30_000
  for (let round = 0; round < 10_000; round++) {
    const url = urls[round % urls.length]!
    const r = await call(url, 'GET', `/v1/topics/${topic}/partitions/${partition}/records?offset=${offset}&maxRecords=10000`).catch(() => null)
    if (r === null || r.status !== 200) {
      if (Date.now() > endMs) throw new Error(`read ${topic}/${partition} at ${offset}: ${r?.status} ${JSON.stringify(r?.body)}`)
      await new Promise((resolve) => setTimeout(resolve, 100))
      continue
    }
    for (const rec of r.body.records as { offset: number; value: string }[]) {
      if (rec.offset !== values.length) throw new Error(`${topic}/${partition}: record at offset ${rec.offset}, expected ${values.length}`)
      values.push(rec.value)
    }
    if (r.body.nextOffset >= r.body.highWatermark) return values
    offset = r.body.nextOffset
  }
  throw new Error(`read ${topic}/${partition}: too many rounds`)
}
