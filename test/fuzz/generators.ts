/**
 * Structured-but-wrong HTTP requests for the fuzz suite: every public route
 * of src/api/server.ts with bodies that are valid templates bent by a few
 * mutations (wrong types, huge and negative numbers, NaN-like strings, long
 * and unicode strings, unknown and prototype-polluting keys, deep nesting),
 * path parameters and queries spelt every way a router might decode
 * (percent-encoding, duplicate keys, unicode), wrong content types and
 * accept headers, msgpack bodies where JSON is expected and the reverse,
 * stored-format batches mutated with and without a fixed-up checksum,
 * truncated and oversized bodies.
 *
 * Requests never name `protectedTopic` on a route that deletes: the
 * records produced there before the fuzzing must read back unchanged after.
 */
import fc from 'fast-check'
import { Packr } from 'msgpackr'
import { crc32c } from '../../src/base/index.ts'
import { batchCrcStart, batchField, encodeBatch } from '../../src/wire/index.ts'
import type { RawRequest } from './helpers.ts'

/** The topic holding the acknowledged records checked at the end. */
export const protectedTopic = 'fz-keep'
/** The topic the fuzzer produces to, fetches from and commits on. */
export const scratchTopic = 'fz'
/** Partitions of both topics. */
export const topicPartitions = 2

const packr = new Packr({ useRecords: false })
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s)

// ---- values -----------------------------------------------------------------

/** Strings that look like numbers, names or paths, and are not quite. */
export const hostileStrings = [
  '', ' ', '0', '-1', '-0', '1.5', '1e3', '1e999', 'NaN', 'Infinity', '-Infinity', 'null', 'undefined', 'true', '0x10', '0b1', '00', '01', '+1',
  ' 1', '1 ', '1\t', '9007199254740991', '9007199254740993', '9999999999999999', '99999999999999999999', '1_000', '1,5', '٣', '１',
  '\u0000', '\u0000a', '%00', '%', '%zz', '%2e%2e', '%2F', '..', '.', '...', '-', '_', '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty',
  'a'.repeat(249), 'a'.repeat(250), 'x'.repeat(4096), 'τοπικ', '😀', '\u202e', '\ud800', '\udfff', 'a/b', 'a%2Fb', 'a?b', 'a#b', 'a b', 'a\r\nb',
  '[]', '{}', '<script>', '__consumer_offsets', 'fz', protectedTopic, 'utf8', 'base64', 'all', 'leader', 'batches', 'records',
] as const

const hostileNumbers = [
  -1, -0, 0.5, 1.0000001, 1e308, -1e308, 2 ** 31, 2 ** 31 - 1, 2 ** 32, 2 ** 53, 2 ** 53 + 2, 2 ** 63, 2 ** 64, Number.MAX_VALUE, Number.MIN_VALUE,
  1e-7, 10_000, 10_001, 16, 0x7fff, 0x8000, 0x7fffffff, -2147483648, 99,
] as const

/** Nested arrays/objects `depth` deep (built without recursion). */
function nested(depth: number, kind: 'array' | 'object'): unknown {
  let v: unknown = 0
  for (let i = 0; i < depth; i++) v = kind === 'array' ? [v] : { a: v }
  return v
}

/** Any value a field should not hold. */
export const hostileValue: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(...hostileStrings) },
  { weight: 3, arbitrary: fc.constantFrom(...hostileNumbers) },
  { weight: 1, arbitrary: fc.constantFrom<unknown>(null, true, false, [], {}, [null], [[]], { '': 1 }) },
  { weight: 1, arbitrary: fc.constantFrom(10, 100).chain((d) => fc.constantFrom(nested(d, 'array'), nested(d, 'object'))) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }) },
  { weight: 2, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.double() },
  { weight: 1, arbitrary: fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }).map((n) => Number(n)) },
  { weight: 1, arbitrary: fc.anything({ maxDepth: 2, maxKeys: 3 }) },
)

// ---- mutating a valid template ----------------------------------------------

interface Mutation {
  readonly op: 'set' | 'delete' | 'add' | 'wrap'
  readonly pick: number
  readonly key: string
  readonly value: unknown
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  op: fc.constantFrom('set', 'set', 'set', 'delete', 'add', 'wrap'),
  pick: fc.nat(),
  key: fc.constantFrom('x', '__proto__', 'constructor', '', 'records', 'value', 'offset', 'partitions', 'name', '\u0000'),
  value: hostileValue,
})

