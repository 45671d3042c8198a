/**
 * src/wire: what the broker and the SDKs share on the wire — the record
 * batch format (record-batch.ts, docs/record-batch.md), the JSON edge
 * (json.ts), Kafka-compatible partitioning (partitioner.ts) and the HTTP
 * API's body types (api-types.ts).
 *
 * Imports only src/base; no `node:*`, no Buffer, so it runs in the SDKs.
 */
export {
  batchMagic,
  batchHeaderBytes,
  batchCrcStart,
  batchField,
  defaultBatchLimits,
  formatBatchLimits,
  encodeBatch,
  validateBatch,
  readBatchHeader,
  stampBaseOffset,
  decodeBatch,
  decodeBatches,
  splitConcatenatedBatches,
} from './record-batch.ts'
export type {
  RecordHeader,
  RecordInput,
  DecodedRecord,
  DecodedBatch,
  BatchHeader,
  BatchInfo,
  BatchLimits,
  EncodeBatchOptions,
} from './record-batch.ts'
export { recordsFromJson, recordsToJson, parseRecordEncoding, recordEncodings } from './json.ts'
export type { RecordEncoding, JsonRecordIn, JsonRecordOut, JsonRecordHeader } from './json.ts'
export { murmur2, toPositive, partitionForKey, RoundRobinPartitioner, StickyPartitioner } from './partitioner.ts'
export { toBase64, fromBase64 } from './bytes.ts'
export { contentType, nameCharsMax, namePattern } from './api-types.ts'
export type * from './api-types.ts'
