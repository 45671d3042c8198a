/**
 * rill/consumer: reads topics over HTTP (msgpack, stored record batches),
 * alone or as a member of a consumer group (docs/groups.md), from the
 * leader, a follower or the nearest replica (DESIGN.md decision 8).
 *
 * ```ts
 * const consumer = new Consumer({ brokers: ['http://127.0.0.1:7070'], groupId: 'billing', fromBeginning: true })
 * await consumer.subscribe(['orders'])
 * for await (const batch of consumer) for (const r of batch.records) console.log(batch.partition, r.offset, r.value)
 * ```
 */
export { Consumer } from './consumer.ts'
export type { AssignmentEvent, ConsumerBatch, ConsumerEvents, PartitionLag, ResetEvent, RunOptions, TopicPartitionsSelector } from './consumer.ts'
export type { ConsumerRecord } from './decode.ts'
export { consumerDefaults } from './options.ts'
export type { ConsumerOptions, ReadFrom } from './options.ts'
export type { TopicPartition } from './partition-state.ts'
export { ClientErrorCode, RillClientError, isRillClientError } from '../client/index.ts'
export type { ClientTlsOptions } from '../client/index.ts'
