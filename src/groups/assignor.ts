/**
 * The coordinator's assignor: from the members' subscriptions and what they
 * own now, the next step towards a balanced, sticky assignment — changed
 * incrementally, as Kafka's newer consumer protocol (KIP-848) does:
 *
 *   target  = balanced (⌊P/M⌋ or ⌈P/M⌉ each), keeping what members own as far as balance allows
 *   revoke  = owned − target          → moves to `revoking` (still the member's until it confirms)
 *   assign  = target − owned, free    → only partitions nobody owns or is giving up
 *
 * A partition therefore belongs to at most one member at any time. A pure
 * function: same input, same output (members and partitions in sorted order),
 * so a repeated heartbeat does not churn the assignment.
 */

/** `topic/partition`: topic names are `[A-Za-z0-9._-]`, so the slash is unambiguous. */
export type TpKey = string

export function tpKey(topic: string, partition: number): TpKey {
  return `${topic}/${partition}`
}

export function parseTpKey(key: TpKey): { topic: string; partition: number } {
  const at = key.lastIndexOf('/')
  return { topic: key.slice(0, at), partition: Number(key.slice(at + 1)) }
}

export interface AssignorMember {
  readonly memberId: string
  readonly topics: readonly string[]
  /** Partitions the member may consume now. */
  readonly assigned: readonly TpKey[]
  /** Partitions taken from it that it has not confirmed giving up (still its own). */
  readonly revoking: readonly TpKey[]
}

export interface AssignorResult {
  readonly memberId: string
  readonly assigned: TpKey[]
  readonly revoking: TpKey[]
}

/**
 * One step of the assignment. `partitionCount(topic)` is 0 for a topic that
 * does not exist (its partitions are revoked like any other).
 */
export function assignStep(members: readonly AssignorMember[], partitionCount: (topic: string) => number): AssignorResult[] {
  const sorted = [...members].sort((a, b) => (a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0))
  const counts = new Map<string, number>()
  for (const m of sorted) for (const t of m.topics) if (!counts.has(t)) counts.set(t, Math.max(0, partitionCount(t)))
  const all: TpKey[] = []
  for (const [t, n] of [...counts].sort((a, b) => (a[0] < b[0] ? -1 : 1))) for (let p = 0; p < n; p++) all.push(tpKey(t, p))

  const eligible = (m: AssignorMember, key: TpKey): boolean => {
    const { topic, partition } = parseTpKey(key)
    return m.topics.includes(topic) && partition < (counts.get(topic) ?? 0)
  }

  // Caps: ⌊P/M⌋ each, one more for the first P mod M members by what they own now (sticky).
  const base = sorted.length === 0 ? 0 : Math.floor(all.length / sorted.length)
  const extra = sorted.length === 0 ? 0 : all.length % sorted.length
  const valid = new Map(sorted.map((m) => [m.memberId, m.assigned.filter((k) => eligible(m, k)).sort()]))
  const byOwned = [...sorted].sort((a, b) => valid.get(b.memberId)!.length - valid.get(a.memberId)!.length)
  const cap = new Map<string, number>()
  byOwned.forEach((m, i) => cap.set(m.memberId, base + (i < extra ? 1 : 0)))

  // Target: what each keeps within its cap, then free partitions to the eligible member with the fewest.
  const target = new Map<string, Set<TpKey>>()
  const taken = new Set<TpKey>()
  for (const m of sorted) {
    const keep = valid.get(m.memberId)!.slice(0, cap.get(m.memberId))
    target.set(m.memberId, new Set(keep))
    for (const k of keep) taken.add(k)
  }
  for (const key of all) {
    if (taken.has(key)) continue
    let best: AssignorMember | null = null
    let bestUnderCap = false
    for (const m of sorted) {
      if (!eligible(m, key)) continue
      const n = target.get(m.memberId)!.size
      const underCap = n < cap.get(m.memberId)!
      if (best === null || (underCap && !bestUnderCap) || (underCap === bestUnderCap && n < target.get(best.memberId)!.size)) {
        best = m
        bestUnderCap = underCap
      }
    }
    if (best === null) continue
    target.get(best.memberId)!.add(key)
    taken.add(key)
  }

  // Revoke first; assign only what nobody holds (assigned or giving up).
  const results = sorted.map((m) => {
    const t = target.get(m.memberId)!
    const assigned = m.assigned.filter((k) => t.has(k))
    const revoking = new Set(m.revoking)
    for (const k of m.assigned) if (!t.has(k)) revoking.add(k)
    return { memberId: m.memberId, target: t, assigned, revoking }
  })
  const held = new Map<TpKey, string>()
  for (const r of results) {
    for (const k of r.assigned) held.set(k, r.memberId)
    for (const k of r.revoking) held.set(k, r.memberId)
  }
  for (const r of results) {
    for (const k of [...r.target].sort()) {
      if (r.assigned.includes(k)) continue
      const holder = held.get(k)
      if (holder !== undefined && holder !== r.memberId) continue
      // Free, or being given up by this very member (the target moved back): it is its own again.
      r.assigned.push(k)
      r.revoking.delete(k)
      held.set(k, r.memberId)
    }
  }
  return results.map((r) => ({ memberId: r.memberId, assigned: r.assigned.sort(), revoking: [...r.revoking].sort() }))
}
