/**
 * `rill broker`: one broker process, assembled here so that src/broker knows
 * no HTTP. Parse the config, open the data directory, join the cluster,
 * serve the HTTP API (src/api) with the broker-to-broker internal routes,
 * and stop within a bound.
 *
 *   SIGTERM | SIGINT | parent gone ──▶ graceful stop: hand leadership away,
 *       close groups, store, HTTP ──▶ exit 0
 *     ├─ not done within --shutdown-timeout ──▶ "shutdown_timeout" log line, exit 1
 *     └─ a second SIGTERM/SIGINT ──────────▶ "shutdown_forced" log line, exit 1 at once
 *   the same while still starting ──────────▶ "shutdown_forced" log line, exit 1 at once
 *
 * Exiting before the stop is done loses nothing acknowledged: a write is
 * acknowledged only once it is durable as its persistence mode promises.
 *
 * A broker started with an IPC channel (node's `fork`, or `spawn` with an
 * 'ipc' stdio entry — `rill dev` and the tests do so) stops when the channel
 * closes: the kernel closes it when the parent dies, even by SIGKILL, so a
 * killed test or `rill dev` leaves no broker behind. The channel is the
 * opt-in: a broker left running on purpose (nohup, a service manager) has
 * none. Node has no PR_SET_PDEATHSIG, and a main thread that spins or blocks
 * never sees the channel close: a watchdog thread (orphan-watchdog.ts) then
 * SIGKILLs the process once the parent has been gone for the shutdown bound
 * and `orphanKillSlackMs` more.
 *
 * Logs go to stdout synchronously: pino's default asynchronous stdout, at
 * exit, retries a write that fails with EPIPE forever (sonic-boom's
 * flushSync), so a broker whose reader had died (a SIGKILLed `rill dev`)
 * stopped cleanly and then never exited.
 *
 * A bad flag exits 2 and an unusable data directory exits 1, each with a
 * one-line reason on stderr.
 *
 * TLS (--tls-cert, --tls-key, --tls-ca): the API is served over https and
 * advertised as https://; peers connect over TLS. Internal routes then also
 * need a client certificate of the cluster CA (a broker's own), on top of
 * the cluster MAC. SIGHUP reads the three files again:
 *
 *   SIGHUP ──▶ load + check (tls.ts) ──ok──▶ HTTP server, peer transport, peer HTTP: new
 *                                  │          context for new connections; "tls_reloaded"
 *                                  └─bad──▶ keep the old context; "tls_reload_failed" (error)
 */
