/**
 * Broker configuration from flags, environment (RILL_*) and a JSON file,
 * in that order of precedence (a flag beats the environment beats the file).
 * Every value is checked at start; a bad one is a RillError INVALID_REQUEST
 * naming the flag, and `rill broker` exits 2 with that one line.
 *
 * The cluster secret comes from `--secret HEX` or `--secret-file PATH` (a
 * file of 64 hex digits that only its owner may read, as ssh wants of a
 * private key). Without either, brokers use a development secret derived
 * from the cluster id — public, so it is allowed only while both the HTTP
 * and the peer listener are on loopback (127.0.0.0/8, ::1, localhost): a
 * broker that would listen anywhere else without a secret refuses to start
 * (DESIGN.md decision 12: no insecure default leaves loopback).
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs'
import { BlockList, isIPv6 } from 'node:net'
import { createHash } from 'node:crypto'
import { ErrorCode, RillError, systemRuntime } from '../base/index.ts'
import type { PersistenceMode } from '../log/index.ts'
import { clientAuthModes, loadTlsMaterial, type ClientAuth, type TlsConfig } from './tls.ts'
import { authModes, type AuthMode } from './security.ts'
import { principalPattern } from '../controller/index.ts'

export interface HostPort {
  readonly host: string
  readonly port: number
}

export interface Seed extends HostPort {
  readonly id: number
}

export interface BrokerConfig {
  /** This broker's id (positive). */
  readonly id: number
  /** Data directory (logs, snapshots, the lock file). */
  readonly dir: string
  /** Where the HTTP API listens. */
  readonly http: HostPort
  /** Where other brokers connect; outgoing peer connections also start from this host. */
  readonly peer: HostPort
  /** The controller voters by id and peer address; the same list on every broker. */
  readonly seeds: readonly Seed[]
  /** Brokers of another cluster are refused. */
  readonly clusterId: string
  /** 32-byte secret brokers prove they share (keyed MAC handshake). */
  readonly secret: Uint8Array
  /** True when no secret was configured and the development secret is in use (logged loudly). */
  readonly secretIsDevelopment: boolean
  /** Persistence of topics created without one. */
  readonly defaultPersistence: PersistenceMode
  /** Failure domain for placement. */
  readonly rack: string | null
  /** Length of one Raft tick, ms. */
  readonly tickMs: number
  /** Ticks without a leader before a replica campaigns (randomized up to 2x). */
  readonly electionTicks: number
  /** Ticks between leader heartbeats. */
  readonly heartbeatTicks: number
  /** pino level. */
  readonly logLevel: string
  /**
   * HTTP URLs of brokers already in the cluster. A broker that is not a
   * controller voter registers through one of them (it cannot know the
   * controller leader before it has the metadata, and seeds do not dial a
   * broker they have not heard of).
   */
  readonly join: readonly string[]
  /**
   * How long a graceful stop (SIGTERM/SIGINT: hand leadership away, close
   * the groups, the HTTP server and the store) may take before the process
   * exits anyway, ms. Anything acknowledged is durable already (per the
   * persistence mode), so the bound costs no acknowledged write; it keeps a
   * stuck stop (a peer, a disk, a client holding a request) from holding the
   * process forever. `--shutdown-timeout 10s` or `10000` (ms).
   */
  readonly shutdownTimeoutMs: number
  /**
   * TLS on the HTTP API and the peer transport (`--tls-cert`, `--tls-key`,
   * `--tls-ca`, `--tls-client-auth`), or null for plaintext. The files are
   * read and checked while parsing (tls.ts), and again at start and on
   * SIGHUP.
   */
  readonly tls: TlsConfig | null
  /**
   * Bounds on the HTTP API's connections (issue 10, hole 4). `max` null:
   * decided at start from the descriptor limit (half of it, at most
   * `httpConnectionsMaxDefault`), so connections cannot take the
   * descriptors the logs need.
   */
  readonly httpConnections: {
    /** Connections open at once (`--http-connections-max`). */
    readonly max: number | null
    /** Connections open at once from one client address (`--http-connections-per-address-max`). */
    readonly perAddressMax: number
    /** A connection without a request in flight is closed after this long, ms (`--http-idle-timeout`). */
    readonly idleMs: number
    /** Longest a client may take to send a whole request, ms (`--http-request-timeout`). */
    readonly requestMs: number
  }
  /** Partitions one topic may have; a create asking more is refused 400 (`--topic-partitions-max`). */
  readonly topicPartitionsMax: number
  /** Partitions of all topics together; a create that would pass it is refused 409 RESOURCE_LIMIT_REACHED (`--cluster-partitions-max`). */
  readonly clusterPartitionsMax: number
  /**
   * Quotas per client (the principal, or the address until client
   * authentication is on): produce and fetch bytes per second, produce and
   * fetch requests per second (null: unlimited, the default), and the
   * longest an answer is held to bring a client back under them. Enforced
   * by the HTTP layer (src/api/quotas.ts); per broker, as in Kafka.
   */
  readonly quotas: QuotaSettings
  /**
   * Client authentication (`--auth`): `none` (default: requests are
   * anonymous and allowed, as before) or `required` (every request but
   * /health must show a bearer token or, with --tls-client-auth, a client
   * certificate of the CA; what no ACL allows is denied; docs/security.md).
   */
  readonly auth: AuthMode
  /** Principals allowed everything without ACLs (`--super-users a,b`). */
  readonly superUsers: readonly string[]
}

