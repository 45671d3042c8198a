/**
 * HTTP from this broker to the others (peer-calls.ts: controller commands,
 * the leadership poll; src/api: forwarded produces). Plaintext brokers use
 * Node's global fetch as before. With TLS on, requests go over https through
 * an undici Agent that trusts the cluster CA (so a peer's certificate is
 * checked against it and against the peer's address) and shows this
 * broker's certificate (internal routes demand one of the CA).
 *
 *   setTls(new material) ──▶ a new Agent for requests from now on;
 *                            the old one closes once its requests are done
 */
import { Agent, fetch as undiciFetch } from 'undici'
import { ErrorCode, RillError } from '../base/index.ts'
import type { TlsMaterial } from './tls.ts'

/** What a peer request may carry. */
export interface PeerRequestInit {
  readonly method?: string
  readonly headers?: Readonly<Record<string, string>>
  readonly body?: string | Uint8Array
  readonly signal?: AbortSignal
}

/** The part of a fetch Response the callers read. */
export interface PeerResponse {
  readonly ok: boolean
  readonly status: number
  text(): Promise<string>
  json(): Promise<unknown>
  arrayBuffer(): Promise<ArrayBuffer>
  /** The body as a stream, for callers that read a bounded prefix of an untrusted answer. */
  readonly body: ReadableStream<Uint8Array> | null
}

/** fetch, narrowed to what brokers send each other. */
export type PeerFetch = (url: string, init: PeerRequestInit) => Promise<PeerResponse>

/** Connections kept per peer broker by the TLS agent (requests beyond them queue in undici). */
export const peerConnectionsPerBrokerMax = 64

export class PeerHttp {
  #agent: Agent | null

  constructor(material: TlsMaterial | null) {
    this.#agent = material === null ? null : newAgent(material)
  }

  /** True if peer requests go over https. */
  get secure(): boolean {
    return this.#agent !== null
  }

  readonly fetch: PeerFetch = (url, init) => {
    const agent = this.#agent
    const body = init.body === undefined ? {} : { body: init.body }
    if (agent === null) return fetch(url, { ...init, ...body, headers: { ...init.headers } })
    return undiciFetch(url, { ...init, ...body, headers: { ...init.headers }, dispatcher: agent })
  }

  /** New material for requests made from now on; throws on a broker started without TLS. */
  setTls(material: TlsMaterial): void {
    const old = this.#agent
    if (old === null) throw new RillError(ErrorCode.INVALID_REQUEST, 'peer HTTP was started without TLS')
    this.#agent = newAgent(material)
    void old.close().catch(() => undefined)
  }

  /** Ends the agent's connections (broker stop). */
  async close(): Promise<void> {
    const agent = this.#agent
    if (agent !== null) await agent.destroy().catch(() => undefined)
  }
}

function newAgent(material: TlsMaterial): Agent {
  return new Agent({
    connections: peerConnectionsPerBrokerMax,
    connect: { ca: material.ca, cert: material.cert, key: material.key, minVersion: 'TLSv1.2' },
  })
}
