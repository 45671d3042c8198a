/**
 * The answer of a produce on the topic route (`POST /v1/topics/:topic/records`),
 * one result per partition as Kafka's ProduceResponse (issue 10, hole 7).
 *
 *   records ──routeRecords──▶ parts (one per partition) ──produce or forward each──▶ settled
 *   settled ──topicProduceAnswer──▶ every part written      200 { offsets }
 *                                   some written, some not  207 { offsets, failed }
 *                                   none written            an error status (noPartWritten),
 *                                                           { error: { code, message, offsets: [], failed } }
 *
 * Partitions are independent logs: a part that was written stays written
 * whatever happened to the others. The old answer to a mixed outcome was the
 * first failure's error status (421 when a leader was gone), so a client —
 * or any HTTP library that retries a 421 or 503 on its own — sent the whole
 * request again and wrote the written parts twice. A mixed outcome is now a
 * 2xx (the request took effect) that is not 200 (not all of it), with each
 * failed part's code, `retriable` flag and the indexes of its records in the
 * request, so the client resends exactly those records and nothing else. Only
 * when nothing was written is the answer an error, and then resending the
 * whole request is what the client should do.
 *
 * A failed part with a retriable code may still have been written when the
 * outcome is unknown (TIMEOUT: the leader did not answer in time); the topic
 * route has no producer sequences, so only an idempotent producer on the
 * partition route (the SDK's default) retries that without a duplicate.
 */
import { ErrorCode, RillError, isRillError } from '../base/index.ts'
import type { BrokerRef, ProduceResponse, TopicProduceFailure, TopicProduceResponse } from '../wire/index.ts'
import { toErrorAnswer } from './errors.ts'
import type { PartitionPart } from './records.ts'

/** Status of a topic produce where some parts were written and some were not (HTTP's Multi-Status). */
export const partialProduceStatus = 207

/** What the route answers when at least one part was written, and the failures nobody expected (to log with their stacks). */
export interface TopicProduceAnswer {
  readonly status: 200 | typeof partialProduceStatus
  readonly body: TopicProduceResponse
  readonly unexpected: readonly unknown[]
}

/**
 * The per-partition answer to a topic produce whose parts settled as
 * `settled` (same order as `parts`). Throws, when no part was written, an
 * error carrying every part's result (see `noPartWritten`), so the status
 * says the request failed as a whole.
 */
export function topicProduceAnswer(
  parts: readonly PartitionPart[],
  settled: readonly PromiseSettledResult<ProduceResponse>[],
  resolveLeader: (leader: unknown) => BrokerRef | null,
): TopicProduceAnswer {
  const offsets: ProduceResponse[] = []
  const failed: TopicProduceFailure[] = []
  const unexpected: unknown[] = []
  const reasons: unknown[] = []
  settled.forEach((s, i) => {
    const part = parts[i]!
    if (s.status === 'fulfilled') {
      offsets.push({ partition: s.value.partition, baseOffset: s.value.baseOffset, lastOffset: s.value.lastOffset })
      return
    }
    reasons.push(s.reason)
    if (!(s.reason instanceof RillError)) unexpected.push(s.reason)
    failed.push(failureOf(part, s.reason, resolveLeader))
  })
  if (failed.length === 0) return { status: 200, body: { offsets }, unexpected }
  if (offsets.length > 0) return { status: partialProduceStatus, body: { offsets, failed }, unexpected }
  throw noPartWritten(reasons, failed)
}

function failureOf(part: PartitionPart, reason: unknown, resolveLeader: (leader: unknown) => BrokerRef | null): TopicProduceFailure {
  // The same code and message an error answer would carry (an unexpected error's internals stay hidden).
  const { error } = toErrorAnswer(reason, resolveLeader).body
  const failure: TopicProduceFailure = {
    partition: part.partition,
    code: error.code,
    message: error.message,
    retriable: reason instanceof RillError && reason.retriable,
    records: part.indexes,
  }
  if (error.code === ErrorCode.NOT_LEADER) failure.leader = (error.leader as BrokerRef | null | undefined) ?? null
  return failure
}

/**
 * The error that answers a topic produce of which no part was written, with
 * every part's result: the first failure in partition order that is not
 * NOT_LEADER, else NOT_LEADER. So a 421 means every part was refused before
 * being written, and the one resend undici makes of a 421 by itself (see
 * docs/api.md) cannot duplicate a part whose outcome is unknown (a TIMEOUT).
 */
function noPartWritten(reasons: readonly unknown[], failed: TopicProduceFailure[]): RillError {
  const details = { offsets: [], failed }
  const firstError = reasons.find((r) => !isRillError(r, ErrorCode.NOT_LEADER)) ?? reasons[0]
  if (firstError instanceof RillError) {
    return new RillError(firstError.code, firstError.message, { cause: firstError, details: { ...firstError.details, ...details } })
  }
  return new RillError(ErrorCode.INTERNAL, 'internal error', { cause: firstError, details })
}
