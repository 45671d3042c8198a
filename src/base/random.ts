/**
 * Randomness comes in through this interface so that the Raft core and the
 * simulator are deterministic: the same seed gives the same run.
 */
export interface Random {
  /** A float in [0, 1). */
  next(): number
  /** An integer in [0, n). n must be a positive integer. */
  int(n: number): number
}

/**
 * sfc32 seeded through splitmix32: fast, small state, good enough statistics
 * for timeouts and fault schedules. Not for secrets (use sodium-native).
 */
export class SeededRandom implements Random {
  #a: number
  #b: number
  #c: number
  #d: number

  constructor(seed: number) {
    let s = seed >>> 0
    const split = (): number => {
      s = (s + 0x9e3779b9) | 0
      let z = s
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
      return (z ^ (z >>> 16)) >>> 0
    }
    this.#a = split()
    this.#b = split()
    this.#c = split()
    this.#d = split()
    for (let i = 0; i < 12; i++) this.#u32()
  }

  #u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0
    this.#d = (this.#d + 1) | 0
    this.#a = this.#b ^ (this.#b >>> 9)
    this.#b = (this.#c + (this.#c << 3)) | 0
    this.#c = (this.#c << 21) | (this.#c >>> 11)
    this.#c = (this.#c + t) | 0
    return t >>> 0
  }

  next(): number {
    return this.#u32() / 4294967296
  }

  int(n: number): number {
    return Math.floor(this.next() * n)
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.next() < p
  }

  /** A fresh generator derived from this one (independent streams per component). */
  fork(): SeededRandom {
    return new SeededRandom(this.#u32())
  }
}
