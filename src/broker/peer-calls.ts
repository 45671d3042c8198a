/**
 * Calls one broker makes to another outside Raft: forwarding a controller
 * command to the controller leader (registration, topic create/delete, the
 * offsets topic) and polling which partitions a broker leads. On a real
 * machine they are HTTP requests MACed with the cluster secret
 * (`httpPeerCalls`), over https with the cluster CA when TLS is on
 * (peer-http.ts); the simulator routes them to the target broker's
 * methods through its faulty network (src/sim), so the code that decides
 * when and where to forward is the same in both.
 *
 * Every call has a deadline (`timeoutMs`); a broker that cannot be reached
 * is a NO_QUORUM RillError (retriable), a refusal carries the remote code.
 */
import { ErrorCode, RillError, systemRuntime, timeoutSignal, type Runtime } from '../base/index.ts'
import type { CreateTopicRequest } from '../wire/index.ts'
import type { SecurityCommand } from './security.ts'
import { internalHeaders, type IdentityAnswer } from './internal-auth.ts'
import type { PeerFetch, PeerResponse } from './peer-http.ts'

/** A broker's registration: who it is and where it listens. */
export interface BrokerRegistration {
  readonly id: number
  readonly httpUrl: string
  readonly peerUrl: string
  readonly rack?: string
  /** The registering process's incarnation (internal-auth.ts): a move of a live broker is refused unless it is that broker. */
  readonly incarnation: string
}

/** A command for the controller leader. */
export type ControllerCall =
  | { readonly kind: 'registerBroker'; readonly request: BrokerRegistration }
  | { readonly kind: 'createTopic'; readonly request: CreateTopicRequest }
  | { readonly kind: 'createOffsetsTopic' }
  | { readonly kind: 'deleteTopic'; readonly name: string }
  /** A token or ACL change, built (and authorized) on the broker the client asked. */
  | { readonly kind: 'security'; readonly command: SecurityCommand }

/** A partition group this broker leads, with its high watermark. */
export interface Leadership {
  readonly group: number
  readonly highWatermark: number
}

/**
 * One broker's view of a topic (topic-readiness.ts): whether its metadata
 * has it, and for each partition it hosts, the leader its replica follows
 * (itself once it leads and is ready; 0: not open yet, or no leader known).
 */
export interface TopicStatus {
  readonly known: boolean
  readonly partitions: readonly { readonly partition: number; readonly leader: number }[]
}

/** Partitions read from one topic-status answer (more than a topic may have is garbage). */
const topicStatusPartitionsMax = 100_000

export interface PeerCalls {
  /** Runs `call` on the broker at `url` (its HTTP base URL); resolves when it answered success. */
  controller(url: string, call: ControllerCall, timeoutMs: number): Promise<void>
  /** The partitions the broker at `url` leads now (at most `entriesMax`). */
  leaderships(url: string, timeoutMs: number, entriesMax: number): Promise<Leadership[]>
  /**
   * Asks the broker at `url` who it is, over the challenge `nonce`. The
   * answer is as received (shape-checked only): the caller checks its proof.
   */
  identity(url: string, nonce: string, timeoutMs: number): Promise<IdentityAnswer>
  /**
   * The broker at `url`'s view of topic `name` (readiness after a create).
   * A broker with nothing listening at `url` fails with `details.refused`.
   */
  topicStatus(url: string, name: string, timeoutMs: number): Promise<TopicStatus>
}

/**
 * The HTTP route and body of each controller call: internal routes, MACed
 * with the cluster secret. Topic changes and security commands go to
 * `/internal/v1/controller` (they went to the public topic routes, which
 * refuse a broker's call once clients must authenticate; the client was
 * authorized by the broker it asked).
 */
function route(call: ControllerCall): { method: 'POST' | 'DELETE'; path: string; body: unknown } {
  switch (call.kind) {
    case 'registerBroker':
      return { method: 'POST', path: '/internal/v1/brokers', body: call.request }
    case 'createOffsetsTopic':
      return { method: 'POST', path: '/internal/v1/offsets-topic', body: {} }
    case 'createTopic':
    case 'deleteTopic':
    case 'security':
      return { method: 'POST', path: '/internal/v1/controller', body: call }
  }
}

const errorCodes = new Set<string>(Object.values(ErrorCode))

