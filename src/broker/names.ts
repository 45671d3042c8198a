/**
 * The numbers and names every part of a broker agrees on: which Raft group
 * a peer message belongs to (the controller's, or one partition's), and
 * which topics are the broker's own. They live apart so that the parts that
 * route, host and answer for groups share them without importing each other.
 */

/** The controller's Raft group id on the wire. */
export const controllerGroupId = 0
/** Partition group ids: topicId · 2^16 + partition (partitions per topic stay below 2^16). */
export const partitionGroupStride = 65536

/** The Raft group id of one partition on the wire. */
export function groupIdOf(topicId: number, partition: number): number {
  return topicId * partitionGroupStride + partition
}

/** The internal topic holding consumer groups (docs/groups.md). */
export const offsetsTopic = '__consumer_offsets'

/** Topics whose names start with `__` are the broker's own. */
export function isInternalTopic(name: string): boolean {
  return name.startsWith('__')
}
