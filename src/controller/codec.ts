/**
 * Commands on the wire: msgpack bytes in the controller's Raft entries.
 *
 * The decoder is strict: the bytes must be one msgpack value, a plain object
 * whose `type` names a command, with exactly that command's fields, each of
 * the right type and in range. Anything else is a RillError INVALID_REQUEST;
 * the decoder never throws anything else and never crashes on junk. The same
 * shape check (`parseCommand`) guards commands built in memory, so a command
 * that reached the log has passed it at least twice.
 */
import { Packr } from 'msgpackr'
import { ErrorCode, RillError } from '../base/index.ts'
import { aclProblem, tokenHashPattern, tokenIdPattern, principalPattern, type AclEntry } from './acl.ts'
import type {
  BrokerId,
  Command,
  CreatePartitions,
  CreateTopic,
  ReassignPartition,
  RegisterBroker,
  TopicConfig,
} from './types.ts'
import {
  brokerIdMax,
  commandBytesMax,
  CommandType,
  keepForever,
  partitionsPerTopicMax,
  Persistence,
  rackCharsMax,
  replicationFactorMax,
  topicNameCharsMax,
  urlCharsMax,
} from './types.ts'

/** Plain maps and arrays only: no records, no extension types, numbers as numbers. */
const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: 'number' })

/** Encodes a command (after checking its shape) as msgpack. */
export function encodeCommand(cmd: Command): Uint8Array {
  const clean = parseCommand(cmd)
  const bytes = packr.pack(clean)
  if (bytes.byteLength > commandBytesMax) {
    throw invalid(`command is ${bytes.byteLength} bytes, more than ${commandBytesMax}`, 'command')
  }
  return new Uint8Array(bytes)
}

/** Decodes and shape-checks a command; bad bytes are INVALID_REQUEST. */
export function decodeCommand(bytes: Uint8Array): Command {
  if (bytes.byteLength === 0) throw invalid('empty command', 'command')
  if (bytes.byteLength > commandBytesMax) throw invalid(`command is ${bytes.byteLength} bytes, more than ${commandBytesMax}`, 'command')
  let value: unknown
  try {
    // A copy: msgpackr caches a DataView as a property of the buffer it reads, and the caller's bytes stay untouched.
    value = packr.unpack(new Uint8Array(bytes))
  } catch (cause) {
    throw new RillError(ErrorCode.INVALID_REQUEST, 'command is not valid msgpack', { cause, details: { field: 'command' } })
  }
  return parseCommand(value)
}

/**
 * Checks that `value` is a well-formed command and returns a fresh copy with
 * only its known fields (state-independent rules: types, ranges, names).
 */
export function parseCommand(value: unknown): Command {
  const o = plainObject(value, 'command')
  switch (o['type']) {
    case CommandType.RegisterBroker:
      return parseRegisterBroker(o)
    case CommandType.FenceBroker:
    case CommandType.UnfenceBroker:
    case CommandType.DecommissionBroker:
    case CommandType.RecommissionBroker:
    case CommandType.UnregisterBroker:
      onlyKeys(o, ['type', 'id'])
      return { type: o['type'], id: brokerId(o['id'], 'id') }
    case CommandType.CreateTopic:
      return parseCreateTopic(o)
    case CommandType.DeleteTopic:
      onlyKeys(o, ['type', 'name'])
      return { type: CommandType.DeleteTopic, name: topicName(o['name']) }
    case CommandType.CreatePartitions:
      return parseCreatePartitions(o)
    case CommandType.UpdateTopicConfig:
      onlyKeys(o, ['type', 'name', 'config'])
      return { type: CommandType.UpdateTopicConfig, name: topicName(o['name']), config: parseTopicConfig(o['config']) }
    case CommandType.ReassignPartition:
      return parseReassignPartition(o)
    case CommandType.CreateToken:
      onlyKeys(o, ['type', 'id', 'principal', 'hash', 'createdMs'])
      return {
        type: CommandType.CreateToken,
        id: tokenId(o['id']),
        principal: principal(o['principal']),
        hash: patterned(o['hash'], 'hash', tokenHashPattern, '64 hex digits'),
        createdMs: integer(o['createdMs'], 'createdMs', 0, Number.MAX_SAFE_INTEGER),
      }
    case CommandType.RevokeToken:
      onlyKeys(o, ['type', 'id'])
      return { type: CommandType.RevokeToken, id: tokenId(o['id']) }
    case CommandType.AddAcl:
    case CommandType.RemoveAcl:
      onlyKeys(o, ['type', 'acl'])
      return { type: o['type'], acl: parseAcl(o['acl']) }
    default:
      throw invalid(`unknown command type ${describe(o['type'])}`, 'type')
  }
}

