/**
 * JSON schemas of every route (body, params, querystring), all with
 * `additionalProperties: false`. The validator runs without type coercion and
 * without removing unknown fields (see server.ts), so a string where a number
 * belongs, or a misspelt field, is a 400 rather than a guess. Path and query
 * values are strings on the wire: their schemas are digit patterns and the
 * handler converts them (`intParam`).
 *
 * Produce bodies have one schema per content type: in JSON keys and values
 * are strings, in msgpack bytes (the `binary` keyword, defined in server.ts).
 * Sizes and counts of records are not bounded here but by the edge
 * (records.ts) so that they answer 413 TOO_LARGE rather than 400.
 */
import { groupLimits, sessionTimeoutMsMax, sessionTimeoutMsMin } from '../groups/index.ts'
import { contentType } from '../wire/index.ts'
import { nameLengthMax, replicationFactorMax, topicPartitionsMax } from './limits.ts'

/** Topic and group names: Kafka's legal characters, not "." or "..". */
import { namePattern } from '../wire/index.ts'

export { namePattern }

const name = { type: 'string', minLength: 1, maxLength: nameLengthMax, pattern: namePattern } as const
/** A non-negative integer in decimal, below 2^53 (16 digits; the handler checks the exact bound). */
const uintString = { type: 'string', pattern: '^(0|[1-9][0-9]{0,15})$' } as const
const uint = { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER } as const
const acks = { type: 'string', enum: ['all', 'leader'] } as const
const encoding = { type: 'string', enum: ['utf8', 'base64'] } as const

export const topicParams = {
  type: 'object',
  additionalProperties: false,
  required: ['topic'],
  properties: { topic: name },
} as const

export const partitionParams = {
  type: 'object',
  additionalProperties: false,
  required: ['topic', 'p'],
  properties: { topic: name, p: uintString },
} as const

export const groupParams = {
  type: 'object',
  additionalProperties: false,
  required: ['group'],
  properties: { group: name },
} as const

/** Member ids are chosen by the coordinator (UUIDs); anything else is simply unknown. */
const memberId = { type: 'string', minLength: 1, maxLength: 64, pattern: '^[a-zA-Z0-9-]+$' } as const

export const emptyQuery = { type: 'object', additionalProperties: false, properties: {} } as const

export const createTopicBody = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'partitions', 'replicationFactor'],
  properties: {
    name,
    partitions: { type: 'integer', minimum: 1, maximum: topicPartitionsMax },
    replicationFactor: { type: 'integer', minimum: 1, maximum: replicationFactorMax },
    config: {
      type: 'object',
      additionalProperties: false,
      properties: {
        persistence: { type: 'string', enum: ['sync', 'async', 'memory'] },
        retentionMs: { type: 'integer', minimum: -1, maximum: Number.MAX_SAFE_INTEGER },
        retentionBytes: { type: 'integer', minimum: -1, maximum: Number.MAX_SAFE_INTEGER },
      },
    },
    // false: answer as soon as the controller has the topic, without waiting for its leaders.
    wait: { type: 'boolean' },
  },
} as const

export const initProducerBody = { type: 'object', additionalProperties: false, properties: {} } as const

/**
 * Longest producerToken taken, characters. A token is 64 hex digits; any
 * other string up to this is checked by the broker and refused as
 * INVALID_PRODUCER_TOKEN (403, like a wrong token), beyond it by the schema.
 */
const producerTokenCharsMax = 256

const producerFields = {
  producerId: uint,
  producerEpoch: { type: 'integer', minimum: 0, maximum: 0x7fff },
  sequence: { type: 'integer', minimum: 0, maximum: 0x7fffffff },
  producerToken: { type: 'string', maxLength: producerTokenCharsMax },
  acks,
} as const

const jsonHeaders = {
  anyOf: [
    {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['key', 'value'],
        properties: { key: { type: 'string' }, value: { type: 'string' } },
      },
    },
    { type: 'object', additionalProperties: { type: 'string' } },
  ],
} as const

const produceJson = {
  type: 'object',
  additionalProperties: false,
  required: ['records'],
  properties: {
    ...producerFields,
    encoding,
    records: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['value'],
        properties: {
          key: { type: ['string', 'null'] },
          value: { type: 'string' },
          headers: jsonHeaders,
          timestamp: uint,
        },
      },
    },
  },
} as const

const bytesOrNull = { anyOf: [{ type: 'null' }, { binary: true }] } as const

const produceMsgpack = {
  type: 'object',
  additionalProperties: false,
  properties: {
    ...producerFields,
    batch: { binary: true },
    records: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['value'],
        properties: {
          key: bytesOrNull,
          value: { binary: true },
          headers: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['key', 'value'],
              properties: { key: { type: 'string' }, value: { binary: true } },
            },
          },
          timestamp: uint,
        },
      },
    },
  },
  oneOf: [{ required: ['records'] }, { required: ['batch'] }],
} as const

/** Produce body: `records` in JSON; `records` or `batch` in msgpack. */
export const produceBody = {
  content: {
    [contentType.json]: { schema: produceJson },
    [contentType.msgpack]: { schema: produceMsgpack },
  },
} as const

export const fetchQuery = {
  type: 'object',
  additionalProperties: false,
  required: ['offset'],
  properties: {
    offset: uintString,
    maxRecords: uintString,
    maxBytes: uintString,
    maxWaitMs: uintString,
    minCommitted: uintString,
    encoding,
    format: { type: 'string', enum: ['records', 'batches'] },
  },
} as const

export const commitOffsetsBody = {
  type: 'object',
  additionalProperties: false,
  required: ['offsets'],
  properties: {
    offsets: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['topic', 'partition', 'offset'],
        properties: { topic: name, partition: { type: 'integer', minimum: 0, maximum: topicPartitionsMax - 1 }, offset: uint },
      },
    },
    memberId,
    allowBackwards: { type: 'boolean' },
  },
} as const

// ---- group membership (docs/groups.md) ----

export const memberParams = {
  type: 'object',
  additionalProperties: false,
  required: ['group', 'memberId'],
  properties: { group: name, memberId },
} as const

const topicList = { type: 'array', minItems: 1, maxItems: groupLimits.topicsPerMember, items: name } as const

export const joinGroupBody = {
  type: 'object',
  additionalProperties: false,
  required: ['topics'],
  properties: {
    topics: topicList,
    clientId: { type: 'string', minLength: 1, maxLength: nameLengthMax, pattern: namePattern },
    rack: { type: 'string', minLength: 1, maxLength: nameLengthMax, pattern: '^[\\x21-\\x7e]+$' },
    sessionTimeoutMs: { type: 'integer', minimum: sessionTimeoutMsMin, maximum: sessionTimeoutMsMax },
  },
} as const

export const heartbeatBody = {
  type: 'object',
  additionalProperties: false,
  required: ['owned'],
  properties: {
    owned: {
      type: 'array',
      maxItems: groupLimits.topicsPerMember,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['topic', 'partitions'],
        properties: {
          topic: name,
          partitions: { type: 'array', maxItems: topicPartitionsMax, items: { type: 'integer', minimum: 0, maximum: topicPartitionsMax - 1 } },
        },
      },
    },
    topics: topicList,
    memberEpoch: uint,
  },
} as const
