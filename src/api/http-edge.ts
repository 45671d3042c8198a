/**
 * What node's HTTP server answers by itself, before any fastify route or
 * hook runs, made to answer in our error shape (errors.ts). Found by the
 * fuzz suite (test/fuzz/): every one of these had a body no client could
 * read a code from.
 *
 *   bytes node's parser refuses (bad request line, header bytes, lengths,
 *   chunking; headers above the bound)      fastify's {"error":"Bad Request",...}  ──▶ answerClientError: 400 INVALID_REQUEST / 413 TOO_LARGE, close
 *   HTTP/1.1 without Host                   node's empty 400                       ──▶ refuseWithoutHost hook: 400 INVALID_REQUEST
 *   Expect other than 100-continue          node's empty 417                       ──▶ ignored (HTTP lets a server), the request is served
 */
import { STATUS_CODES, type IncomingMessage, type ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { clientErrorAnswer, invalidRequest } from './errors.ts'

/**
 * fastify's `clientErrorHandler`: a request node's HTTP parser refused is
 * answered in our error shape, then the connection closes, as node's own
 * handler does (the stream cannot be trusted past a parse error). A reset
 * socket gets nothing.
 */
export function answerClientError(error: Error & { code?: string }, socket: Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return
  if (socket.writable) {
    const { status, body } = clientErrorAnswer(error.code)
    const text = JSON.stringify(body)
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(text)}\r\nconnection: close\r\n\r\n${text}`)
  }
  socket.destroy()
}

/** An HTTP/1.1 request must name its Host (RFC 9112 3.2). */
async function refuseWithoutHost(request: FastifyRequest): Promise<void> {
  if (request.headers.host === undefined && request.raw.httpVersion === '1.1') throw invalidRequest('an HTTP/1.1 request needs a Host header', 'host')
}

/** Takes over node's own answers to a Host-less request and to an unknown Expect (call once, before `ready`). */
export function answerNodeRefusalsInOurShape(app: FastifyInstance): void {
  // node reads the option at each request (http and https servers alike): the hook below refuses in our shape instead.
  ;(app.server as { requireHostHeader?: boolean }).requireHostHeader = false
  app.addHook('onRequest', refuseWithoutHost)
  app.server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => app.server.emit('request', request, response))
}
