/**
 * Time comes in through this interface outside the Raft core (which sees only
 * ticks). The broker passes the system clock; the simulator a virtual one.
 */
export interface Clock {
  /** Milliseconds since an arbitrary epoch; never goes backwards. */
  nowMs(): number
}

/** The process's monotonic clock. */
export const systemClock: Clock = {
  nowMs: () => performance.now(),
}