function parseRegisterBroker(o: Record<string, unknown>): RegisterBroker {
  onlyKeys(o, ['type', 'id', 'httpUrl', 'peerUrl', 'rack'])
  const cmd: { -readonly [K in keyof RegisterBroker]: RegisterBroker[K] } = {
    type: CommandType.RegisterBroker,
    id: brokerId(o['id'], 'id'),
    httpUrl: httpUrl(o['httpUrl']),
    peerUrl: peerUrl(o['peerUrl']),
  }
  if (o['rack'] !== undefined) cmd.rack = rack(o['rack'])
  return cmd
}

function parseCreateTopic(o: Record<string, unknown>): CreateTopic {
  onlyKeys(o, ['type', 'name', 'partitions', 'replicationFactor', 'config', 'assignment'])
  const name = topicName(o['name'])
  const partitions = checkPartitionCount(o['partitions'])
  const replicationFactor = checkReplicationFactor(o['replicationFactor'])
  const config = parseTopicConfig(o['config'])
  const assignment = replicaLists(o['assignment'], 'assignment')
  if (assignment.length !== partitions) {
    throw invalid(`assignment has ${assignment.length} replica lists for ${partitions} partitions`, 'assignment')
  }
  for (const replicas of assignment) {
    if (replicas.length !== replicationFactor) {
      throw invalid(`assignment has a replica list of ${replicas.length} for replication factor ${replicationFactor}`, 'assignment')
    }
  }
  return { type: CommandType.CreateTopic, name, partitions, replicationFactor, config, assignment }
}

function parseCreatePartitions(o: Record<string, unknown>): CreatePartitions {
  onlyKeys(o, ['type', 'name', 'partitions', 'assignment'])
  const name = topicName(o['name'])
  const partitions = checkPartitionCount(o['partitions'])
  const assignment = replicaLists(o['assignment'], 'assignment')
  if (assignment.length === 0 || assignment.length >= partitions) {
    throw invalid(`assignment of ${assignment.length} new partitions does not fit a total of ${partitions}`, 'assignment')
  }
  return { type: CommandType.CreatePartitions, name, partitions, assignment }
}

function parseReassignPartition(o: Record<string, unknown>): ReassignPartition {
  onlyKeys(o, ['type', 'topic', 'partition', 'replicas', 'topicId', 'epoch'])
  const cmd: { -readonly [K in keyof ReassignPartition]: ReassignPartition[K] } = {
    type: CommandType.ReassignPartition,
    topic: topicName(o['topic'], 'topic'),
    partition: partitionIndex(o['partition']),
    replicas: replicaList(o['replicas'], 'replicas'),
  }
  if (o['topicId'] !== undefined) cmd.topicId = integer(o['topicId'], 'topicId', 0, Number.MAX_SAFE_INTEGER)
  if (o['epoch'] !== undefined) cmd.epoch = integer(o['epoch'], 'epoch', 0, Number.MAX_SAFE_INTEGER)
  return cmd
}

// ---------------------------------------------------------------- field rules (exported for the API layer)

