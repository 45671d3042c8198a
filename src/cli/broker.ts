/**
 * `rill broker`: one broker process, assembled here so that src/broker knows
 * no HTTP. `runBroker` parses the config, opens the data directory, joins
 * the cluster, serves HTTP (src/api) with the broker-to-broker internal
 * routes, and stops gracefully on SIGTERM/SIGINT (exit 0). A bad flag exits 2
 * and an unusable data directory exits 1, each with a one-line reason on
 * stderr.
 */
import pino from 'pino'
import type { Logger } from 'pino'
import { isRillError, RillError, ErrorCode } from '../base/index.ts'
import { buildApi, type BrokerService } from '../api/index.ts'
import { Broker, internalRequestValid, offsetsTopic, offsetsTopicPartitions, parseBrokerConfig, type BrokerConfig } from '../broker/index.ts'

export interface RunningBroker {
  readonly broker: Broker
  readonly url: string
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
  // Internal routes answer only requests MACed with the cluster secret.
  app.addHook('onRequest', async (request) => {
    if (!request.url.startsWith('/internal/')) return
    const path = request.url.split('?')[0]!
    // The body is checked in preHandler (once parsed); here only the GET route, which has none.
    if (request.method === 'GET' && !internalRequestValid(config.secret, request.headers, 'GET', path, '')) {
      throw new RillError(ErrorCode.UNAUTHORIZED, 'internal route: bad or missing cluster MAC')
    }
  })
  app.addHook('preHandler', async (request) => {
    if (!request.url.startsWith('/internal/') || request.method === 'GET') return
    const path = request.url.split('?')[0]!
    const body = request.body === undefined || request.body === null ? '' : JSON.stringify(request.body)
    if (!internalRequestValid(config.secret, request.headers, request.method, path, body)) {
      throw new RillError(ErrorCode.UNAUTHORIZED, 'internal route: bad or missing cluster MAC')
    }
  })
  app.post('/internal/v1/brokers', async (request, reply) => {
    const body = request.body as { id?: unknown; httpUrl?: unknown; peerUrl?: unknown; rack?: unknown } | null
    if (
      body === null ||
      typeof body !== 'object' ||
      !Number.isSafeInteger(body.id) ||
      typeof body.httpUrl !== 'string' ||
      typeof body.peerUrl !== 'string' ||
      (body.rack !== undefined && typeof body.rack !== 'string')
    ) {
      throw new RillError(ErrorCode.INVALID_REQUEST, 'registration needs { id, httpUrl, peerUrl, rack? }')
    }
    await broker.registerBroker({ id: body.id as number, httpUrl: body.httpUrl, peerUrl: body.peerUrl, ...(body.rack === undefined ? {} : { rack: body.rack as string }) })
    reply.code(204)
    return null
  })
  app.get('/internal/v1/leaderships', async () => ({ leaderships: broker.localLeaderships() }))
  // Another broker's group request found no offsets topic: create it here (we lead the controller).
  app.post('/internal/v1/offsets-topic', async () => {
    await broker.createOffsetsTopic()
    return { name: offsetsTopic, partitions: offsetsTopicPartitions }
  })
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

/** `rill broker ...`: returns the exit code. */
export async function runBroker(argv: readonly string[]): Promise<number> {
  let config: BrokerConfig
  try {
    config = parseBrokerConfig(argv, process.env)
  } catch (error) {
    process.stderr.write(`rill broker: ${(error as Error).message}\n`)
    return 2
  }
  const logger = pino({ level: config.logLevel, base: { broker: config.id } })
  let running: RunningBroker
  try {
    running = await startBroker(config, logger)
  } catch (error) {
    const code = isRillError(error) ? error.code : 'ERROR'
    process.stderr.write(`rill broker: ${code}: ${(error as Error).message}\n`)
    return 1
  }
  return new Promise<number>((resolve) => {
    const onSignal = (signal: string): void => {
      logger.info({ event: 'signal', signal }, `${signal}: stopping`)
      running.stop().then(
        () => resolve(0),
        (error: unknown) => {
          process.stderr.write(`rill broker: stop failed: ${(error as Error).message}\n`)
          resolve(1)
        },
      )
    }
    process.once('SIGTERM', () => onSignal('SIGTERM'))
    process.once('SIGINT', () => onSignal('SIGINT'))
  })
}
