/**
 * One group member as its own process, so a test can kill -9 it. Runs a
 * Consumer with `run({ eachBatch })` and reports on stdout, one JSON line
 * each (stdout to a pipe is synchronous on Linux, so a line written before
 * the handler returned is there even after a kill -9):
 *
 *   {"type":"assignment","memberId","generation","assignment":[[topic,p]...],"lost"}
 *   {"type":"processed","partition","first","last"}      written inside the handler
 *   {"type":"error","message"}                            a request failed (the consumer retries)
 *   {"type":"closed"}                                     after close() on SIGTERM
 *
 * Usage: node --import tsx test/consumer/member.ts '{"brokers":[...],"groupId":"g","topic":"t","handlerMs":20}'
 *
 * It ends by itself: close() on SIGTERM has `closeWaitMs`, then the process
 * exits anyway (code 1); started with an IPC channel (as group.test.ts does),
 * it exits when the channel closes, i.e. when the test process is gone.
 */
import { Consumer } from '../../consumer/index.ts'

interface MemberArgs {
  brokers: string[]
  groupId: string
  topic: string
  /** Time the handler takes per batch (ms): work that a kill can interrupt. */
  handlerMs: number
  sessionTimeoutMs: number
  maxBytes: number
}

const args = JSON.parse(process.argv[2]!) as MemberArgs
const line = (o: unknown): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`)
}

const consumer = new Consumer({
  brokers: args.brokers,
  groupId: args.groupId,
  fromBeginning: true,
  sessionTimeoutMs: args.sessionTimeoutMs,
  maxBytes: args.maxBytes,
  maxWaitMs: 500,
  autoCommitIntervalMs: 300,
  clientId: `member-${process.pid}`,
})
consumer.on('assignment', (e) => {
  line({ type: 'assignment', memberId: e.memberId, generation: e.generation, assignment: e.assignment.map((tp) => [tp.topic, tp.partition]), lost: e.lost })
})
consumer.on('error', (error) => line({ type: 'error', message: String((error as Error).message ?? error) }))
/** Longest close() on SIGTERM, ms: a join under way may take 5 s, a handler up to the session timeout. */
const closeWaitMs = args.sessionTimeoutMs + 10_000
process.once('SIGTERM', () => {
  const timer = setTimeout(() => {
    line({ type: 'error', message: `close() did not finish within ${closeWaitMs} ms` })
    process.exit(1)
  }, closeWaitMs)
  void consumer.close().then(() => {
    clearTimeout(timer)
    line({ type: 'closed' })
    process.exit(0)
  })
})
if (process.channel !== undefined) {
  // The test process is gone (even SIGKILLed): nobody reads this member any more.
  process.channel.unref()
  process.once('disconnect', () => process.exit(1))
  if (!process.connected) process.exit(1)
}
await consumer.subscribe(args.topic)
await consumer.run({
  eachBatch: async (batch) => {
    await new Promise((resolve) => setTimeout(resolve, args.handlerMs))
    line({ type: 'processed', partition: batch.partition, first: batch.records[0]!.offset, last: batch.records.at(-1)!.offset })
  },
})
