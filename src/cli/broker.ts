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
 */
import pino from 'pino'
import type { Logger } from 'pino'
import { isRillError, noTimer, RillError, ErrorCode, systemRuntime } from '../base/index.ts'
import { buildApi, type BrokerService } from '../api/index.ts'
import { Broker, brokerUsage, wantsBrokerHelp, offsetsTopic, offsetsTopicPartitions, parseBrokerConfig, type BrokerConfig } from '../broker/index.ts'
import { registerInternalRoutes } from './internal-routes.ts'
import { startOrphanWatchdog } from './orphan-watchdog.ts'

/** Exit code of a stop that did not finish (timed out, forced by a second signal, or failed). */
export const exitStopUnfinished = 1
/** After the parent is gone: the shutdown bound plus this, then the watchdog SIGKILLs a broker still there, ms. */
export const orphanKillSlackMs = 3000

export interface RunningBroker {
  readonly broker: Broker
  readonly url: string
  /** Graceful stop: the broker, then the HTTP server. Not bounded here: `runBroker` bounds it. */
  stop(): Promise<void>
}

/** Starts a broker and its HTTP server (used by `rill broker` and by tests in one process). */
export async function startBroker(config: BrokerConfig, logger: Logger): Promise<RunningBroker> {
  const url = `http://${config.http.host.includes(':') ? `[${config.http.host}]` : config.http.host}:${config.http.port}`
  if (config.secretIsDevelopment) logger.warn({ event: 'development_secret' }, 'no --secret given: using the development secret (loopback only)')
  const broker = await Broker.start(config, logger, { httpUrl: url })
  // A Broker is the service the API calls: checked structurally here (src/broker does not import src/api).
  const service: BrokerService = broker
  const app = buildApi({ service, logger })
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
  return {
    broker,
    url,
    stop: () => {
      stopping ??= (async () => {
        await broker.stop()
        await app.close()
      })()
      return stopping
    },
  }
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
    const reason = await firstStop
    return await stopWithin(started.running, { logger, reason, shutdownTimeoutMs: config.shutdownTimeoutMs, again: stopRequests.next() })
  } finally {
    stopRequests.dispose()
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