/** Quotas of `rill broker` (the shape src/api/quotas.ts QuotaConfig takes). */
export interface QuotaSettings {
  /** `--quota-produce-bytes`: produce request body bytes per second per client. */
  readonly produceBytesPerSecond: number | null
  /** `--quota-fetch-bytes`: fetch answer body bytes per second per client. */
  readonly fetchBytesPerSecond: number | null
  /** `--quota-requests`: produce and fetch requests per second per client. */
  readonly requestsPerSecond: number | null
  /** `--quota-throttle-max`: longest hold of an answer, ms. */
  readonly throttleMsMax: number
}

/** Super-users listed at most. */
export const superUsersMax = 64

const defaults = {
  clusterId: 'rill',
  defaultPersistence: 'sync' as PersistenceMode,
  tickMs: 50,
  electionTicks: 20,
  heartbeatTicks: 2,
  logLevel: 'info',
  shutdownTimeoutMs: 10_000,
  quotaThrottleMsMax: 5_000,
  httpConnectionsPerAddressMax: 256,
  httpIdleTimeoutMs: 60_000,
  httpRequestTimeoutMs: 30_000,
  topicPartitionsMax: 1000,
  clusterPartitionsMax: 10_000,
}

/** Largest default of --http-connections-max (the default is half the descriptor limit, at most this). */
export const httpConnectionsMaxDefault = 4096
/** Bounds of --http-connections-max and --http-connections-per-address-max. */
export const httpConnectionsMaxMax = 1_000_000
/** Bounds of --http-idle-timeout and --http-request-timeout, ms. */
export const httpTimeoutMsMin = 100
export const httpTimeoutMsMax = 3_600_000
/** Largest --topic-partitions-max: what the API schema lets a create ask for. */
export const topicPartitionsMaxMax = 10_000
/** Largest --cluster-partitions-max. */
export const clusterPartitionsMaxMax = 1_000_000

/** Bounds on what a config may say. */
export const tickMsMin = 5
export const tickMsMax = 1000
export const electionTicksMax = 1000
export const seedsMax = 7
/** Bounds of --shutdown-timeout, ms: long enough to hand leadership away, short enough that a stop ends. */
export const shutdownTimeoutMsMin = 100
export const shutdownTimeoutMsMax = 3_600_000
/**
 * Longest --quota-throttle-max, ms: a held answer must reach its client
 * before the client gives up on it (the CLI's 10 s, the SDKs' 30 s request
 * timeouts; a forwarded produce's 35 s). The same as src/api's throttleMsMaxLimit.
 */
export const quotaThrottleMsMaxLimit = 10_000
/** Largest requests-per-second quota. */
export const quotaRequestsMax = 1_000_000

