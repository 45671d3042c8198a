// node examples/consumer.mjs — reads "orders" as a member of the group "billing"; Ctrl-C
// commits what was printed and leaves the group. Run two of them to see partitions shared.
import { Consumer } from 'rill/consumer'

const consumer = new Consumer({ brokers: [process.env.RILL_URL ?? 'http://127.0.0.1:7070'], groupId: 'billing', fromBeginning: true })
await consumer.subscribe('orders')
const stop = new AbortController()
process.once('SIGINT', () => stop.abort())
for await (const batch of consumer.batches({ signal: stop.signal })) {
  for (const r of batch.records) console.log(`partition ${batch.partition}, offset ${r.offset}: ${new TextDecoder().decode(r.value)}`)
}
await consumer.close()
