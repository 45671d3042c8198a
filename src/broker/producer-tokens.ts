/**
 * Producer tokens bind an idempotent producer id to the client that
 * obtained it (issue 10, hole 3). Without them anyone who knew or guessed
 * a live producer id could send its next sequence first: a third party's
 * `{producerId: PID, producerEpoch: 0, sequence: 1, records: [EVIL]}` was
 * appended, and the real producer's sequence 1 was then answered as a
 * duplicate — `200 baseOffset 11` while offset 11 held EVIL.
 *
 *   POST /v1/producers ──▶ { producerId, producerEpoch, producerToken }
 *       producerToken = hex HMAC-SHA256(secret, "rill/producer-token/1" \n producerId \n producerEpoch \n principal)
 *
 *   produce of a batch whose header has producerId ≥ 0 ──▶ the body's producerToken must be that MAC
 *       missing, malformed or wrong ──▶ 403 INVALID_PRODUCER_TOKEN, nothing written
 *
 * The MAC is made with the cluster secret, so any broker verifies a token
 * another issued (a producer takes its id from one broker and writes to
 * the leaders of its partitions) and nothing is stored per producer. It
 * is compared in constant time. A label of its own keeps a token from ever
 * being a valid internal-request MAC or identity proof (internal-auth.ts),
 * and those from being tokens.
 *
 * `principal` is the authenticated client the id was issued to. Until
 * client authentication exists every request's principal is '' (the
 * anonymous client); once it does, the principal of the request that
 * obtained the id goes into the token and the principal of each produce
 * into the check, so another principal cannot write with a token it read
 * off the wire or a log. Principal is the last field and the others are
 * decimal numbers, so no two inputs share a MAC input.
 *
 * Duplicates are not compared by content: with tokens, only the holder of
 * a producer id can write with it, so a batch answered as a duplicate of
 * one with the same id, epoch, sequence and record count was sent by that
 * same client — its retry (the SDK resends the very bytes) or its own bug,
 * which is what Kafka assumes too. Comparing would mean keeping a digest of
 * the last batches of every producer in the replicated partition state.
 */
import { createHmac, timingSafeEqual } from 'node:crypto'
import { ErrorCode, RillError } from '../base/index.ts'

/** A token as sent: 32 bytes, lower-case hex. */
export const producerTokenPattern = /^[0-9a-f]{64}$/

/** The principal of a client that did not authenticate (all of them, until client authentication exists). */
export const anonymousPrincipal = ''

/** What a token is made over. */
export interface ProducerTokenSubject {
  readonly producerId: number
  readonly producerEpoch: number
  /** The authenticated principal ('' when none). */
  readonly principal: string
}

function tokenMac(secret: Uint8Array, subject: ProducerTokenSubject): Buffer {
  return createHmac('sha256', secret)
    .update(`rill/producer-token/1\n${subject.producerId}\n${subject.producerEpoch}\n${subject.principal}`)
    .digest()
}

/** The token for `subject`, as `POST /v1/producers` answers it. */
export function producerToken(secret: Uint8Array, subject: ProducerTokenSubject): string {
  return tokenMac(secret, subject).toString('hex')
}

/**
 * Throws INVALID_PRODUCER_TOKEN unless `token` is the token of `subject`.
 * The comparison takes the same time wherever the first differing byte is.
 */
export function checkProducerToken(secret: Uint8Array, subject: ProducerTokenSubject, token: string | undefined): void {
  const who = `producer ${subject.producerId} epoch ${subject.producerEpoch}`
  if (token === undefined) {
    throw new RillError(ErrorCode.INVALID_PRODUCER_TOKEN, `${who}: an idempotent produce needs the producerToken that POST /v1/producers answered with the id`)
  }
  // The length and alphabet are public; only the bytes are compared in constant time.
  if (!producerTokenPattern.test(token) || !timingSafeEqual(tokenMac(secret, subject), Buffer.from(token, 'hex'))) {
    throw new RillError(ErrorCode.INVALID_PRODUCER_TOKEN, `${who}: producerToken does not match this producer id and epoch (it was not issued with them)`)
  }
}
