/**
 * A binary min-heap of timed events, ordered by (time, sequence) so events
 * at the same virtual time run in the order they were scheduled: the
 * simulator's only source of ordering, hence its determinism.
 */
export interface TimedEvent {
  readonly timeMs: number
  readonly seq: number
  readonly run: () => void
}

export class EventHeap {
  #items: TimedEvent[] = []

  get size(): number {
    return this.#items.length
  }

  peek(): TimedEvent | undefined {
    return this.#items[0]
  }

  push(e: TimedEvent): void {
    const a = this.#items
    a.push(e)
    let i = a.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!before(a[i]!, a[p]!)) break
      ;[a[i], a[p]] = [a[p]!, a[i]!]
      i = p
    }
  }

  pop(): TimedEvent | undefined {
    const a = this.#items
    if (a.length === 0) return undefined
    const top = a[0]!
    const last = a.pop()!
    if (a.length > 0) {
      a[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < a.length && before(a[l]!, a[m]!)) m = l
        if (r < a.length && before(a[r]!, a[m]!)) m = r
        if (m === i) break
        ;[a[i], a[m]] = [a[m]!, a[i]!]
        i = m
      }
    }
    return top
  }
}

function before(a: TimedEvent, b: TimedEvent): boolean {
  return a.timeMs < b.timeMs || (a.timeMs === b.timeMs && a.seq < b.seq)
}
