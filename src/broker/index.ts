/**
 * src/broker: one broker, composed of small parts that broker.ts wires
 * (controller client, hosted groups, peer router, liveness, leader balance,
 * leader poll, retention, topics, the offsets topic, producer ids, metrics)
 * — and no HTTP: the process around it (config, logger, the HTTP API,
 * signals, the shutdown bound) is assembled in src/cli/broker.ts, and
 * src/api declares the BrokerService a Broker satisfies.
 */
export { Broker } from './broker.ts'
export { controllerGroupId, offsetsTopic, partitionGroupStride } from './names.ts'
export { offsetsTopicPartitions } from './offsets-topic.ts'
export { brokerUsage, parseBrokerConfig, hostPort, isLoopbackHost, wantsBrokerHelp, shutdownTimeoutMsMax, shutdownTimeoutMsMin, httpConnectionsMaxDefault } from './config.ts'
export type { BrokerConfig, HostPort, Seed } from './config.ts'
export type { FetchCall, FetchOutcome, ProduceCall, ProduceOutcome } from '../wire/index.ts'
export { anonymousPrincipal, checkProducerToken, producerToken, producerTokenPattern } from './producer-tokens.ts'
export type { ProducerTokenSubject } from './producer-tokens.ts'
export { ReplayCache, checkInternalRequest, incarnationPattern, internalHeaders, internalHeadersWellFormed } from './internal-auth.ts'
export type { BrokerIdentity, IdentityAnswer } from './internal-auth.ts'
export type { BrokerRegistration, ControllerCall, Leadership, TopicStatus } from './peer-calls.ts'
export { Security, authModes } from './security.ts'
export type { AuthMode, SecurityCommand, TokenListing } from './security.ts'
export { authenticateToken, newToken, parseToken, tokenHash, tokenHashKey, tokenPattern, authorizationCharsMax } from './tokens.ts'
export { loadTlsMaterial, serverTlsOptions, clientCertificateRefusal, secureContextOptions, clientAuthModes, tlsFileBytesMax, httpTlsHandshakeMsMax } from './tls.ts'
export type { TlsConfig, TlsMaterial, ClientAuth } from './tls.ts'
export { PeerHttp, peerConnectionsPerBrokerMax } from './peer-http.ts'
export type { PeerFetch, PeerResponse, PeerRequestInit } from './peer-http.ts'
export { procDescriptors, noDescriptorProbe, descriptorLimit, descriptorsReserve, descriptorsPerReplica, replicasThatFit } from './descriptors.ts'
export type { DescriptorProbe, DescriptorUse } from './descriptors.ts'