/** Every [container, key] of `root` (objects and arrays), breadth first, bounded. */
function slots(root: unknown): Array<[Record<string, unknown>, string]> {
  const out: Array<[Record<string, unknown>, string]> = []
  const queue: unknown[] = [root]
  while (queue.length > 0 && out.length < 200) {
    const v = queue.shift()
    if (typeof v !== 'object' || v === null || v instanceof Uint8Array) continue
    for (const k of Object.keys(v)) {
      out.push([v as Record<string, unknown>, k])
      queue.push((v as Record<string, unknown>)[k])
    }
  }
  return out
}

/** Sets an own property, `__proto__` included (a plain assignment would set the prototype). */
function setOwn(target: Record<string, unknown>, key: string, value: unknown): void {
  Object.defineProperty(target, key, { value, enumerable: true, writable: true, configurable: true })
}

/** `template` with `mutations` applied (a copy; the template is left alone). */
export function mutate(template: unknown, mutations: readonly Mutation[]): unknown {
  let root: unknown = structuredClone(template)
  for (const m of mutations) {
    if (m.op === 'wrap') {
      root = m.pick % 3 === 0 ? [root] : m.pick % 3 === 1 ? { [m.key]: root } : JSON.stringify(root)
      continue
    }
    const all = slots(root)
    if (all.length === 0) continue
    const [container, key] = all[m.pick % all.length]!
    if (m.op === 'set') setOwn(container, key, m.value)
    else if (m.op === 'delete') delete container[key]
    else setOwn(container, m.key, m.value)
  }
  return root
}

// ---- stored-format batches ---------------------------------------------------

/** A valid stored-format batch of `count` records. */
export function validBatch(count: number, producer: { producerId?: number; producerEpoch?: number; baseSequence?: number } = {}): Uint8Array {
  const records = Array.from({ length: count }, (_, i) => ({ key: i % 2 === 0 ? null : utf8(`k${i}`), value: utf8(`v${i}`), headers: i === 2 ? [{ key: 'h', value: utf8('x') }] : [] }))
  return encodeBatch({ records, timestampMs: 1_700_000_000_000, ...producer })
}

/** Writes the checksum a batch's bytes would have (so a mutation reaches the checks past the checksum). */
export function fixCrc(bytes: Uint8Array): void {
  if (bytes.byteLength < batchCrcStart) return
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(batchField.crc, crc32c(0, bytes.subarray(batchCrcStart)), true)
}

interface BatchMutation {
  readonly kind: 'flip' | 'field' | 'truncate' | 'append' | 'length'
  readonly at: number
  readonly value: number
}

const batchMutation: fc.Arbitrary<BatchMutation> = fc.record({
  kind: fc.constantFrom('flip', 'flip', 'field', 'field', 'truncate', 'append', 'length'),
  at: fc.nat(),
  value: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 1, 0x7f, 0x80, 0xff, 0xffff, 0x7fffffff, 0xffffffff)),
})

/** A stored-format batch, valid or bent (field values, flipped bytes, truncated, extended), checksum fixed up or not. */
export const storedBatch: fc.Arbitrary<Uint8Array> = fc
  .record({ count: fc.integer({ min: 1, max: 4 }), mutations: fc.array(batchMutation, { maxLength: 3 }), crc: fc.boolean() })
  .map(({ count, mutations, crc }) => {
    let bytes = validBatch(count)
    for (const m of mutations) {
      if (m.kind === 'flip') {
        const copy = bytes.slice()
        copy[m.at % copy.byteLength]! ^= 1 << (m.value % 8)
        bytes = copy
      } else if (m.kind === 'field') {
        const copy = bytes.slice()
        const fields = Object.values(batchField).filter((f) => f !== batchField.crc)
        const at = fields[m.at % fields.length]!
        const width = at === batchField.magic || at === batchField.attributes ? 1 : at === batchField.producerEpoch ? 2 : 4
        const view = new DataView(copy.buffer)
        if (at + width > copy.byteLength) continue
        if (width === 1) view.setUint8(at, m.value & 0xff)
        else if (width === 2) view.setUint16(at, m.value & 0xffff, true)
        else view.setUint32(at, m.value >>> 0, true)
        bytes = copy
      } else if (m.kind === 'truncate') {
        bytes = bytes.slice(0, m.at % bytes.byteLength)
      } else if (m.kind === 'append') {
        const copy = new Uint8Array(bytes.byteLength + 1 + (m.at % 16)).fill(m.value & 0xff)
        copy.set(bytes)
        bytes = copy
      } else if (bytes.byteLength >= 12) {
        // The length field told to match the bytes (after an append or a truncation) or to lie.
        const copy = bytes.slice()
        new DataView(copy.buffer).setUint32(batchField.batchLength, m.value % 2 === 0 ? copy.byteLength : m.value >>> 0, true)
        bytes = copy
      }
    }
    if (crc) fixCrc(bytes)
    return bytes
  })

