/**
 * The consumer SDK against a broker API with a fetch quota (in process:
 * src/api over real partitions, test/api/helpers.ts): it reads everything,
 * its answers are held, and the broker's 429 THROTTLED refusals (one held
 * answer per client here) are waited out quietly, as the expected flow
 * control they are, not reported as errors.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { buildApi } from '../../src/api/index.ts'
import { Consumer } from '../../consumer/index.ts'
import { TestService } from '../api/helpers.ts'
import { collect } from './helpers.ts'

test('a consumer over its fetch quota reads every record; THROTTLED refusals are retried, not reported', { timeout: 60_000 }, async () => {
  const service = new TestService()
  const app = buildApi({
    service,
    // Each partition's answer (one batch of 3 × 2 KB) is more than the burst (a second's worth): the first answer with
    // records is held whatever the machine's speed (at 20,000 B/s three answers fitted the burst, and on a busy machine
    // the refill between fetches could cover the fourth: nothing was held). Holds of up to 1 s keep the window in
    // which the other partitions' fetches meet the one-held-answer bound wide.
    quotas: { produceBytesPerSecond: null, fetchBytesPerSecond: 2_000, requestsPerSecond: null, throttleMsMax: 1_000, heldAnswersPerKeyMax: 1 },
  })
  const partitions = 4
  let consumer: Consumer | null = null
  try {
    await app.listen({ host: '127.0.0.1', port: 0 })
    service.url = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
    await service.createTopic({ name: 'q', partitions, replicationFactor: 1 })
    for (let p = 0; p < partitions; p++) {
      const records = Array.from({ length: 3 }, (_, i) => ({ value: `${p}-${i}-${'x'.repeat(2000)}` }))
      const r = await app.inject({ method: 'POST', url: `/v1/topics/q/partitions/${p}/records`, payload: { records } })
      assert.equal(r.statusCode, 200)
    }
    consumer = new Consumer({ brokers: service.url, fromBeginning: true, readFrom: 'leader', maxBytes: 4096 })
    const errors: unknown[] = []
    consumer.on('error', (e) => errors.push(e))
    await consumer.subscribe('q')
    const all = await collect(consumer, (seen) => seen.length === partitions * 3)
    assert.equal(new Set(all.map((s) => `${s.partition}/${s.offset}`)).size, partitions * 3, 'every record once')
    const metrics = (await app.inject({ method: 'GET', url: '/metrics' })).body
    assert.match(metrics, /rill_quota_throttled_total\{kind="fetch",key="address"\} [1-9]/, 'answers were held')
    assert.match(metrics, /rill_quota_refused_total\{kind="fetch",key="address"\} [1-9]/, 'parallel fetches met the held bound')
    assert.deepEqual(errors.map((e) => (e as { code?: string }).code), [], 'no errors reported')
  } finally {
    await consumer?.close()
    await app.close()
    await service.close()
  }
})