const topicNamePattern = /^[a-zA-Z0-9._-]+$/

/** Kafka's rules: 1..249 of [a-zA-Z0-9._-], and not "." or "..". */
export function topicName(value: unknown, field = 'name'): string {
  if (typeof value !== 'string') throw invalid(`${field} must be a string`, field)
  if (value.length === 0 || value.length > topicNameCharsMax) {
    throw invalid(`topic name must be 1..${topicNameCharsMax} characters, got ${value.length}`, field)
  }
  if (!topicNamePattern.test(value)) throw invalid(`topic name ${JSON.stringify(value)} may only contain [a-zA-Z0-9._-]`, field)
  if (value === '.' || value === '..') throw invalid(`topic name cannot be "${value}"`, field)
  return value
}

/** Partition count of a topic: 1..partitionsPerTopicMax. */
export function checkPartitionCount(value: unknown): number {
  return integer(value, 'partitions', 1, partitionsPerTopicMax)
}

/** Replication factor (shape only; the live-broker bound needs the state): 1..replicationFactorMax. */
export function checkReplicationFactor(value: unknown): number {
  return integer(value, 'replicationFactor', 1, replicationFactorMax)
}

/** A topic config: persistence required, retention optional (-1: keep forever, as in Kafka; else a positive integer); no other keys. */
export function parseTopicConfig(value: unknown): TopicConfig {
  const o = plainObject(value, 'config')
  onlyKeys(o, ['persistence', 'retentionMs', 'retentionBytes'], 'config')
  const persistence = o['persistence']
  if (persistence !== Persistence.Sync && persistence !== Persistence.Async && persistence !== Persistence.Memory) {
    throw invalid(`config.persistence must be sync, async or memory, got ${describe(persistence)}`, 'config.persistence')
  }
  const config: { -readonly [K in keyof TopicConfig]: TopicConfig[K] } = { persistence }
  if (o['retentionMs'] !== undefined) config.retentionMs = retention(o['retentionMs'], 'config.retentionMs')
  if (o['retentionBytes'] !== undefined) config.retentionBytes = retention(o['retentionBytes'], 'config.retentionBytes')
  return config
}

/** A retention bound: `keepForever` (-1, what docs/api.md and Kafka's retention.ms say), or a positive integer. */
function retention(value: unknown, field: string): number {
  if (value === keepForever) return keepForever
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > Number.MAX_SAFE_INTEGER) {
    throw invalid(`${field} must be -1 (keep forever) or an integer in 1..${Number.MAX_SAFE_INTEGER}, got ${describe(value)}`, field)
  }
  return value
}

export function brokerId(value: unknown, field: string): BrokerId {
  return integer(value, field, 1, brokerIdMax)
}

function partitionIndex(value: unknown): number {
  return integer(value, 'partition', 0, partitionsPerTopicMax - 1)
}

export function httpUrl(value: unknown): string {
  const s = boundedString(value, 'httpUrl', urlCharsMax)
  let url: URL
  try {
    url = new URL(s)
  } catch {
    throw invalid(`httpUrl ${JSON.stringify(s)} is not a URL`, 'httpUrl')
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw invalid(`httpUrl must be http(s), got ${url.protocol}`, 'httpUrl')
  return s
}

const peerUrlPattern = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9._-]+):([0-9]{1,5})$/

/** `host:port` (IPv6 hosts in brackets), port 1..65535. */
export function peerUrl(value: unknown): string {
  const s = boundedString(value, 'peerUrl', urlCharsMax)
  const m = peerUrlPattern.exec(s)
  const port = m === null ? 0 : Number(m[2])
  if (port < 1 || port > 65535) throw invalid(`peerUrl ${JSON.stringify(s)} is not host:port`, 'peerUrl')
  return s
}

const rackPattern = /^[\x21-\x7e]+$/

