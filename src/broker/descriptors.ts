/**
 * File descriptors: how many this process has open and may open (issue 10,
 * hole 4). With 1,024 descriptors, idle HTTP connections took them all; a
 * topic created meanwhile never got this broker's replicas (their logs
 * could not be opened) while `rill status` showed the broker in sync, and
 * a 1,200-partition topic answered 201 with 276 partitions that never got
 * a leader. Replicas are now opened only while the descriptors left stay
 * above a reserve (kept for connections, peer links, segment rolls and
 * snapshots); one that does not fit is reported offline and retried.
 *
 * On Linux the count is the entries of /proc/self/fd and the limit the soft
 * "Max open files" of /proc/self/limits (RLIMIT_NOFILE); elsewhere, or with
 * no limit, nothing is known and nothing is refused for it.
 */
import { readFileSync, readdirSync } from 'node:fs'

/** Descriptors open now and the most this process may have open. */
export interface DescriptorUse {
  readonly open: number
  readonly limit: number
}

/** Reads the descriptor use now; null when it cannot be known (not Linux, no limit). */
export type DescriptorProbe = () => DescriptorUse | null

/** Descriptors one replica holds open: its log's segment and index, its snapshot, one spare for a segment roll. */
export const descriptorsPerReplica = 4
/** Descriptors never handed to replicas: at least this many, or `descriptorsReserveFraction` of the limit if more. */
export const descriptorsReserveMin = 64
export const descriptorsReserveFraction = 1 / 8

/** The descriptors kept free of replicas under `limit`. */
export function descriptorsReserve(limit: number): number {
  return Math.max(descriptorsReserveMin, Math.floor(limit * descriptorsReserveFraction))
}

/** Replicas that may still open without eating into the reserve (0 or more); Infinity when nothing is known. */
export function replicasThatFit(use: DescriptorUse | null): number {
  if (use === null) return Number.POSITIVE_INFINITY
  return Math.max(0, Math.floor((use.limit - descriptorsReserve(use.limit) - use.open) / descriptorsPerReplica))
}

/** The soft RLIMIT_NOFILE from /proc/self/limits, or null (not Linux, unlimited, unreadable). */
export function descriptorLimit(): number | null {
  let text: string
  try {
    text = readFileSync('/proc/self/limits', 'utf8')
  } catch {
    return null
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text)
  if (m === null || m[1] === 'unlimited') return null
  return Number(m[1])
}

/** The real process's descriptors, from /proc (Linux). */
export const procDescriptors: DescriptorProbe = () => {
  const limit = descriptorLimit()
  if (limit === null) return null
  try {
    // The directory's own descriptor is counted too: one more than open before the call, on the safe side.
    return { open: readdirSync('/proc/self/fd').length, limit }
  } catch {
    return null
  }
}

/** Knows nothing, refuses nothing: the simulator's (its brokers share one real process). */
export const noDescriptorProbe: DescriptorProbe = () => null
