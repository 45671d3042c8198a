/**
 * src/api: the broker's HTTP API (API.md) — fastify routes, schemas, the
 * JSON/msgpack edge, error → status mapping, /metrics. docs/api.md
 * documents it with curl examples.
 */
export { buildApi, forwardedHeader } from './server.ts'
export type { ApiOptions, ForwardFetch } from './server.ts'
export { defaultApiLimits, apiLimits, defaultConnectionLimits, connectionLimits, topicPartitionsMax, replicationFactorMax, nameLengthMax } from './limits.ts'
export type { ApiLimits, ConnectionLimits } from './limits.ts'
export { ConnectionGuard } from './connections.ts'
export {
  installQuotas,
  quotaKeyOf,
  quotaRoute,
  throttleHeader,
  unlimitedQuotas,
  QuotaTable,
  TokenBucket,
  throttleMsMaxDefault,
  throttleMsMaxLimit,
} from './quotas.ts'
export type { QuotaConfig, QuotaKind, QuotaCharge } from './quotas.ts'
export { statusForCode, toErrorAnswer } from './errors.ts'
export type { ErrorAnswer } from './errors.ts'
export type { BrokerService, GroupService, SecurityService, ProduceCall, ProduceOutcome, FetchCall, FetchOutcome } from './service.ts'
export { registerAccess, routeAccess, routeKey, canDescribeTopic, deniedAuditPerSecondMax } from './auth.ts'
export type { ApiAuth, AccessCheck, RouteAccess } from './auth.ts'