const flagToKey = {
  '--id': 'id',
  '--dir': 'dir',
  '--http': 'http',
  '--peer': 'peer',
  '--seeds': 'seeds',
  '--cluster-id': 'clusterId',
  '--secret': 'secret',
  '--secret-file': 'secretFile',
  '--persistence': 'defaultPersistence',
  '--rack': 'rack',
  '--tick-ms': 'tickMs',
  '--election-ticks': 'electionTicks',
  '--heartbeat-ticks': 'heartbeatTicks',
  '--log-level': 'logLevel',
  '--join': 'join',
  '--shutdown-timeout': 'shutdownTimeoutMs',
  '--tls-cert': 'tlsCert',
  '--tls-key': 'tlsKey',
  '--tls-ca': 'tlsCa',
  '--tls-client-auth': 'tlsClientAuth',
  '--quota-produce-bytes': 'quotaProduceBytes',
  '--quota-fetch-bytes': 'quotaFetchBytes',
  '--quota-requests': 'quotaRequests',
  '--quota-throttle-max': 'quotaThrottleMaxMs',
  '--http-connections-max': 'httpConnectionsMax',
  '--http-connections-per-address-max': 'httpConnectionsPerAddressMax',
  '--http-idle-timeout': 'httpIdleTimeoutMs',
  '--http-request-timeout': 'httpRequestTimeoutMs',
  '--topic-partitions-max': 'topicPartitionsMax',
  '--cluster-partitions-max': 'clusterPartitionsMax',
  '--auth': 'auth',
  '--super-users': 'superUsers',
} as const satisfies Record<string, string>
type BrokerFlag = keyof typeof flagToKey

/** `rill broker --help`: every flag's value and meaning (the compiler checks none is missing). */
const flagHelp: Record<BrokerFlag, readonly [value: string, about: string]> = {
  '--id': ['N', 'this broker\'s id (1 and up); required'],
  '--dir': ['DIR', 'data directory (logs, snapshots, lock); required'],
  '--http': ['HOST:PORT', 'where the HTTP API listens; required'],
  '--peer': ['HOST:PORT', 'where other brokers connect (outgoing peer links start from this host); required'],
  '--seeds': ['ID@HOST:PORT,...', `the controller voters by id and peer address, the same on every broker (at most ${seedsMax}); required`],
  '--join': ['URL,...', 'HTTP URLs of brokers already in the cluster (a broker outside --seeds registers through them)'],
  '--cluster-id': ['ID', `brokers of another cluster are refused (default ${defaults.clusterId})`],
  '--secret': ['HEX', 'the cluster secret, 64 hex digits, the same on every broker (required off loopback)'],
  '--secret-file': ['PATH', 'the cluster secret from a file only its owner may read (mode 600 or 400)'],
  '--persistence': ['sync|async|memory', `persistence of topics created without one (default ${defaults.defaultPersistence})`],
  '--rack': ['NAME', 'failure domain: replicas of a partition go to distinct racks'],
  '--tick-ms': ['MS', `length of one Raft tick (default ${defaults.tickMs}, ${tickMsMin}-${tickMsMax})`],
  '--election-ticks': ['N', `ticks without a leader before a replica campaigns (default ${defaults.electionTicks})`],
  '--heartbeat-ticks': ['N', `ticks between leader heartbeats, below --election-ticks (default ${defaults.heartbeatTicks})`],
  '--log-level': ['LEVEL', `fatal|error|warn|info|debug|trace|silent (default ${defaults.logLevel})`],
  '--tls-cert': ['FILE', 'PEM certificate of this broker (names its --http and --peer hosts): the API is https and peer links TLS'],
  '--tls-key': ['FILE', 'PEM private key of --tls-cert'],
  '--tls-ca': ['FILE', 'PEM CA that signed every broker\'s certificate (and client certificates); required with --tls-cert'],
  '--tls-client-auth': ['none|optional|required', 'client certificates: none asks nothing, optional refuses one not of the CA, required refuses clients without one (default none)'],
  '--auth': ['none|required', 'client authentication: required demands a bearer token or a client certificate of the CA on every request but /health, and denies what no ACL allows (default none)'],
  '--super-users': ['NAME,...', `principals allowed everything without ACLs (at most ${superUsersMax})`],
  '--shutdown-timeout': ['DURATION', `bound of a graceful stop: 10s, 500ms or ms (default ${defaults.shutdownTimeoutMs / 1000}s)`],
  '--quota-produce-bytes': ['N', 'produce request bytes per second per client (principal, else address); over it answers are delayed (default unlimited)'],
  '--quota-fetch-bytes': ['N', 'fetch answer bytes per second per client; over it answers are delayed (default unlimited)'],
  '--quota-requests': ['N', `produce and fetch requests per second per client, 1-${quotaRequestsMax}; over it answers are delayed (default unlimited)`],
  '--quota-throttle-max': ['DURATION', `longest an answer is delayed for quotas, up to ${quotaThrottleMsMaxLimit / 1000}s (default ${defaults.quotaThrottleMsMax / 1000}s)`],
  '--http-connections-max': ['N', `HTTP connections open at once; more are answered 503 OVERLOADED and closed (default half the descriptor limit, at most ${httpConnectionsMaxDefault})`],
  '--http-connections-per-address-max': ['N', `HTTP connections open at once from one client address (default ${defaults.httpConnectionsPerAddressMax})`],
  '--http-idle-timeout': ['DURATION', `an HTTP connection without a request in flight is closed after this (default ${defaults.httpIdleTimeoutMs / 1000}s)`],
  '--http-request-timeout': ['DURATION', `longest a client may take to send a request; then 408 (default ${defaults.httpRequestTimeoutMs / 1000}s)`],
  '--topic-partitions-max': ['N', `partitions one topic may have (default ${defaults.topicPartitionsMax}, at most ${topicPartitionsMaxMax})`],
  '--cluster-partitions-max': ['N', `partitions of all topics together (default ${defaults.clusterPartitionsMax})`],
}