// ---- path segments, queries, headers ----------------------------------------

/** Percent-encodes the UTF-8 bytes of `text` outside `keep` (encodeURIComponent throws on a lone surrogate). */
function pct(text: string, keep: RegExp = /[A-Za-z0-9\-_.!~*'()]/): string {
  let out = ''
  for (const c of text) out += keep.test(c) ? c : [...Buffer.from(c, 'utf8')].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('')
  return out
}

/** A path segment spelt as given, percent-encoded, fully percent-encoded or double-encoded. */
function spell(segment: string, how: number): string {
  switch (how % 5) {
    case 0:
      return segment
    case 1:
      return pct(segment)
    case 2:
      return pct(segment, /(?!)/)
    case 3:
      return pct(pct(segment))
    default:
      return pct(segment, /[a-zA-Z0-9]/)
  }
}

const spelling = fc.nat({ max: 9 }).map((n) => (n < 5 ? 0 : n - 4))

/** A topic segment: the real topics, hostile names, or random unicode. */
const topicName = (mayDelete: boolean): fc.Arbitrary<string> =>
  fc.oneof(
    { weight: mayDelete ? 0 : 4, arbitrary: fc.constantFrom(scratchTopic, protectedTopic) },
    { weight: 2, arbitrary: fc.constantFrom(...hostileStrings.filter((s) => !mayDelete || (s !== protectedTopic && s !== scratchTopic))) },
    { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 30 }).filter((s) => !mayDelete || (s !== protectedTopic && s !== scratchTopic)) },
    { weight: 1, arbitrary: fc.stringMatching(/^[a-zA-Z0-9._-]{1,12}$/).filter((s) => !mayDelete || (s !== protectedTopic && s !== scratchTopic)) },
  )

const partitionSegment = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('0', '1') },
  { weight: 3, arbitrary: fc.constantFrom('2', '-1', '1.5', '1e0', 'NaN', 'Infinity', '9007199254740993', '99999999999999999999', '9999999999999999', '00', '+1', ' 1', '0x1', '%30', '10000', '٣') },
  { weight: 1, arbitrary: fc.string({ maxLength: 8 }) },
)

/**
 * What the broker handed out before the fuzzing (members of group g1, producer ids): requests that
 * name them reach past "unknown member" and "unknown producer" into the code behind. Filled by the test.
 */
export const live = { members: [] as string[], producerIds: [] as number[], producerTokens: [] as string[] }
/** The i-th live member id (or a made-up one before any joined). */
const liveMember = fc.nat().map((i) => live.members[i % Math.max(1, live.members.length)] ?? 'm')

const groupName = fc.oneof(fc.constantFrom('g1', 'g1', 'g2'), fc.constantFrom(...hostileStrings), fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }))
const memberIdSegment = fc.oneof(liveMember, liveMember, fc.uuid(), fc.constantFrom('m', '-', 'a'.repeat(64), 'a'.repeat(65), ...hostileStrings))

const queryKeys = ['offset', 'maxRecords', 'maxBytes', 'maxWaitMs', 'minCommitted', 'encoding', 'format', '__proto__', 'constructor', 'x', '', 'offset[]', 'a[b]', 'hasOwnProperty'] as const
const queryValue = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...hostileStrings.filter((s) => s.length < 300)) },
  { weight: 2, arbitrary: fc.nat({ max: 1000 }).map(String) },
  { weight: 1, arbitrary: fc.string({ maxLength: 12 }) },
)

/**
 * A query string: pairs of keys (the fetch route's, duplicates, prototype
 * names, junk) and values, each spelt raw or encoded. A long poll that is
 * asked for correctly is not an attack; its wait is kept short so runs stay fast.
 */
