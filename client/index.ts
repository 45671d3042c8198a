/**
 * client/: the HTTP client the SDKs share (producer/, consumer/). One undici
 * pool per broker, msgpack bodies, typed errors with the broker's codes, a
 * metadata cache, jittered backoff. Imports from src/ only src/base (error
 * codes) and src/wire (body types, record batches).
 */
export { RillClient, parseBrokers, defaultClientOptions } from './client.ts'
export type { ClientOptions } from './client.ts'
export { HttpTransport, MsgpackWithBytes, defaultHttpOptions, tlsHint } from './http.ts'
export type { HttpOptions, HttpRequest, ClientTlsOptions } from './http.ts'
export { MetadataCache } from './metadata.ts'
export type { BrokerInfo, TopicInfo, ClusterMetadata, MetadataOptions } from './metadata.ts'
export { ClientErrorCode, RillClientError, isRillClientError, throttleMsOf } from './errors.ts'
export { backoffMs, sleep } from './backoff.ts'
export type { BackoffOptions } from './backoff.ts'
