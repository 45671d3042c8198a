/**
 * src/transport: broker-to-broker connections (framing, authenticated
 * handshake, one connection per broker pair, one frame per peer per tick).
 * Imports only src/base and the Raft message types.
 */
export {
  Transport,
  transportLimitsDefault,
  queueMessagesMaxDefault,
  queueBytesMaxDefault,
  handshakeMsDefault,
  pingIntervalMsDefault,
  idleTimeoutMsDefault,
  backoffMsMinDefault,
  backoffMsMaxDefault,
  tlsRefusalLogLinesMax,
  tlsRefusalLogWindowMs,
} from './transport.ts'
export type { TransportOptions, TransportLimits, TransportTls, PeerAddress, PeerInfo, BatchHandler, PeerNetwork } from './transport.ts'
export {
  batchSize,
  forEachMessage,
  createPackr,
  encodePeerBatch,
  decodePeerBatch,
  peerBatchFromValue,
  peerBatchValue,
  encodedBytesMax,
  groupIdMax,
  batchMessagesMax,
  messageEntriesMax,
  confMembersMax,
} from './raft-codec.ts'
export type { GroupId, GroupMessage, PeerBatch, HeartbeatColumns, HeartbeatRespColumns, BatchEnds } from './raft-codec.ts'
export { frameBytesMaxDefault, handshakeFrameBytesMax } from './frame.ts'
export { secretBytes, protocolVersion } from './handshake.ts'
export type { TransportMetrics, DropReason } from './metrics.ts'