/** The text of `rill broker --help`. */
export function brokerUsage(): string {
  const envOf = new Map(Object.entries(envToKey).map(([name, key]) => [key, name]))
  const rows = (Object.keys(flagHelp) as BrokerFlag[]).map((flag) => {
    const [value, about] = flagHelp[flag]
    return { left: `${flag} ${value}`, right: `${about} [${envOf.get(flagToKey[flag])}]` }
  })
  rows.push({ left: '--config FILE', right: 'the same settings as a JSON object (keys: id, dir, http, peer, seeds, secretFile, ...)' })
  rows.push({ left: '--help, -h', right: 'this text' })
  const width = Math.max(...rows.map((r) => r.left.length))
  return [
    'usage: rill broker --id N --dir DIR --http HOST:PORT --peer HOST:PORT --seeds ID@HOST:PORT,... [flags]',
    '       rill broker --config FILE [flags]',
    '  runs one broker in this process; SIGTERM or SIGINT stops it gracefully',
    '',
    'flags (each also from the environment variable in brackets; a flag beats the environment, which beats --config):',
    ...rows.map((r) => `  ${r.left.padEnd(width)}  ${r.right}`),
    '',
    'without --secret or --secret-file a public development secret is used, allowed only with --http and --peer on loopback',
    'exit codes: 0 stopped cleanly, 1 failed or stop unfinished, 2 bad flag or value',
  ].join('\n')
}

/** True if `argv` asks for the usage text (`--help` or `-h` anywhere). */
export function wantsBrokerHelp(argv: readonly string[]): boolean {
  return argv.includes('--help') || argv.includes('-h')
}

const envToKey: Record<string, string> = {
  RILL_ID: 'id',
  RILL_DIR: 'dir',
  RILL_HTTP: 'http',
  RILL_PEER: 'peer',
  RILL_SEEDS: 'seeds',
  RILL_CLUSTER_ID: 'clusterId',
  RILL_SECRET: 'secret',
  RILL_SECRET_FILE: 'secretFile',
  RILL_PERSISTENCE: 'defaultPersistence',
  RILL_RACK: 'rack',
  RILL_TICK_MS: 'tickMs',
  RILL_ELECTION_TICKS: 'electionTicks',
  RILL_HEARTBEAT_TICKS: 'heartbeatTicks',
  RILL_LOG_LEVEL: 'logLevel',
  RILL_JOIN: 'join',
  RILL_SHUTDOWN_TIMEOUT: 'shutdownTimeoutMs',
  RILL_TLS_CERT: 'tlsCert',
  RILL_TLS_KEY: 'tlsKey',
  RILL_TLS_CA: 'tlsCa',
  RILL_TLS_CLIENT_AUTH: 'tlsClientAuth',
  RILL_QUOTA_PRODUCE_BYTES: 'quotaProduceBytes',
  RILL_QUOTA_FETCH_BYTES: 'quotaFetchBytes',
  RILL_QUOTA_REQUESTS: 'quotaRequests',
  RILL_QUOTA_THROTTLE_MAX: 'quotaThrottleMaxMs',
  RILL_HTTP_CONNECTIONS_MAX: 'httpConnectionsMax',
  RILL_HTTP_CONNECTIONS_PER_ADDRESS_MAX: 'httpConnectionsPerAddressMax',
  RILL_HTTP_IDLE_TIMEOUT: 'httpIdleTimeoutMs',
  RILL_HTTP_REQUEST_TIMEOUT: 'httpRequestTimeoutMs',
  RILL_TOPIC_PARTITIONS_MAX: 'topicPartitionsMax',
  RILL_CLUSTER_PARTITIONS_MAX: 'clusterPartitionsMax',
  RILL_AUTH: 'auth',
  RILL_SUPER_USERS: 'superUsers',
}

