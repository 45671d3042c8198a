/**
 * msgpack on the HTTP edge (API.md): bodies with `Content-Type:
 * application/msgpack` are decoded here, then validated by the same route
 * schemas as JSON (with `binary` for byte fields); answers are msgpack when
 * the client asks for it with `Accept`. Plain maps, no msgpackr records or
 * structured clones, so any msgpack library reads and writes them.
 */
import { Packr, Unpackr } from 'msgpackr'
import { contentType } from '../wire/index.ts'
import { invalidRequest } from './errors.ts'

const packr = new Packr({ useRecords: false, moreTypes: false })
const unpackr = new Unpackr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number', moreTypes: false })

/** Encodes an answer. */
export function packAnswer(value: unknown): Buffer {
  return packr.pack(value)
}

/** Decodes one msgpack value that must fill `bytes` exactly; INVALID_REQUEST otherwise. */
export function unpackBody(bytes: Buffer): unknown {
  try {
    return unpackr.unpack(bytes)
  } catch (cause) {
    throw invalidRequest(`malformed msgpack body: ${(cause as Error).message.slice(0, 200)}`)
  }
}

/**
 * True if the answer should be msgpack: the client accepts it explicitly,
 * or it sent msgpack and did not name what it accepts.
 */
export function wantsMsgpack(accept: string | undefined, requestType: string | undefined): boolean {
  if (accept !== undefined && accept.includes(contentType.msgpack)) return true
  const acceptsAnything = accept === undefined || accept === '' || accept.trim() === '*/*'
  return acceptsAnything && requestType !== undefined && requestType.startsWith(contentType.msgpack)
}