const query: fc.Arbitrary<string> = fc
  .record({
    pairs: fc.array(fc.tuple(fc.constantFrom(...queryKeys), queryValue, spelling), { maxLength: 5 }),
    prefix: fc.constantFrom('?', '?', '?', '??', '?&', '?;'),
    suffix: fc.constantFrom('', '', '', '&', '#x', '&=', '&&'),
  })
  .map(({ pairs, prefix, suffix }) => {
    if (pairs.length === 0) return suffix === '#x' ? '#x' : ''
    const fixed = pairs.map(([k, v, how]) => [k, k === 'maxWaitMs' && /^\d+$/.test(v.trim()) && Number(v) > 200 ? '200' : v, how] as const)
    return prefix + fixed.map(([k, v, how]) => `${spell(k, how)}=${spell(v, how)}`).join('&') + suffix
  })

const contentTypes = [
  'application/json', 'application/json', 'application/msgpack', 'application/json; charset=utf-8', 'application/json; charset=utf-16',
  'APPLICATION/JSON', 'application/msgpack; x=1', 'text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x',
  'application/octet-stream', '', 'application/json, application/msgpack', 'application/jsonx', 'application/msgpackx', '*/*',
] as const
const accepts = [null, null, '*/*', 'application/msgpack', 'application/json', 'text/html', 'application/msgpack;q=0', 'garbage', ''] as const
const extraHeaders = [
  ['x-rill-forwarded', '1'], ['content-encoding', 'gzip'], ['expect', '100-continue'], ['x-rill-mac', 'zz'],
  ['x-rill-time', '0'], ['accept-encoding', 'gzip'], ['x', '\u00ff'], ['cookie', 'a=b'], ['x-forwarded-for', '1.2.3.4'],
] as const

// ---- bodies -----------------------------------------------------------------

type Route = {
  readonly method: string
  /** Path with `:topic`, `:p`, `:group`, `:member` placeholders. */
  readonly path: string
  /** A valid body in JSON form (null: the route takes none). */
  readonly json: unknown
  /** A valid body in msgpack form (bytes where JSON has strings). */
  readonly msgpack?: unknown
  /** The route deletes what its path names: never the real topics. */
  readonly deletes?: boolean
  /** A valid query (the route takes its fields there). */
  readonly query?: string
}

const producerFields = { producerId: 1, producerEpoch: 0, sequence: 0 }
/** Stands for a live member id / producer id in a template (replaced when a request is made). */
const liveMemberMark = '<live-member>'
const liveProducerMark = -424242
const liveTokenMark = '<live-producer-token>'
/** Every public route (src/api/server.ts) with a valid body. */
export const publicRoutes: readonly Route[] = [
  { method: 'GET', path: '/health', json: null },
  { method: 'GET', path: '/metrics', json: null },
  { method: 'GET', path: '/v1/metadata', json: null },
  { method: 'POST', path: '/v1/producers', json: {} },
  {
    method: 'POST',
    path: '/v1/topics',
    json: { name: 'fzc', partitions: 1, replicationFactor: 1, config: { persistence: 'memory', retentionMs: 60_000, retentionBytes: 1_000_000 } },
  },
  { method: 'GET', path: '/v1/topics', json: null },
  { method: 'GET', path: '/v1/topics/:topic', json: null },
  { method: 'DELETE', path: '/v1/topics/:topic', json: null, deletes: true },
  {
    method: 'POST',
    path: '/v1/topics/:topic/partitions/:p/records',
    json: { records: [{ key: 'k', value: 'v', headers: { h: 'x' }, timestamp: 1 }, { value: 'w', headers: [{ key: 'a', value: 'b' }] }], acks: 'all', encoding: 'utf8', producerId: liveProducerMark, producerEpoch: 0, sequence: 0, producerToken: liveTokenMark },
    msgpack: { records: [{ key: utf8('k'), value: utf8('v'), headers: [{ key: 'h', value: utf8('x') }], timestamp: 1 }, { key: null, value: utf8('w') }], acks: 'leader' },
  },
  {
    method: 'POST',
    path: '/v1/topics/:topic/records',
    json: { records: [{ key: 'aw==', value: 'dg==' }, { value: 'dw==' }], encoding: 'base64' },
    msgpack: { records: [{ key: utf8('k'), value: utf8('v') }] },
  },
  { method: 'GET', path: '/v1/topics/:topic/partitions/:p/records', json: null },
  { method: 'POST', path: '/v1/groups/:group/offsets', json: { offsets: [{ topic: scratchTopic, partition: 0, offset: 1 }], allowBackwards: true, memberId: liveMemberMark } },
  { method: 'GET', path: '/v1/groups/:group/offsets', json: null },
  { method: 'GET', path: '/v1/groups/:group', json: null },
  { method: 'POST', path: '/v1/groups/:group/members', json: { topics: [scratchTopic], clientId: 'c', rack: 'r', sessionTimeoutMs: 10_000 } },
  {
    method: 'POST',
    path: '/v1/groups/:group/members/:member/heartbeat',
    json: { owned: [{ topic: scratchTopic, partitions: [0] }], topics: [scratchTopic], memberEpoch: 0 },
  },
  { method: 'DELETE', path: '/v1/groups/:group/members/:member', json: null, deletes: true },
  // Tokens and ACLs (src/api/security-routes.ts; the fuzzed broker runs without --auth, so they answer anyone).
  { method: 'GET', path: '/v1/whoami', json: null },
  { method: 'POST', path: '/v1/acl/tokens', json: { principal: 'fz-user' } },
  { method: 'GET', path: '/v1/acl/tokens', json: null, query: '?principal=fz-user' },
  { method: 'DELETE', path: '/v1/acl/tokens/:id', json: null, deletes: true },
  { method: 'POST', path: '/v1/acls', json: { principal: 'fz-user', resourceType: 'topic', resourceName: scratchTopic, patternType: 'literal', operation: 'produce' } },
  { method: 'GET', path: '/v1/acls', json: null, query: '?principal=fz-user' },
  { method: 'DELETE', path: '/v1/acls', json: null, query: `?principal=fz-user&resourceType=topic&resourceName=${scratchTopic}&patternType=literal&operation=produce` },
]