function bad(what: string, message: string): RillError {
  return new RillError(ErrorCode.INVALID_REQUEST, `${what}: ${message}`, { details: { field: what } })
}

/** Parses `rill broker` flags + environment (+ --config FILE) into a checked config. */
export function parseBrokerConfig(argv: readonly string[], env: NodeJS.ProcessEnv): BrokerConfig {
  const fromFlags: Record<string, string> = {}
  let configFile: string | null = null
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    const value = argv[i + 1]
    if (flag === '--config') {
      if (value === undefined) throw bad('--config', 'needs a file path')
      configFile = value
      i++
      continue
    }
    const key = (flagToKey as Record<string, string>)[flag]
    if (key === undefined) throw bad(flag, 'unknown flag')
    if (value === undefined || value.startsWith('--')) throw bad(flag, 'needs a value')
    fromFlags[key] = value
    i++
  }
  const fromFile: Record<string, unknown> = configFile === null ? {} : readConfigFile(configFile)
  const fromEnv: Record<string, string> = {}
  for (const [name, key] of Object.entries(envToKey)) if (env[name] !== undefined && env[name] !== '') fromEnv[key] = env[name]!
  const pick = (key: string): unknown => fromFlags[key] ?? fromEnv[key] ?? fromFile[key]

  const id = integer('id', pick('id'), 1, 0x1f_ffff)
  const dir = requiredString('dir', pick('dir'))
  const http = hostPort('http', pick('http'))
  const peer = hostPort('peer', pick('peer'))
  const seeds = parseSeeds(pick('seeds'))
  const clusterId = optionalString('cluster-id', pick('clusterId')) ?? defaults.clusterId
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(clusterId)) throw bad('cluster-id', 'use 1-64 of [A-Za-z0-9._-]')
  const secretText = optionalString('secret', pick('secret'))
  const secretFile = optionalString('secret-file', pick('secretFile'))
  if (secretText !== null && secretFile !== null) throw bad('secret', 'give --secret or --secret-file, not both')
  const configured = secretFile !== null ? parseSecret(readSecretFile(secretFile), 'secret-file') : secretText !== null ? parseSecret(secretText, 'secret') : null
  if (configured === null && !(isLoopbackHost(http.host) && isLoopbackHost(peer.host))) {
    const exposed = isLoopbackHost(http.host) ? `--peer ${peer.host}` : `--http ${http.host}`
    throw bad(
      'secret',
      `required when a listener is not on loopback (${exposed}): the development secret is public. ` +
        'Give --secret HEX or --secret-file PATH (64 hex digits, e.g. from `openssl rand -hex 32`; the same on every broker)',
    )
  }
  const secret = configured ?? developmentSecret(clusterId)
  const persistence = optionalString('persistence', pick('defaultPersistence')) ?? defaults.defaultPersistence
  if (persistence !== 'sync' && persistence !== 'async' && persistence !== 'memory') throw bad('persistence', 'one of sync, async, memory')
  const rack = optionalString('rack', pick('rack'))
  const tickMs = optionalInteger('tick-ms', pick('tickMs'), tickMsMin, tickMsMax) ?? defaults.tickMs
  const electionTicks = optionalInteger('election-ticks', pick('electionTicks'), 2, electionTicksMax) ?? defaults.electionTicks
  const heartbeatTicks = optionalInteger('heartbeat-ticks', pick('heartbeatTicks'), 1, electionTicksMax) ?? defaults.heartbeatTicks
  if (heartbeatTicks >= electionTicks) throw bad('heartbeat-ticks', `must be below election-ticks (${electionTicks})`)
  const logLevel = optionalString('log-level', pick('logLevel')) ?? defaults.logLevel
  const join = parseJoin(pick('join'))
  const shutdownTimeoutMs = optionalDurationMs('shutdown-timeout', pick('shutdownTimeoutMs'), shutdownTimeoutMsMin, shutdownTimeoutMsMax) ?? defaults.shutdownTimeoutMs
  if (!seeds.some((seed) => seed.id === id) && join.length === 0) {
    throw bad('join', `broker ${id} is not in --seeds: give --join http://HOST:PORT of a broker already in the cluster`)
  }
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) throw bad('log-level', 'a pino level')
  const tls = parseTls(pick, [http.host, peer.host])
  const quotas = parseQuotas(pick)
  const httpConnections = {
    max: optionalInteger('http-connections-max', pick('httpConnectionsMax'), 1, httpConnectionsMaxMax),
    perAddressMax: optionalInteger('http-connections-per-address-max', pick('httpConnectionsPerAddressMax'), 1, httpConnectionsMaxMax) ?? defaults.httpConnectionsPerAddressMax,
    idleMs: optionalDurationMs('http-idle-timeout', pick('httpIdleTimeoutMs'), httpTimeoutMsMin, httpTimeoutMsMax) ?? defaults.httpIdleTimeoutMs,
    requestMs: optionalDurationMs('http-request-timeout', pick('httpRequestTimeoutMs'), httpTimeoutMsMin, httpTimeoutMsMax) ?? defaults.httpRequestTimeoutMs,
  }
  const topicPartitionsMax = optionalInteger('topic-partitions-max', pick('topicPartitionsMax'), 1, topicPartitionsMaxMax) ?? defaults.topicPartitionsMax
  const clusterPartitionsMax = optionalInteger('cluster-partitions-max', pick('clusterPartitionsMax'), 1, clusterPartitionsMaxMax) ?? defaults.clusterPartitionsMax
  const auth = optionalString('auth', pick('auth')) ?? 'none'
  if (!authModes.includes(auth as AuthMode)) throw bad('auth', `one of ${authModes.join(', ')}`)
  const superUsers = parseSuperUsers(pick('superUsers'))
  return {
    id,
    dir,
    http,
    peer,
    seeds,
    clusterId,
    secret,
    secretIsDevelopment: configured === null,
    defaultPersistence: persistence,
    rack,
    tickMs,
    electionTicks,
    heartbeatTicks,
    logLevel,
    join,
    shutdownTimeoutMs,
    tls,
    auth: auth as AuthMode,
    superUsers,
    httpConnections,
    topicPartitionsMax,
    clusterPartitionsMax,
    quotas,
  }
}

