/**
 * The inputs the fuzz suite found, replayed exactly (each failed before its
 * fix): the HTTP API over the test service (test/api/helpers.ts), listening
 * on 127.0.0.1 so that node's own HTTP parser is in the path, requests sent
 * as raw bytes.
 */
import { after, before, describe, test } from 'node:test'
import assert from 'node:assert/strict'
import type { FastifyInstance } from 'fastify'
import { ErrorCode } from '../../src/base/index.ts'
import { buildApi } from '../../src/api/index.ts'
import { TestService } from '../api/helpers.ts'
import { answerBody, checkAnswer, rawExchange, rawHttp, type RawRequest } from './helpers.ts'

let service: TestService
let app: FastifyInstance
let port: number

before(async () => {
  service = new TestService()
  app = buildApi({ service })
  await app.listen({ host: '127.0.0.1', port: 0 })
  port = (app.server.address() as { port: number }).port
  await service.createTopic({ name: 'orders', partitions: 2, replicationFactor: 1 })
})

after(async () => {
  await app.close()
  await service.close()
})

function errorOf(body: unknown): { code: string; message: string } {
  return (body as { error: { code: string; message: string } }).error
}

describe('requests node refuses before any route sees them answer in our error shape', () => {
  // Found as: POST "/v1/groups/g1/members/?&...&maxWaitMs= &..." (a raw space in the target) → 400 {"error":"Bad Request","message":"Client Error","statusCode":400}.
  const cases: Array<{ name: string; bytes: string; status: number; code: ErrorCode }> = [
    { name: 'a space in the target', bytes: 'POST /v1/groups/g1/members/?maxWaitMs= &x=1 HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}', status: 400, code: ErrorCode.INVALID_REQUEST },
    { name: 'random bytes', bytes: '\u00fe\u008f\u0001\u0005p\r\n\r\n', status: 400, code: ErrorCode.INVALID_REQUEST },
    { name: 'a NUL in the target', bytes: 'GET /he\u0000alth HTTP/1.1\r\nhost: x\r\n\r\n', status: 400, code: ErrorCode.INVALID_REQUEST },
    { name: 'content-length and transfer-encoding both', bytes: 'POST /v1/producers HTTP/1.1\r\nhost: x\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n', status: 400, code: ErrorCode.INVALID_REQUEST },
    { name: 'headers above the bound', bytes: `GET /health HTTP/1.1\r\nhost: x\r\nx: ${'a'.repeat(20_000)}\r\n\r\n`, status: 413, code: ErrorCode.TOO_LARGE },
  ]
  for (const c of cases) {
    test(c.name, async () => {
      const answer = await rawExchange(port, Buffer.from(c.bytes, 'latin1'), { end: true })
      assert.equal(answer.status, c.status, answer.body.toString())
      assert.equal(errorOf(answerBody(answer)).code, c.code)
      checkAnswer({ method: '?', target: c.name }, answer)
    })
  }

  // Found as: GET /health with 3000 "x: y" headers and no Host → node's own 400 with an empty body.
  test('an HTTP/1.1 request without Host is refused in our shape; HTTP/1.0 needs none', async () => {
    const answer = await rawExchange(port, Buffer.from('GET /health HTTP/1.1\r\nconnection: close\r\n\r\n', 'latin1'), { end: true })
    assert.equal(answer.status, 400, answer.body.toString())
    assert.equal(errorOf(answerBody(answer)).code, ErrorCode.INVALID_REQUEST)
    assert.match(errorOf(answerBody(answer)).message, /Host/)
    const old = await rawExchange(port, Buffer.from('GET /health HTTP/1.0\r\n\r\n', 'latin1'), { end: true })
    assert.equal(old.status, 200, old.body.toString())
  })

  // Found as: an unknown Expect → node's own 417 with an empty body. HTTP lets a server ignore it.
  test('an Expect other than 100-continue is ignored, not answered 417 without a body', async () => {
    const answer = await rawExchange(port, Buffer.from('GET /health HTTP/1.1\r\nhost: x\r\nexpect: foo\r\nconnection: close\r\n\r\n', 'latin1'), { end: true })
    assert.equal(answer.status, 200, answer.body.toString())
  })
})

describe('a produce without a body', () => {
  // Found as: POST "/v1/topics/records/records" with no body and no content type → 500 INTERNAL
  // (fastify skips a per-content-type body schema when there is no body; the handler read `undefined.batch`).
  for (const target of ['/v1/topics/orders/records', '/v1/topics/orders/partitions/0/records']) {
    test(`POST ${target} with no body is 400 INVALID_REQUEST and reaches no partition`, async () => {
      const calls = service.produceCalls
      for (const request of [
        { method: 'POST', target, headers: [['content-encoding', 'gzip']] },
        { method: 'POST', target, contentLength: null },
        { method: 'POST', target, contentLength: 0 },
      ] satisfies RawRequest[]) {
        const answer = await rawHttp(port, request)
        checkAnswer(request, answer)
        assert.equal(answer.status, 400, answer.body.toString())
        assert.equal(errorOf(answerBody(answer)).code, ErrorCode.INVALID_REQUEST)
      }
      assert.equal(service.produceCalls, calls)
    })
  }
})