export function rack(value: unknown): string {
  const s = boundedString(value, 'rack', rackCharsMax)
  if (!rackPattern.test(s)) throw invalid('rack must be printable ASCII without spaces', 'rack')
  return s
}

function replicaLists(value: unknown, field: string): BrokerId[][] {
  if (!Array.isArray(value)) throw invalid(`${field} must be an array`, field)
  if (value.length > partitionsPerTopicMax) throw invalid(`${field} has more than ${partitionsPerTopicMax} entries`, field)
  const out: BrokerId[][] = []
  for (const replicas of value) out.push(replicaList(replicas, field))
  return out
}

/** 1..replicationFactorMax distinct broker ids. */
export function replicaList(value: unknown, field: string): BrokerId[] {
  if (!Array.isArray(value)) throw invalid(`${field}: a replica list must be an array`, field)
  if (value.length === 0 || value.length > replicationFactorMax) {
    throw invalid(`${field}: a replica list must have 1..${replicationFactorMax} brokers, got ${value.length}`, field)
  }
  const out: BrokerId[] = []
  for (const id of value) {
    const b = brokerId(id, field)
    if (out.includes(b)) throw invalid(`${field}: broker ${b} appears twice in one replica list`, field)
    out.push(b)
  }
  return out
}

/** A token id: 16 hex digits. */
export function tokenId(value: unknown, field = 'id'): string {
  return patterned(value, field, tokenIdPattern, '16 hex digits')
}

/** A principal name (acl.ts principalPattern). */
export function principal(value: unknown, field = 'principal'): string {
  return patterned(value, field, principalPattern, 'a principal: 1..255 of [A-Za-z0-9 ._@:=+/-], starting with a letter or digit')
}

function patterned(value: unknown, field: string, pattern: RegExp, what: string): string {
  if (typeof value !== 'string' || !pattern.test(value)) throw invalid(`${field} must be ${what}`, field)
  return value
}

/** An ACL entry with exactly its five fields, each well formed (acl.ts aclProblem). */
export function parseAcl(value: unknown, field = 'acl'): AclEntry {
  const o = plainObject(value, field)
  onlyKeys(o, ['principal', 'resourceType', 'resourceName', 'patternType', 'operation'], field)
  const acl = {
    principal: o['principal'],
    resourceType: o['resourceType'],
    resourceName: o['resourceName'],
    patternType: o['patternType'],
    operation: o['operation'],
  } as AclEntry
  const problem = aclProblem(acl)
  if (problem !== null) throw invalid(problem.message, problem.field)
  return acl
}

// ---------------------------------------------------------------- primitives

export function plainObject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(`${field} must be an object`, field)
  const proto: unknown = Object.getPrototypeOf(value)
  if (proto !== Object.prototype && proto !== null) throw invalid(`${field} must be a plain object`, field)
  return value as Record<string, unknown>
}

export function onlyKeys(o: Record<string, unknown>, allowed: readonly string[], field = 'command'): void {
  for (const key of Object.keys(o)) {
    // An explicit undefined is what an optional field looks like in memory; msgpack has no undefined.
    if (!allowed.includes(key) && o[key] !== undefined) throw invalid(`${field} has an unknown field ${JSON.stringify(key)}`, field)
  }
}

export function integer(value: unknown, field: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw invalid(`${field} must be an integer in ${min}..${max}, got ${describe(value)}`, field)
  }
  return value
}

export function boundedString(value: unknown, field: string, charsMax: number): string {
  if (typeof value !== 'string' || value.length === 0 || value.length > charsMax) {
    throw invalid(`${field} must be a string of 1..${charsMax} characters`, field)
  }
  return value
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}...` : value)
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value)
  return typeof value
}

/** An INVALID_REQUEST naming the offending field. */
export function invalid(message: string, field: string, details: Record<string, unknown> = {}): RillError {
  return new RillError(ErrorCode.INVALID_REQUEST, message, { details: { field, ...details } })
}