/** `--quota-*`: each limit absent is unlimited; a limit is a positive integer per second. */
function parseQuotas(pick: (key: string) => unknown): QuotaSettings {
  return {
    produceBytesPerSecond: optionalInteger('quota-produce-bytes', pick('quotaProduceBytes'), 1, Number.MAX_SAFE_INTEGER),
    fetchBytesPerSecond: optionalInteger('quota-fetch-bytes', pick('quotaFetchBytes'), 1, Number.MAX_SAFE_INTEGER),
    requestsPerSecond: optionalInteger('quota-requests', pick('quotaRequests'), 1, quotaRequestsMax),
    throttleMsMax: optionalDurationMs('quota-throttle-max', pick('quotaThrottleMaxMs'), 1, quotaThrottleMsMaxLimit) ?? defaults.quotaThrottleMsMax,
  }
}

function parseSuperUsers(v: unknown): string[] {
  const s = optionalString('super-users', v)
  if (s === null) return []
  const names = s.split(',').map((n) => n.trim())
  if (names.length > superUsersMax) throw bad('super-users', `at most ${superUsersMax} principals`)
  for (const n of names) if (!principalPattern.test(n)) throw bad('super-users', `"${n}" is not a principal (1..255 of [A-Za-z0-9 ._@:=+/-], starting with a letter or digit)`)
  return [...new Set(names)]
}

/**
 * `--tls-cert` and `--tls-key` turn TLS on and need `--tls-ca` (brokers
 * verify each other against it); `--tls-ca` and `--tls-client-auth` alone
 * are a mistake, not a plaintext broker. The files are checked now, so a
 * bad one exits 2 before anything starts.
 */