/** Peer calls over HTTP, authenticated with the cluster secret; `peerFetch` is how requests go out (https with the CA under TLS). */
export function httpPeerCalls(secret: Uint8Array, runtime: Runtime = systemRuntime, peerFetch: PeerFetch = fetch): PeerCalls {
  /**
   * POSTs `body` as JSON to an internal route of the broker at `url`. A
   * request that could not be made fails with NO_QUORUM, and
   * `details.refused` when nothing listens there (the process is gone), so a
   * caller can count that broker out instead of waiting for it.
   */
  async function postInternal(url: string, path: string, body: unknown, timeoutMs: number): Promise<PeerResponse> {
    const text = JSON.stringify(body)
    try {
      return await peerFetch(`${url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...internalHeaders(secret, 'POST', path, text) },
        body: text,
        signal: timeoutSignal(runtime, timeoutMs),
      })
    } catch (error) {
      throw new RillError(ErrorCode.NO_QUORUM, `broker at ${url} unreachable: ${(error as Error).message}`, { cause: error, details: { refused: connectionRefused(error) } })
    }
  }
  return {
    async controller(url, call, timeoutMs) {
      const { method, path, body } = route(call)
      const text = body === undefined ? '' : JSON.stringify(body)
      let res: PeerResponse
      try {
        res = await peerFetch(`${url}${path}`, {
          method,
          headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...internalHeaders(secret, method, path, text) },
          ...(body === undefined ? {} : { body: text }),
          signal: timeoutSignal(runtime, timeoutMs),
        })
      } catch (error) {
        throw new RillError(ErrorCode.NO_QUORUM, `broker at ${url} unreachable: ${(error as Error).message}`, { cause: error })
      }
      const answer = await res.text().catch(() => '')
      if (res.ok) return
      let err: { code?: unknown; message?: unknown } | undefined
      try {
        err = (JSON.parse(answer) as { error?: { code?: unknown; message?: unknown } } | null)?.error
      } catch {
        err = undefined
      }
      const code = typeof err?.code === 'string' && errorCodes.has(err.code) ? (err.code as ErrorCode) : ErrorCode.INTERNAL
      throw new RillError(code, typeof err?.message === 'string' ? err.message : `broker at ${url} answered ${res.status}`)
    },
    async leaderships(url, timeoutMs, entriesMax) {
      const path = '/internal/v1/leaderships'
      const res = await peerFetch(`${url}${path}`, { headers: internalHeaders(secret, 'GET', path, ''), signal: timeoutSignal(runtime, timeoutMs) })
      if (!res.ok) {
        await res.arrayBuffer().catch(() => undefined)
        throw new RillError(ErrorCode.NO_QUORUM, `broker at ${url} answered ${res.status} to the leadership poll`)
      }
      const body = (await res.json()) as { leaderships?: { group?: unknown; highWatermark?: unknown }[] }
      const out: Leadership[] = []
      for (const l of (Array.isArray(body.leaderships) ? body.leaderships : []).slice(0, entriesMax)) {
        if (Number.isSafeInteger(l.group) && Number.isSafeInteger(l.highWatermark)) out.push({ group: l.group as number, highWatermark: l.highWatermark as number })
      }
      return out
    },
    async topicStatus(url, name, timeoutMs) {
      const res = await postInternal(url, '/internal/v1/topic-status', { name }, timeoutMs)
      if (!res.ok) {
        await res.arrayBuffer().catch(() => undefined)
        throw new RillError(ErrorCode.NO_QUORUM, `broker at ${url} answered ${res.status} to the topic status call`)
      }
      return parseTopicStatus(await res.json().catch(() => null))
    },
    async identity(url, nonce, timeoutMs) {
      const res = await postInternal(url, '/internal/v1/identity', { nonce }, timeoutMs)
      // Whatever listens at an address we are told of may answer anything: read a bounded prefix.
      const answer = await readTextMax(res, identityAnswerCharsMax + 1).catch(() => '')
      if (!res.ok) throw new RillError(ErrorCode.NO_QUORUM, `broker at ${url} answered ${res.status} to the identity challenge`)
      return parseIdentityAnswer(answer, url)
    },
  }
}

/** Whether a failed request's error (or one of its causes) is ECONNREFUSED: no process listens at the address. */
function connectionRefused(error: unknown): boolean {
  let e: unknown = error
  for (let depth = 0; depth < 5 && typeof e === 'object' && e !== null; depth++) {
    if ((e as { code?: unknown }).code === 'ECONNREFUSED') return true
    e = (e as { cause?: unknown }).cause
  }
  return false
}

/** A topic-status answer, shape-checked: anything malformed reads as "not known" (the caller asks again). */
export function parseTopicStatus(body: unknown): TopicStatus {
  const v = (typeof body === 'object' && body !== null ? body : {}) as { known?: unknown; partitions?: unknown }
  const partitions: { partition: number; leader: number }[] = []
  for (const p of (Array.isArray(v.partitions) ? v.partitions : []).slice(0, topicStatusPartitionsMax) as { partition?: unknown; leader?: unknown }[]) {
    if (Number.isSafeInteger(p?.partition) && Number.isSafeInteger(p?.leader)) partitions.push({ partition: p.partition as number, leader: p.leader as number })
  }
  return { known: v.known === true, partitions }
}

/** The identity answer's fields, checked for shape and length (the proof is checked by the caller). */
export function parseIdentityAnswer(text: string, url: string): IdentityAnswer {
  let parsed: unknown = null
  try {
    parsed = text.length <= identityAnswerCharsMax ? JSON.parse(text) : null
  } catch {
    parsed = null
  }
  const v = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Record<string, unknown>
  const short = (x: unknown): x is string => typeof x === 'string' && x.length <= 2048
  const { id, incarnation, httpUrl, peerUrl, proof } = v
  if (!Number.isSafeInteger(id) || !short(incarnation) || !short(httpUrl) || !short(peerUrl) || !short(proof)) {
    throw new RillError(ErrorCode.UNAUTHORIZED, `broker at ${url} gave no identity answer`)
  }
  return { id: id as number, incarnation, httpUrl, peerUrl, proof }
}

/** Longest identity answer read, bytes (two URLs of 2 KiB, a few ids). */
const identityAnswerCharsMax = 8192

/** The first `bytesMax` bytes of a response body as UTF-8; the rest is not read. */
async function readTextMax(res: PeerResponse, bytesMax: number): Promise<string> {
  if (res.body === null) return ''
  const reader = res.body.getReader()
  const chunks: Uint8Array[] = []
  let bytes = 0
  try {
    while (bytes < bytesMax) {
      const { done, value } = await reader.read()
      if (done) break
      chunks.push(value)
      bytes += value.byteLength
    }
  } finally {
    await reader.cancel().catch(() => undefined)
  }
  return Buffer.concat(chunks).subarray(0, bytesMax).toString('utf8')
}
