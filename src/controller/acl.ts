/**
 * Access control lists and bearer tokens as the controller's replicated
 * metadata holds them: their shapes, the rules a well-formed one follows,
 * and the matcher that answers "may this principal do this to that".
 *
 *   ACL: principal P may OPERATION on RESOURCE-TYPE NAME (literal | prefixed)
 *
 *   resource type │ operations
 *   ──────────────┼──────────────────────────────────────────────────────────
 *   topic         │ produce, consume, describe, create, delete, all
 *   group         │ read (join, heartbeat, leave, commit offsets), describe, all
 *   cluster       │ create (any topic), delete (any topic), alter (ACLs, tokens), describe, all
 *
 * Allow-only, as a Kafka operator writes most ACLs: with authentication on,
 * what no ACL allows is denied. `describe` on a topic or group is implied
 * by any other operation on it (Kafka's rule: who may write a topic may see
 * it). A literal name `*` is every resource of its type; a prefixed name
 * matches names starting with it. Pure: no I/O, no clock.
 */
import { nameCharsMax } from '../wire/index.ts'

export const ResourceType = { Topic: 'topic', Group: 'group', Cluster: 'cluster' } as const
export type ResourceType = (typeof ResourceType)[keyof typeof ResourceType]
export const resourceTypes: readonly ResourceType[] = ['topic', 'group', 'cluster']

export type PatternType = 'literal' | 'prefixed'
export const patternTypes: readonly PatternType[] = ['literal', 'prefixed']

/** Operations by resource type (`all` is every operation of its type). */
export const operationsOf = {
  topic: ['produce', 'consume', 'describe', 'create', 'delete', 'all'],
  group: ['read', 'describe', 'all'],
  cluster: ['create', 'delete', 'alter', 'describe', 'all'],
} as const satisfies Record<ResourceType, readonly string[]>

export type TopicOperation = (typeof operationsOf.topic)[number]
export type GroupOperation = (typeof operationsOf.group)[number]
export type ClusterOperation = (typeof operationsOf.cluster)[number]
export type Operation = TopicOperation | GroupOperation | ClusterOperation

/** The one name the cluster resource has. */
export const clusterResourceName = 'cluster'
/** A literal name matching every resource of its type. */
export const wildcardName = '*'

/** One allow rule. */
export interface AclEntry {
  readonly principal: string
  readonly resourceType: ResourceType
  /** A topic or group name (or prefix), `*`, or `cluster` for the cluster. */
  readonly resourceName: string
  readonly patternType: PatternType
  readonly operation: Operation
}

/** A resource a request touches. */
export interface Resource {
  readonly type: ResourceType
  /** Topic or group name; `cluster` for the cluster. */
  readonly name: string
}

/** A token as the metadata holds it: never the token itself, only its keyed hash. */
export interface TokenInfo {
  /** 16 hex digits, public (shown in lists, part of the token). */
  readonly id: string
  readonly principal: string
  /** Keyed hash of the token's secret part, 64 hex digits (src/broker/tokens.ts). */
  readonly hash: string
  /** When it was issued, ms since the epoch (wall clock of the broker that issued it). */
  readonly createdMs: number
}

// ---------------------------------------------------------------- bounds

/** ACL entries in the cluster. */
export const aclsMax = 10_000
/** Tokens in the cluster. */
export const tokensMax = 10_000
/** Longest principal name (a certificate's CN is at most 64; token principals are chosen). */
export const principalCharsMax = 255
/** Principals: printable ASCII from a letter or digit, no comma (lists of them are comma-separated). */
export const principalPattern = /^[A-Za-z0-9][A-Za-z0-9 ._@:=+/-]{0,254}$/
export const tokenIdPattern = /^[0-9a-f]{16}$/
export const tokenHashPattern = /^[0-9a-f]{64}$/
const resourceNamePattern = /^[a-zA-Z0-9._-]+$/

/** Why `acl` is not well formed (field and message), or null. */
export function aclProblem(acl: AclEntry): { field: string; message: string } | null {
  if (typeof acl.principal !== 'string' || !principalPattern.test(acl.principal)) {
    return { field: 'principal', message: `principal must be 1..${principalCharsMax} of [A-Za-z0-9 ._@:=+/-], starting with a letter or digit` }
  }
  if (!resourceTypes.includes(acl.resourceType)) return { field: 'resourceType', message: `resourceType must be one of ${resourceTypes.join(', ')}` }
  if (!patternTypes.includes(acl.patternType)) return { field: 'patternType', message: `patternType must be one of ${patternTypes.join(', ')}` }
  const ops: readonly string[] = operationsOf[acl.resourceType]
  if (!ops.includes(acl.operation)) return { field: 'operation', message: `operation on a ${acl.resourceType} must be one of ${ops.join(', ')}` }
  const name = acl.resourceName
  if (acl.resourceType === 'cluster') {
    if (name !== clusterResourceName || acl.patternType !== 'literal') return { field: 'resourceName', message: 'the cluster resource is named "cluster", literal' }
    return null
  }
  if (name === wildcardName && acl.patternType === 'literal') return null
  if (typeof name !== 'string' || name.length === 0 || name.length > nameCharsMax || !resourceNamePattern.test(name)) {
    return { field: 'resourceName', message: `resourceName must be "*" or 1..${nameCharsMax} of [a-zA-Z0-9._-]` }
  }
  return null
}

/** True if `a` and `b` are the same rule. */
export function sameAcl(a: AclEntry, b: AclEntry): boolean {
  return a.principal === b.principal && a.resourceType === b.resourceType && a.resourceName === b.resourceName && a.patternType === b.patternType && a.operation === b.operation
}

/** Total order of ACLs (principal, type, name, pattern, operation): snapshots and lists are sorted by it. */
export function compareAcls(a: AclEntry, b: AclEntry): number {
  const ka = [a.principal, a.resourceType, a.resourceName, a.patternType, a.operation]
  const kb = [b.principal, b.resourceType, b.resourceName, b.patternType, b.operation]
  for (let i = 0; i < ka.length; i++) {
    if (ka[i]! < kb[i]!) return -1
    if (ka[i]! > kb[i]!) return 1
  }
  return 0
}

function nameMatches(acl: AclEntry, name: string): boolean {
  if (acl.patternType === 'prefixed') return name.startsWith(acl.resourceName)
  return acl.resourceName === wildcardName || acl.resourceName === name
}

function operationCovers(granted: Operation, wanted: Operation): boolean {
  // Whoever may do anything to a topic or group may see it (Kafka: READ, WRITE, DELETE imply DESCRIBE).
  return granted === 'all' || granted === wanted || wanted === 'describe'
}

/**
 * True if one of `acls` lets `principal` do `operation` on `resource`.
 * Super-users are the caller's business (they need no ACL).
 */
export function aclAllows(acls: Iterable<AclEntry>, principal: string, operation: Operation, resource: Resource): boolean {
  for (const acl of acls) {
    if (acl.principal !== principal || acl.resourceType !== resource.type) continue
    if (!nameMatches(acl, resource.name)) continue
    if (operationCovers(acl.operation, operation)) return true
  }
  return false
}