function parseTls(pick: (key: string) => unknown, hosts: readonly string[]): TlsConfig | null {
  const certFile = optionalString('tls-cert', pick('tlsCert'))
  const keyFile = optionalString('tls-key', pick('tlsKey'))
  const caFile = optionalString('tls-ca', pick('tlsCa'))
  const clientAuth = optionalString('tls-client-auth', pick('tlsClientAuth'))
  if (clientAuth !== null && !clientAuthModes.includes(clientAuth as ClientAuth)) throw bad('tls-client-auth', `one of ${clientAuthModes.join(', ')}`)
  if (certFile === null && keyFile === null) {
    if (caFile !== null) throw bad('tls-ca', 'needs --tls-cert and --tls-key (TLS is on only with a certificate)')
    if (clientAuth !== null) throw bad('tls-client-auth', 'needs --tls-cert, --tls-key and --tls-ca')
    return null
  }
  if (certFile === null) throw bad('tls-cert', 'is required with --tls-key')
  if (keyFile === null) throw bad('tls-key', 'is required with --tls-cert')
  if (caFile === null) throw bad('tls-ca', 'is required with --tls-cert: brokers verify each other against this CA')
  const tls: TlsConfig = { certFile, keyFile, caFile, clientAuth: (clientAuth as ClientAuth | null) ?? 'none' }
  loadTlsMaterial(tls, { nowMs: systemRuntime.wallMs(), hosts })
  return tls
}

function parseJoin(v: unknown): string[] {
  const s = optionalString('join', v)
  if (s === null) return []
  const urls = s.split(',')
  for (const u of urls) {
    if (!/^https?:\/\/[A-Za-z0-9.\-[\]:]+:\d{1,5}\/?$/.test(u)) throw bad('join', `expected http://HOST:PORT, got "${u}"`)
  }
  return urls.map((u) => u.replace(/\/$/, ''))
}