/** Texts no JSON parser should take, or should take and regret. */
const hostileTexts: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom(
    '', ' ', 'null', 'true', '0', '"x"', '[]', '{', '{"records":', '{"records":[{"value":"v"}]', '{"a":1}}', '{"records":[{"value":"v"}]}garbage',
    '{"__proto__":{"polluted":1},"records":[{"value":"v"}]}', '{"constructor":{"prototype":{"polluted":1}}}',
    '{"records":[{"value":"v","__proto__":{"x":1}}]}', '\ufeff{"records":[{"value":"v"}]}', '{"records":[{"value":"\\ud800"}]}',
    '{"records":[{"value":"v"}],"records":[]}', '{"name":"a","name":"b","partitions":1,"replicationFactor":1}', '1e999999', '-', 'NaN',
    '{"records":[{"value":"v"}],"producerId":9007199254740993,"producerEpoch":0,"sequence":0}',
  ),
  fc.constantFrom(100, 10_000, 500_000).map((d) => '['.repeat(d) + ']'.repeat(d)),
  fc.constantFrom(100, 10_000, 200_000).map((d) => '{"a":'.repeat(d) + '1' + '}'.repeat(d)),
  fc.constantFrom(1000, 100_000).map((n) => `{"records":[${'{"value":"v"},'.repeat(n)}{"value":"v"}]}`),
  fc.constantFrom(1_000_000).map((n) => `{"records":[{"value":"${'a'.repeat(n)}"}]}`),
  fc.json({ maxDepth: 3 }),
  fc.string({ unit: 'grapheme', maxLength: 200 }),
)

