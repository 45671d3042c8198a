/**
 * rill/producer: batches records per partition, sends them to each
 * partition's leader as an idempotent producer, retries in order. See
 * producer.ts for the flow and docs in README.
 *
 *   const producer = new Producer({ brokers: ['http://127.0.0.1:7070'] })
 *   const { partition, offset } = await producer.send('orders', { key: 'user-1', value: 'hello' })
 *   await producer.close()
 */
export { Producer } from './producer.ts'
export { defaultProducerOptions, idempotentInFlightMax, recordBytesMax } from './options.ts'
export type { ProducerOptions, ProducerConfig, PartitionerOption, PartitionerInput } from './options.ts'
export type { ProducerRecord, RecordMetadata, Bytes } from './records.ts'
export { ClientErrorCode, RillClientError, isRillClientError } from '../client/index.ts'
export type { ClientTlsOptions } from '../client/index.ts'
