/**
 * Majority arithmetic over a voter set (etcd's quorum package, single config).
 */
import type { LogIndex, NodeId } from './types.ts'

export function quorumSize(voters: number): number {
  return Math.floor(voters / 2) + 1
}

/**
 * The largest value that a majority of voters has reached: sort the voters'
 * values descending and take the quorum-th. Voters without a value count as 0.
 */
export function committedIndex(voters: ReadonlySet<NodeId>, valueOf: (id: NodeId) => LogIndex): LogIndex {
  const n = voters.size
  if (n === 0) return 0
  const values: number[] = []
  for (const id of voters) values.push(valueOf(id))
  values.sort((a, b) => b - a)
  return values[quorumSize(n) - 1]!
}

export const VoteResult = {
  Pending: 0,
  Won: 1,
  Lost: 2,
} as const
export type VoteResult = (typeof VoteResult)[keyof typeof VoteResult]

export function voteResult(voters: ReadonlySet<NodeId>, votes: ReadonlyMap<NodeId, boolean>): VoteResult {
  const q = quorumSize(voters.size)
  let granted = 0
  let rejected = 0
  for (const id of voters) {
    const v = votes.get(id)
    if (v === true) granted++
    else if (v === false) rejected++
  }
  if (granted >= q) return VoteResult.Won
  if (rejected > voters.size - q) return VoteResult.Lost
  return VoteResult.Pending
}