import type { Socket } from 'node:net'
import type { TLSSocket, Server as TlsServer } from 'node:tls'
import { createSecureContext } from 'node:tls'
import pino from 'pino'
import type { FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import { isRillError, noTimer, RillError, ErrorCode, systemRuntime } from '../base/index.ts'
import { buildApi, connectionLimits, type ApiAuth, type BrokerService, type ConnectionLimits } from '../api/index.ts'
import {
  Broker,
  descriptorLimit,
  httpConnectionsMaxDefault,
  brokerUsage,
  clientCertificateRefusal,
  isLoopbackHost,
  loadTlsMaterial,
  offsetsTopic,
  offsetsTopicPartitions,
  parseBrokerConfig,
  secureContextOptions,
  serverTlsOptions,
  wantsBrokerHelp,
  type BrokerConfig,
  type TlsMaterial,
} from '../broker/index.ts'
import { registerInternalRoutes } from './internal-routes.ts'
import { startOrphanWatchdog } from './orphan-watchdog.ts'

/** Exit code of a stop that did not finish (timed out, forced by a second signal, or failed). */
export const exitStopUnfinished = 1
/** After the parent is gone: the shutdown bound plus this, then the watchdog SIGKILLs a broker still there, ms. */
export const orphanKillSlackMs = 3000
/** A certificate expiring sooner than this is logged as a warning at start and on reload, ms. */
export const tlsExpiryWarningMs = 14 * 86_400_000

export interface RunningBroker {
  readonly broker: Broker
  readonly url: string
  /** Graceful stop: the broker, then the HTTP server. Not bounded here: `runBroker` bounds it. */
  stop(): Promise<void>
  /**
   * Reads the TLS files again and, if they pass the checks, uses them for
   * new connections (HTTP, peer transport, peer HTTP); otherwise keeps the
   * ones in use. Logs either way; true if reloaded. (SIGHUP.)
   */
  reloadTls(): boolean
}

/** Loads config.tls's files for this broker's hosts, checked now (null: TLS is off). */
function loadTls(config: BrokerConfig): TlsMaterial | null {
  if (config.tls === null) return null
  return loadTlsMaterial(config.tls, { nowMs: systemRuntime.wallMs(), hosts: [config.http.host, config.peer.host] })
}

function logTls(logger: Logger, event: 'tls' | 'tls_reloaded', material: TlsMaterial): void {
  const fields = { event, subject: material.subject, serial: material.serial, fingerprint256: material.fingerprint256, validTo: new Date(material.validToMs).toISOString() }
  logger.info(fields, `${event === 'tls' ? 'TLS on' : 'TLS reloaded'}: certificate ${material.subject}, serial ${material.serial}`)
  const leftMs = material.validToMs - systemRuntime.wallMs()
  if (leftMs < tlsExpiryWarningMs) logger.warn({ event: 'tls_expiring', validTo: fields.validTo }, `the TLS certificate expires in ${Math.floor(leftMs / 86_400_000)} days (${fields.validTo}): replace the files and send SIGHUP`)
}

/**
 * The TCP connections of the HTTPS server still in their TLS handshake (a
 * stranger can hold one open for the handshake bound): a connection joins
 * when accepted and leaves once its handshake is done (matched by its
 * addresses and ports) or it closes.
 */
function trackHandshakes(server: TlsServer): ReadonlySet<Socket> {
  const byAddress = new Map<string, Socket>()
  const key = (s: { remoteAddress?: string | undefined; remotePort?: number | undefined; localPort?: number | undefined }): string => `${s.remoteAddress}|${s.remotePort}|${s.localPort}`
  const pending = new Set<Socket>()
  server.on('connection', (raw: Socket) => {
    const k = key(raw)
    pending.add(raw)
    byAddress.set(k, raw)
    raw.once('close', () => {
      pending.delete(raw)
      if (byAddress.get(k) === raw) byAddress.delete(k)
    })
  })
  server.on('secureConnection', (socket: TLSSocket) => {
    const raw = byAddress.get(key(socket))
    if (raw === undefined) return
    pending.delete(raw)
    byAddress.delete(key(socket))
  })
  return pending
}

/**
 * The HTTP connection bounds of `config` (issue 10, hole 4). Without
 * --http-connections-max: half the descriptor limit (the other half for
 * logs, peer links and the reserve replicas leave), at most
 * httpConnectionsMaxDefault; the API's default when the limit is unknown.
 */
export function httpConnectionLimits(config: BrokerConfig, fdLimit: number | null): ConnectionLimits {
  const c = config.httpConnections
  const connectionsMax = c.max ?? (fdLimit === null ? connectionLimits().connectionsMax : Math.max(1, Math.min(httpConnectionsMaxDefault, Math.floor(fdLimit / 2))))
  return connectionLimits({
    connectionsMax,
    connectionsPerAddressMax: Math.min(c.perAddressMax, connectionsMax),
    idleMs: c.idleMs,
    requestMs: c.requestMs,
    headersMs: Math.min(connectionLimits().headersMs, c.requestMs),
  })
}

/** The route fastify matched is an internal one (decided on the route, not on the URL string). */
function isInternalRoute(request: FastifyRequest): boolean {
  return request.routeOptions.url?.startsWith('/internal/') === true
}

/** Starts a broker and its HTTP server (used by `rill broker` and by tests in one process). */
export async function startBroker(config: BrokerConfig, logger: Logger): Promise<RunningBroker> {
  let tls = loadTls(config)
  const scheme = tls === null ? 'http' : 'https'
  const url = `${scheme}://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${config.http.port}`
  if (config.secretIsDevelopment) logger.warn({ event: 'development_secret' }, 'no --secret given: using the development secret (loopback only)')
  if (tls !== null) logTls(logger, 'tls', tls)
  const broker = await Broker.start(config, logger, { httpUrl: url, tls })
  // A Broker is the service the API calls: checked structurally here (src/broker does not import src/api).
  const service: BrokerService = broker
  // Client authentication (--auth): tokens and ACLs from the metadata; with --tls-client-auth, a client certificate of the CA names its CN.
  const auth: ApiAuth = {
    required: config.auth === 'required',
    certificates: config.tls !== null && config.tls.clientAuth !== 'none',
    authenticate: (token) => broker.security.authenticate(token),
    allows: (principal, operation, resource) => broker.security.allows(principal, operation, resource),
  }
  if (auth.required && tls === null && !(isLoopbackHost(config.http.host))) {
    logger.warn({ event: 'auth_plaintext' }, `--auth required without TLS on ${config.http.host}: bearer tokens cross the network in the clear; add --tls-cert, --tls-key and --tls-ca`)
  }
  if (auth.required) logger.info({ event: 'auth', superUsers: config.superUsers, certificates: auth.certificates }, `client authentication required; super-users: ${config.superUsers.join(', ') || 'none'}`)
  const connections = httpConnectionLimits(config, descriptorLimit())
  logger.info({ event: 'http_connection_limits', connectionsMax: connections.connectionsMax, connectionsPerAddressMax: connections.connectionsPerAddressMax, idleMs: connections.idleMs, requestMs: connections.requestMs }, 'HTTP connection limits')
  const app = buildApi({ service, logger, auth, connections, forwardFetch: broker.peerFetch, quotas: config.quotas, ...(tls === null ? {} : { https: serverTlsOptions(tls) }) })
  // Before the internal routes are registered, so their context inherits the check.
  if (tls !== null) requireClientCertificates(app, config.tls!.clientAuth)
  const handshaking = tls === null ? null : trackHandshakes(app.server as unknown as TlsServer)
  // Broker-to-broker routes: authenticated by route, in their own plugin (internal-routes.ts).
  await registerInternalRoutes(app, { secret: config.secret, service: broker, offsetsTopic: { name: offsetsTopic, partitions: offsetsTopicPartitions } })
  try {
    await app.listen({ host: config.http.host, port: config.http.port })
  } catch (error) {
    await broker.stop()
    throw new RillError(ErrorCode.STORAGE_UNUSABLE, `cannot listen on ${config.http.host}:${config.http.port}: ${(error as Error).message}`)
  }
  logger.info({ event: 'http_listening', url }, `HTTP on ${url}`)
  let stopping: Promise<void> | null = null
  const reloadTls = (): boolean => {
    const current = tls
    if (current === null || config.tls === null) {
      logger.warn({ event: 'tls_reload_skipped' }, 'nothing to reload: TLS is off')
      return false
    }
    let next: TlsMaterial
    try {
      next = loadTls(config)!
      // Everything that could refuse the material is tried before anything uses it: all three switch, or none.
      createSecureContext(secureContextOptions(next))
      ;(app.server as unknown as TlsServer).setSecureContext(secureContextOptions(next))
      broker.setTls(next)
    } catch (error) {
      const reason = (error as Error).message
      logger.error({ event: 'tls_reload_failed', reason, kept: current.fingerprint256 }, `TLS reload failed, keeping certificate serial ${current.serial}: ${reason}`)
      return false
    }
    tls = next
    logTls(logger, 'tls_reloaded', next)
    return true
  }
  return {
    broker,
    url,
    reloadTls,
    stop: () => {
      stopping ??= (async () => {
        await broker.stop()
        // The server's close waits for every connection, a TLS handshake in progress too (up to its 10 s bound).
        for (const socket of handshaking ?? []) socket.destroy()
        await app.close()
      })()
      return stopping
    },
  }
}

/**
 * The client-certificate rules of the HTTPS API (tls.ts
 * clientCertificateRefusal), checked on every request before anything
 * else: `required` answers a client without a certificate of the CA 401,
 * `optional` one that shows a certificate not of the CA; internal routes
 * answer only a caller with a certificate of the CA (other brokers), on top
 * of the cluster MAC. A 401 in the error shape tells a client why, where a
 * refusal in the TLS handshake would only close its connection.
 */
function requireClientCertificates(app: ReturnType<typeof buildApi>, clientAuth: NonNullable<BrokerConfig['tls']>['clientAuth']): void {
  // What a connection's handshake said about its client certificate, once per connection (kept-alive ones carry many requests).
  const peers = new WeakMap<TLSSocket, { authorized: boolean; presented: boolean; error: string | null }>()
  app.addHook('onRequest', async (request) => {
    const socket = request.raw.socket as TLSSocket
    let peer = peers.get(socket)
    if (peer === undefined) {
      const error = socket.authorizationError === undefined || socket.authorizationError === null ? null : String(socket.authorizationError)
      peer = { authorized: socket.authorized === true, presented: Object.keys(socket.getPeerCertificate()).length > 0, error }
      peers.set(socket, peer)
    }
    const refusal = clientCertificateRefusal(peer, clientAuth, isInternalRoute(request))
    if (refusal !== null) throw new RillError(ErrorCode.UNAUTHORIZED, refusal)
  })
}

/**
 * `rill broker ...`: returns the exit code once the broker stopped, or gave
 * up stopping. The caller exits the process with it at once: after a stop
 * that timed out, the stuck work still holds the event loop.
 */
export async function runBroker(argv: readonly string[]): Promise<number> {
  if (wantsBrokerHelp(argv)) {
    process.stdout.write(`${brokerUsage()}\n`)
    return 0
  }
  let config: BrokerConfig
  try {
    config = parseBrokerConfig(argv, process.env)
  } catch (error) {
    // One coded line: `rill broker: INVALID_REQUEST: secret: required when ...`.
    const code = isRillError(error) ? `${error.code}: ` : ''
    process.stderr.write(`rill broker: ${code}${(error as Error).message}\n`)
    return 2
  }
  const logger = pino({ level: config.logLevel, base: { broker: config.id } }, pino.destination({ dest: 1, sync: true }))
  // Watched from the start: a signal or a parent gone while the broker is starting ends it too.
  const stopRequests = new StopRequests({ orphanKillMs: config.shutdownTimeoutMs + orphanKillSlackMs })
  // Taken from the start when TLS is on (SIGHUP's default ends the process): while starting, the files are being read anyway.
  let running: RunningBroker | null = null
  const onSighup = (): void => {
    if (running === null) logger.warn({ event: 'tls_reload_skipped' }, 'SIGHUP while starting: the TLS files are read at start')
    else running.reloadTls()
  }
  if (config.tls !== null) process.on('SIGHUP', onSighup)
  try {
    const firstStop = stopRequests.next()
    const started = await Promise.race([
      startBroker(config, logger).then(
        (running) => ({ running }),
        (error: unknown) => ({ error }),
      ),
      firstStop.then((reason) => ({ reason })),
    ])
    if ('reason' in started) {
      // Nothing is acknowledged before the broker serves: exit as a crash would, the log recovers.
      logger.warn({ event: 'shutdown_forced', reason: started.reason }, `${started.reason} while starting: exiting at once`)
      return exitStopUnfinished
    }
    if ('error' in started) {
      const code = isRillError(started.error) ? started.error.code : 'ERROR'
      process.stderr.write(`rill broker: ${code}: ${(started.error as Error).message}\n`)
      return 1
    }
    running = started.running
    const reason = await firstStop
    return await stopWithin(started.running, { logger, reason, shutdownTimeoutMs: config.shutdownTimeoutMs, again: stopRequests.next() })
  } finally {
    stopRequests.dispose()
    process.removeListener('SIGHUP', onSighup)
  }
}

/**
 * Why the broker should stop: a signal, or the parent gone (its IPC channel
 * closed). Each `next()` resolves with the next such request; one that came
 * before anyone asked is kept.
 */
class StopRequests {
  readonly #pending: string[] = []
  #waiter: ((reason: string) => void) | null = null
  readonly #onSigterm = (): void => this.#push('SIGTERM')
  readonly #onSigint = (): void => this.#push('SIGINT')
  readonly #onDisconnect = (): void => this.#push('parent process gone (IPC channel closed)')

  constructor(options: { orphanKillMs: number }) {
    process.on('SIGTERM', this.#onSigterm)
    process.on('SIGINT', this.#onSigint)
    if (process.channel !== undefined) {
      startOrphanWatchdog({ parentPid: process.ppid, graceMs: options.orphanKillMs })
      // The channel is only a lifeline: it must not keep a stopped broker alive.
      process.channel.unref()
      process.on('disconnect', this.#onDisconnect)
      if (!process.connected) this.#onDisconnect()
    }
  }

  next(): Promise<string> {
    const reason = this.#pending.shift()
    if (reason !== undefined) return Promise.resolve(reason)
    return new Promise((resolve) => (this.#waiter = resolve))
  }

  dispose(): void {
    process.removeListener('SIGTERM', this.#onSigterm)
    process.removeListener('SIGINT', this.#onSigint)
    process.removeListener('disconnect', this.#onDisconnect)
  }

  #push(reason: string): void {
    const waiter = this.#waiter
    this.#waiter = null
    if (waiter !== null) waiter(reason)
    else this.#pending.push(reason)
  }
}

/** Stops gracefully, or gives up after `shutdownTimeoutMs` or at the next stop request; answers the exit code. */
async function stopWithin(running: RunningBroker, options: { logger: Logger; reason: string; shutdownTimeoutMs: number; again: Promise<string> }): Promise<number> {
  const { logger, reason, shutdownTimeoutMs } = options
  logger.info({ event: 'stopping', reason, shutdownTimeoutMs }, `${reason}: stopping (at most ${shutdownTimeoutMs} ms; a second signal exits at once)`)
  let timer = noTimer
  const timedOut = new Promise<number>((resolve) => {
    timer = systemRuntime.setTimer(() => {
      logger.error(
        { event: 'shutdown_timeout', shutdownTimeoutMs },
        `graceful stop did not finish within ${shutdownTimeoutMs} ms (--shutdown-timeout): exiting anyway; acknowledged writes are already durable`,
      )
      resolve(exitStopUnfinished)
    }, shutdownTimeoutMs)
  })
  const forced = options.again.then((second) => {
    logger.warn({ event: 'shutdown_forced', reason: second }, `${second} during the graceful stop: exiting at once; acknowledged writes are already durable`)
    return exitStopUnfinished
  })
  const stopped = running.stop().then(
    () => 0,
    (error: unknown) => {
      process.stderr.write(`rill broker: stop failed: ${(error as Error).message}\n`)
      return exitStopUnfinished
    },
  )
  try {
    return await Promise.race([stopped, timedOut, forced])
  } finally {
    timer.cancel()
  }
}
