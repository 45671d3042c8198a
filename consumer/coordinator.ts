/**
 * Routes a group's requests to its coordinator: the leader of the group's
 * `__consumer_offsets` partition (docs/groups.md). Any broker takes a group
 * request and answers 421 NOT_LEADER naming the coordinator; this follows
 * it (at most `redirectsMax` hops per request) and remembers it. Unreachable
 * or leaderless: forget it and ask any broker next time.
 */
import { ClientErrorCode, RillClientError, type HttpRequest, type RillClient } from '../client/index.ts'

/** Hops followed per request: the 421 naming the coordinator, then maybe a move during an election. */
const redirectsMax = 3

export class Coordinator {
  readonly #client: RillClient
  /** Base URL of the coordinator as last learned; null: ask any broker. */
  #url: string | null = null

  constructor(client: RillClient) {
    this.#client = client
  }

  async request<T>(req: Omit<HttpRequest, 'url'>): Promise<T> {
    for (let hop = 0; ; hop++) {
      const url = this.#url
      try {
        return url === null ? await this.#client.requestAny<T>(req) : await this.#client.request<T>({ ...req, url })
      } catch (error) {
        if (!(error instanceof RillClientError)) throw error
        const leader = error.leader
        if (leader !== undefined && leader !== null && hop < redirectsMax) {
          this.#url = leader.url
          continue
        }
        const lost = error.code === ClientErrorCode.NOT_LEADER || error.code === ClientErrorCode.UNREACHABLE || error.code === ClientErrorCode.TIMEOUT
        if (lost) this.#url = null
        throw error
      }
    }
  }
}
