/**
 * Metrics of src/transport on the caller's prom-client Registry (never the
 * global one). Two transports on one registry (tests, benchmarks) share the
 * metric objects; the `broker` label tells them apart. Per-peer children are
 * resolved once per peer so the hot path does not hash label sets.
 */
import { Counter, Gauge, type Registry } from 'prom-client'

/** Why a message was dropped instead of sent. */
export type DropReason = 'queue_full' | 'too_large' | 'disconnected' | 'unknown_peer'

/** Why a connection attempt or handshake failed. */
export type FailReason = 'connect' | 'handshake' | 'refused' | 'timeout'

export interface TransportMetrics {
  readonly framesSent: Counter<'broker' | 'peer'>
  readonly framesReceived: Counter<'broker' | 'peer'>
  readonly bytesSent: Counter<'broker' | 'peer'>
  readonly bytesReceived: Counter<'broker' | 'peer'>
  readonly messagesSent: Counter<'broker' | 'peer'>
  readonly messagesReceived: Counter<'broker' | 'peer'>
  readonly messagesDropped: Counter<'broker' | 'peer' | 'reason'>
  readonly connectAttempts: Counter<'broker' | 'peer'>
  readonly connectFailures: Counter<'broker' | 'peer' | 'reason'>
  /** Connections refused or closed by this broker (stranger, bad frame, duplicate, idle). */
  readonly connectionsRejected: Counter<'broker' | 'reason'>
  readonly peersConnected: Gauge<'broker'>
}

function getOrCreate<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make()
}

function counter<L extends string>(registry: Registry, name: string, help: string, labelNames: L[]): Counter<L> {
  return getOrCreate(registry, name, () => new Counter({ name, help, labelNames, registers: [registry] }))
}

/** Creates (or finds) the transport metrics on `registry`. */
export function createTransportMetrics(registry: Registry): TransportMetrics {
  const bp: ('broker' | 'peer')[] = ['broker', 'peer']
  return {
    framesSent: counter(registry, 'rill_transport_frames_sent_total', 'Frames written to peer connections', bp),
    framesReceived: counter(registry, 'rill_transport_frames_received_total', 'Frames read from peer connections', bp),
    bytesSent: counter(registry, 'rill_transport_bytes_sent_total', 'Bytes written to peer connections (length prefixes included)', bp),
    bytesReceived: counter(registry, 'rill_transport_bytes_received_total', 'Bytes read from peer connections', bp),
    messagesSent: counter(registry, 'rill_transport_messages_sent_total', 'Raft messages written to peers', bp),
    messagesReceived: counter(registry, 'rill_transport_messages_received_total', 'Raft messages received from peers', bp),
    messagesDropped: counter(registry, 'rill_transport_messages_dropped_total', 'Raft messages dropped before sending', ['broker', 'peer', 'reason']),
    connectAttempts: counter(registry, 'rill_transport_connect_attempts_total', 'Outgoing connection attempts', bp),
    connectFailures: counter(registry, 'rill_transport_connect_failures_total', 'Outgoing connection attempts that did not end in an authenticated connection', ['broker', 'peer', 'reason']),
    connectionsRejected: counter(registry, 'rill_transport_connections_rejected_total', 'Connections refused or closed for cause by this broker', ['broker', 'reason']),
    peersConnected: getOrCreate(registry, 'rill_transport_peers_connected', () =>
      new Gauge({ name: 'rill_transport_peers_connected', help: 'Peers with an authenticated connection', labelNames: ['broker'], registers: [registry] })),
  }
}