/** msgpack that decoders trip on: deep nesting, lengths beyond the bytes, extension types, odd keys, big integers. */
const hostileMsgpack: fc.Arbitrary<Uint8Array> = fc.oneof(
  fc.constantFrom(100, 10_000, 200_000).map((d) => Buffer.concat([Buffer.alloc(d, 0x91), Buffer.from([0xc0])])),
  fc.constantFrom(100, 10_000).map((d) => Buffer.concat([Buffer.from([0x81, 0xa7, ...Buffer.from('records')]), Buffer.alloc(d, 0x91), Buffer.from([0x80])])),
  fc.constantFrom(
    [0xdd, 0xff, 0xff, 0xff, 0xff], // array32 of 2^32 - 1 items, none there
    [0xdf, 0x7f, 0xff, 0xff, 0xff], // map32 of 2^31 - 1 entries
    [0xdb, 0xff, 0xff, 0xff, 0xff, 0x61], // str32 of 4 GiB
    [0xc6, 0x7f, 0xff, 0xff, 0xff, 0x00], // bin32 of 2 GiB
    [0xc9, 0x7f, 0xff, 0xff, 0xff, 0x01, 0x00], // ext32 of 2 GiB
    [0xd6, 0xff, 0x00, 0x00, 0x00, 0x01], // timestamp ext where a map belongs
    [0xd4, 0x69, 0x00], [0xd4, 0x70, 0x00], [0xd4, 0x73, 0x00], [0xd4, 0x72, 0x00], [0xd5, 0x42, 0x00, 0x00], // msgpackr's own extensions
    [0x81, 0xc0, 0xc0], [0x81, 0x01, 0x02], [0x81, 0x91, 0x01, 0x02], [0x81, 0x80, 0x01], // keys that are not strings
    [0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x78, 0x01], // __proto__ key
    [0x81, 0xa7, ...Buffer.from('records'), 0x91, 0x81, 0xa5, ...Buffer.from('value'), 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // u64 max as a value
    [0x81, 0xa7, ...Buffer.from('records'), 0x91, 0x81, 0xa5, ...Buffer.from('value'), 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0], // NaN as a value
    [0xc1], [0x91], [0x81], [0xa5, 0x61], [],
  ).map((b) => new Uint8Array(b)),
)

export interface FuzzRequest extends RawRequest {
  /** The route it was made from (for the post-checks). */
  readonly route: string
  /** The body carried a stored-format batch. */
  readonly batch?: boolean
  /** The request was cut short on purpose (a close without an answer is fine). */
  readonly truncated?: boolean
}

/** `template` with the live-id marks replaced by the `i`-th live member and producer id. */
function withLive(template: unknown, i: number): unknown {
  const member = live.members[i % Math.max(1, live.members.length)] ?? 'm'
  const producerId = live.producerIds[i % Math.max(1, live.producerIds.length)] ?? 1
  const producerToken = live.producerTokens[i % Math.max(1, live.producerTokens.length)] ?? '00'
  const root = structuredClone(template)
  for (const [container, key] of slots(root)) {
    if (container[key] === liveMemberMark) container[key] = member
    else if (container[key] === liveProducerMark) container[key] = producerId
    else if (container[key] === liveTokenMark) container[key] = producerToken
  }
  return root
}

const bodyKind = fc.constantFrom('json', 'json', 'json', 'msgpack', 'msgpack', 'batch', 'text', 'bytes', 'none')

/** One structured-but-wrong request to a public route. */
/** What a fault may bend in an otherwise valid request. */
const faultKinds = ['method', 'topic', 'partition', 'group', 'member', 'query', 'slash', 'mutation', 'body', 'content-type', 'accept', 'header', 'length'] as const
type Fault = (typeof faultKinds)[number]

/** A valid fetch query: from an offset near the start, with the options a client may give. */
const validFetchQuery = fc
  .record({ offset: fc.nat({ max: 30 }), maxRecords: fc.option(fc.integer({ min: 1, max: 100 })), maxBytes: fc.option(fc.integer({ min: 1, max: 100_000 })), encoding: fc.option(fc.constantFrom('utf8', 'base64')), format: fc.option(fc.constantFrom('records', 'batches')) })
  .map((q) => `?offset=${q.offset}&maxWaitMs=0${q.maxRecords === null ? '' : `&maxRecords=${q.maxRecords}`}${q.maxBytes === null ? '' : `&maxBytes=${q.maxBytes}`}${q.encoding === null ? '' : `&encoding=${q.encoding}`}${q.format === null ? '' : `&format=${q.format}`}`)

/**
 * One request to a public route: valid, then bent by zero to three faults
 * (a method, a path segment, the query, the body, its type or length, a
 * header). Few faults at a time reach deep: a request with everything wrong
 * is refused at the first check.
 */
export const publicRequest: fc.Arbitrary<FuzzRequest> = fc
  .record({
    route: fc.constantFrom(...publicRoutes),
    faults: fc.uniqueArray(fc.constantFrom(...faultKinds), { maxLength: 3 }),
    msgpackBody: fc.boolean(),
    method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'get', 'TRACE'),
    validTopic: fc.constantFrom(scratchTopic, protectedTopic),
    topic: fc.tuple(topicName(false), spelling),
    deletableTopic: fc.tuple(topicName(true), spelling),
    validPartition: fc.constantFrom('0', '1'),
    p: fc.tuple(partitionSegment, spelling),
    group: fc.tuple(groupName, spelling),
    member: fc.tuple(memberIdSegment, spelling),
    validQuery: validFetchQuery,
    query,
    trailingSlash: fc.constantFrom('/', '//', '/.', '/..', '%2F'),
    kind: bodyKind,
    mutations: fc.array(mutation, { minLength: 1, maxLength: 3 }),
    batch: storedBatch,
    batchProducer: fc.option(fc.constantFrom(producerFields, { producerId: liveProducerMark, producerEpoch: 0, sequence: 0, producerToken: liveTokenMark }, { producerId: -1, producerEpoch: -1, sequence: -1 }, { producerId: 2 ** 53, producerEpoch: 0x8000, sequence: 2 ** 31 })),
    liveIndex: fc.nat(),
    text: hostileTexts,
    bytes: fc.oneof(fc.uint8Array({ maxLength: 200 }), hostileMsgpack),
    contentType: fc.option(fc.constantFrom(...contentTypes), { freq: 4 }),
    accept: fc.constantFrom(...accepts.filter((a) => a !== null)),
    validAccept: fc.constantFrom(null, null, 'application/msgpack'),
    extra: fc.constantFrom(...extraHeaders),
    length: fc.constantFrom<'short' | 'long' | 'none'>('short', 'long', 'none'),
  })
  .map((r) => {
    const has = (f: Fault): boolean => r.faults.includes(f)
    const seg = ([s, how]: readonly [string, number]): string => spell(s, how)
    const method = has('method') ? r.method : r.route.method
    // Any DELETE (a method fault makes one of a GET) names a topic that is not there, never the real ones.
    const deletesTopic = method.toUpperCase() === 'DELETE' && r.route.path.startsWith('/v1/topics')
    const topic = has('topic') ? seg(deletesTopic ? r.deletableTopic : r.topic) : deletesTopic ? 'fz-none' : r.validTopic
    // A valid leave names a member that is not there: the live ones keep the heartbeat route reachable.
    const member = has('member') ? seg(r.member) : r.route.deletes === true ? 'm0' : (live.members[r.liveIndex % Math.max(1, live.members.length)] ?? 'm')
    const path = r.route.path
      .replace(':topic', topic)
      .replace(':p', has('partition') ? seg(r.p) : r.validPartition)
      .replace(':group', has('group') ? seg(r.group) : 'g1')
      .replace(':member', member)
      .replace(':id', has('member') ? seg(r.member) : '0123456789abcdef')
    const isFetch = r.route.path.endsWith('/records') && r.route.method === 'GET'
    const queryText = has('query') ? r.query : isFetch ? r.validQuery : (r.route.query ?? '')
    let body: Uint8Array | undefined
    let type: string | null = null
    let batch = false
    const template = withLive(r.route.json ?? {}, r.liveIndex)
    const mutations = has('mutation') ? r.mutations : []
    const kind = has('body') ? r.kind : r.route.json === null ? 'none' : r.msgpackBody && r.route.msgpack !== undefined ? 'msgpack' : 'json'
    if (kind === 'json') {
      body = utf8(JSON.stringify(mutate(template, mutations)) ?? 'null')
      type = 'application/json'
    } else if (kind === 'msgpack') {
      body = packr.pack(mutate(r.route.msgpack === undefined ? template : withLive(r.route.msgpack, r.liveIndex), mutations))
      type = 'application/msgpack'
    } else if (kind === 'batch') {
      body = packr.pack({ batch: r.batch, ...(withLive(r.batchProducer ?? {}, r.liveIndex) as object), ...(r.liveIndex % 2 === 0 ? { acks: 'leader' } : {}) })
      type = 'application/msgpack'
      batch = true
    } else if (kind === 'text') {
      body = utf8(r.text)
      type = 'application/json'
    } else if (kind === 'bytes') {
      body = r.bytes
    }
    if (has('content-type')) type = r.contentType
    const headers: Array<[string, string]> = []
    if (type !== null) headers.push(['content-type', type])
    const accept = has('accept') ? r.accept : r.validAccept
    if (accept !== null) headers.push(['accept', accept])
    if (has('header')) headers.push([r.extra[0], r.extra[1]])
    const size = body?.byteLength ?? 0
    const contentLength = !has('length') ? undefined : r.length === 'none' ? null : r.length === 'short' ? Math.max(0, size - 1) : size + 10
    const request: FuzzRequest = {
      route: `${r.route.method} ${r.route.path}`,
      method,
      target: path + (has('slash') ? r.trailingSlash : '') + queryText,
      headers,
      ...(body === undefined ? {} : { body }),
      ...(contentLength === undefined ? {} : { contentLength }),
      ...(batch ? { batch } : {}),
      ...(has('length') && r.length === 'long' ? { truncated: true } : {}),
    }
    return request
  })