function readConfigFile(path: string): Record<string, unknown> {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (error) {
    throw bad('--config', `cannot read ${path}: ${(error as Error).message}`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw bad('--config', `${path} is not JSON: ${(error as Error).message}`)
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw bad('--config', `${path} must hold a JSON object`)
  const known = new Set<string>(Object.values(flagToKey))
  for (const key of Object.keys(parsed)) if (!known.has(key)) throw bad('--config', `unknown key "${key}" in ${path}`)
  return parsed as Record<string, unknown>
}

function requiredString(what: string, v: unknown): string {
  const s = optionalString(what, v)
  if (s === null) throw bad(what, 'is required')
  return s
}

function optionalString(what: string, v: unknown): string | null {
  if (v === undefined || v === null) return null
  if (typeof v !== 'string' || v.length === 0) throw bad(what, 'must be a non-empty string')
  return v
}

function integer(what: string, v: unknown, min: number, max: number): number {
  const n = optionalInteger(what, v, min, max)
  if (n === null) throw bad(what, 'is required')
  return n
}

function optionalInteger(what: string, v: unknown, min: number, max: number): number | null {
  if (v === undefined || v === null) return null
  const n = typeof v === 'number' ? v : typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : Number.NaN
  if (!Number.isSafeInteger(n) || n < min || n > max) throw bad(what, `must be an integer in [${min}, ${max}]`)
  return n
}

/**
 * A duration: `250ms`, `10s`, or a bare integer of milliseconds (a JSON
 * config may give a number). Answers milliseconds within [min, max].
 */
function optionalDurationMs(what: string, v: unknown, min: number, max: number): number | null {
  if (v === undefined || v === null) return null
  const m = typeof v === 'string' ? /^(\d{1,10})(ms|s)?$/.exec(v) : null
  const ms = typeof v === 'number' ? v : m === null ? Number.NaN : Number(m[1]) * (m[2] === 's' ? 1000 : 1)
  if (!Number.isSafeInteger(ms) || ms < min || ms > max) throw bad(what, `must be a duration like 10s or 500ms (a bare number is ms) in [${min} ms, ${max / 1000} s]`)
  return ms
}

export function hostPort(what: string, v: unknown): HostPort {
  const s = requiredString(what, v)
  const m = /^([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$/.exec(s)
  if (m === null) throw bad(what, `expected HOST:PORT, got "${s}"`)
  const port = Number(m[2])
  if (port > 65535) throw bad(what, `port ${port} out of range`)
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port }
}

function parseSeeds(v: unknown): Seed[] {
  const s = requiredString('seeds', v)
  const seeds: Seed[] = []
  for (const part of s.split(',')) {
    const at = part.indexOf('@')
    if (at <= 0) throw bad('seeds', `expected ID@HOST:PORT, got "${part}"`)
    const id = integer('seeds', part.slice(0, at), 1, 0x1f_ffff)
    if (seeds.some((x) => x.id === id)) throw bad('seeds', `broker ${id} listed twice`)
    seeds.push({ id, ...hostPort('seeds', part.slice(at + 1)) })
  }
  if (seeds.length > seedsMax) throw bad('seeds', `at most ${seedsMax} controller voters`)
  return seeds
}

function parseSecret(s: string, what: string): Uint8Array {
  if (!/^[0-9a-fA-F]{64}$/.test(s)) throw bad(what, 'must be 64 hex digits (32 bytes)')
  return Uint8Array.from(Buffer.from(s, 'hex'))
}

/**
 * The cluster secret in `path`, with the same rules as a broker's
 * `--secret-file` (owner-only file of 64 hex digits): `rill acl token create
 * --secret-file` authenticates with it. INVALID_REQUEST naming the flag.
 */
export function readClusterSecretFile(path: string): Uint8Array {
  return parseSecret(readSecretFile(path), 'secret-file')
}

/** Longest secret file read, bytes (64 hex digits and some white space). */
export const secretFileBytesMax = 1024

/**
 * The secret file's text, without surrounding white space. Refused: a file
 * that is not a regular file, that group or others may read or write (mode
 * & 0o077), that is empty, or larger than `secretFileBytesMax`.
 */
function readSecretFile(path: string): string {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch (error) {
    throw bad('secret-file', `cannot read ${path}: ${(error as Error).message}`)
  }
  try {
    const stat = fstatSync(fd)
    if (!stat.isFile()) throw bad('secret-file', `${path} is not a regular file`)
    if ((stat.mode & 0o077) !== 0) {
      throw bad('secret-file', `${path} is open to group or others (mode ${(stat.mode & 0o777).toString(8).padStart(3, '0')}): chmod 600 ${path}`)
    }
    if (stat.size > secretFileBytesMax) throw bad('secret-file', `${path} holds ${stat.size} bytes; a secret is 64 hex digits`)
    // Read to the end, at most one byte past the bound (the buffer bounds the loop).
    const buf = Buffer.alloc(secretFileBytesMax + 1)
    let n = 0
    while (n < buf.byteLength) {
      const got = readSync(fd, buf, n, buf.byteLength - n, null)
      if (got === 0) break
      n += got
    }
    if (n > secretFileBytesMax) throw bad('secret-file', `${path} is larger than ${secretFileBytesMax} bytes; a secret is 64 hex digits`)
    const text = buf.subarray(0, n).toString('utf8').trim()
    if (text.length === 0) throw bad('secret-file', `${path} is empty`)
    return text
  } finally {
    closeSync(fd)
  }
}

/** Loopback addresses: 127.0.0.0/8, ::1, and IPv4 loopback mapped into IPv6. */
const loopback = new BlockList()
loopback.addSubnet('127.0.0.0', 8, 'ipv4')
loopback.addAddress('::1', 'ipv6')
loopback.addSubnet('::ffff:127.0.0.0', 104, 'ipv6')

/**
 * True if `host` (as given to --http / --peer) is a loopback address or
 * `localhost`. Any other name is not: it may resolve anywhere, and `0.0.0.0`
 * or `::` listen on every interface.
 */
export function isLoopbackHost(host: string): boolean {
  if (host.toLowerCase() === 'localhost') return true
  if (isIPv6(host)) return loopback.check(host, 'ipv6')
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(host) || host.split('.').some((octet) => Number(octet) > 255)) return false
  return loopback.check(host, 'ipv4')
}

/** The secret used when none is configured: derived from the cluster id, fine on loopback, never in production. */
function developmentSecret(clusterId: string): Uint8Array {
  return Uint8Array.from(createHash('sha256').update(`rill development secret for cluster ${clusterId}`).digest())
}
