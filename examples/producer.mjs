// node examples/producer.mjs — ten records to the topic "orders" (create it first:
// node bin/rill.mjs topic create orders). RILL_URL picks the broker (default :7070).
import { Producer } from 'rill/producer'

const producer = new Producer({ brokers: [process.env.RILL_URL ?? 'http://127.0.0.1:7070'] })
for (let i = 0; i < 10; i++) {
  // The same key always lands on the same partition (murmur2, as Kafka); resolves once a majority has it.
  const { partition, offset } = await producer.send('orders', { key: `user-${i % 3}`, value: `order ${i}` })
  console.log(`order ${i} -> partition ${partition}, offset ${offset}`)
}
await producer.close()