// ---- malformed HTTP -----------------------------------------------------------

/** A raw request as fast-check prints it in a report: its note and its first bytes, not all of them. */
function shown(raw: { bytes: Uint8Array; note: string }): { bytes: Uint8Array; note: string } {
  return Object.assign(raw, { [fc.toStringMethod]: () => `${raw.note}: ${JSON.stringify(Buffer.from(raw.bytes.subarray(0, 200)).toString('latin1'))} (${raw.bytes.byteLength} B)` })
}

/** Valid requests whose bytes the raw generator bends. */
const validRaw = [
  'GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
  'POST /v1/topics/fz/partitions/0/records HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 26\r\nconnection: close\r\n\r\n{"records":[{"value":"v"}]}',
  'GET /v1/topics/fz/partitions/0/records?offset=0 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
]

/** Requests that break HTTP itself: smuggling, bad lengths, bad chunks, huge headers, bad request lines, random bytes. */
export const malformedHttp: fc.Arbitrary<{ bytes: Uint8Array; note: string }> = fc.oneof(
  fc.constantFrom(
    ['GET /health HTTP/9.9\r\nhost: x\r\n\r\n', 'bad version'],
    ['get /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', 'lowercase method'],
    ['BREW /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', 'unknown method'],
    ['GET  /health  HTTP/1.1\r\nhost: x\r\n\r\n', 'extra spaces'],
    ['GET\r\n\r\n', 'no target'],
    ['GET /health\r\n\r\n', 'HTTP/0.9'],
    ['GET /he\u0000alth HTTP/1.1\r\nhost: x\r\n\r\n', 'NUL in target'],
    ['GET /health HTTP/1.1\r\nhost: x\r\nbad header\r\n\r\n', 'header without colon'],
    ['GET /health HTTP/1.1\r\nhost: x\r\nx: a\u0000b\r\n\r\n', 'NUL in header'],
    ['GET /health HTTP/1.1\nhost: x\nconnection: close\n\n', 'bare LF'],
    ['POST /v1/producers HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', 'CL and TE'],
    ['POST /v1/producers HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\n{}', 'two lengths'],
    ['POST /v1/producers HTTP/1.1\r\nhost: x\r\ncontent-length: -1\r\n\r\n{}', 'negative length'],
    ['POST /v1/producers HTTP/1.1\r\nhost: x\r\ncontent-length: 99999999999999999999\r\n\r\n{}', 'huge length'],
    ['POST /v1/producers HTTP/1.1\r\nhost: x\r\ncontent-length: 1e3\r\n\r\n{}', 'length in exponent form'],
    ['POST /v1/producers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n', 'bad chunk size'],
    ['POST /v1/producers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffff\r\n{}\r\n0\r\n\r\n', 'huge chunk size'],
    ['POST /v1/producers HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n', 'chunked, valid'],
    ['POST /v1/producers HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 'odd transfer-encoding'],
    ['POST /v1/producers HTTP/1.1\r\nhost: x\r\ntransfer-encoding: identity\r\ncontent-length: 2\r\n\r\n{}', 'identity transfer-encoding'],
    [`GET /health HTTP/1.1\r\nhost: x\r\nx: ${'a'.repeat(20_000)}\r\n\r\n`, 'header too large'],
    [`GET /${'a'.repeat(20_000)} HTTP/1.1\r\nhost: x\r\n\r\n`, 'target too large'],
    [`GET /v1/topics/${'a'.repeat(800)} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`, 'parameter too long'],
    [`GET /health HTTP/1.1\r\n${'x: y\r\n'.repeat(3000)}\r\n`, 'many headers'],
    ['GET http://x/health HTTP/1.1\r\nhost: y\r\nconnection: close\r\n\r\n', 'absolute form'],
    ['GET * HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n', 'asterisk form'],
    ['CONNECT 127.0.0.1:1 HTTP/1.1\r\nhost: x\r\n\r\n', 'CONNECT'],
    ['GET /health HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n', 'upgrade'],
    ['PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'HTTP/2 preface'],
    ['\u0016\u0003\u0001\u0000\u00a5\u0001\u0000\u0000\u00a1\u0003\u0003', 'TLS client hello'],
  ).map(([text, note]) => shown({ bytes: Buffer.from(text, 'latin1'), note })),
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((bytes) => shown({ bytes, note: 'random bytes' })),
  fc
    .record({ base: fc.constantFrom(...validRaw), flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }) })
    .map(({ base, flips }) => {
      const bytes = Buffer.from(base, 'latin1')
      for (const [at, b] of flips) bytes[at % bytes.byteLength] = b
      return shown({ bytes, note: 'mutated valid request' })
    }),
)
