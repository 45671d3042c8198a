/**
 * `npm run sim:cluster -- --seeds N [--from S]`   runs N schedules of whole brokers
 * `npm run sim:cluster -- --seed S [--trace]`     replays one, event by event
 *
 * Options: `--persistence sync|async|memory` (default: by seed, two sync to one
 * async), `--brokers N` (default 3), `--fault-ms MS` (virtual ms of faults),
 * `--faults a,b` (only these kinds: crash, stop, isolate, one-way, disk,
 * bad-sectors, flaky, pause), `--acks-all-only` (no acks=leader producer: the
 * schedules from before it was added), `--no-churn` (no topic create/delete
 * loop), `--faults` without `pause` for the schedules from before pauses,
 * `--seed-timeout-s S` (real seconds a seed may take before it counts as
 * hung; default 120). Seeds run in a worker thread, so even a loop that
 * never yields fails its seed instead of hanging the run.
 * Ends with "N passed, M failed"; exit code 1 if any failed. Every failure
 * prints its seed and the command that replays it.
 */
import { parseArgs } from 'node:util'
import { Worker } from 'node:worker_threads'
import { systemRuntime } from '../base/index.ts'
import type { PersistenceMode } from '../log/index.ts'
import { faultKinds, type BrokerScheduleOptions, type BrokerScheduleResult, type FaultKind } from './broker-schedule.ts'

/** Real seconds one seed may take; past it the seed is a hang (a loop that never yields) and its worker is ended. */
const seedSecondsMaxDefault = 120

/**
 * Runs schedules one at a time in a worker thread. A seed that does not
 * answer within `seconds` real seconds is reported as hung and its worker
 * terminated (V8 stops even a loop that never yields); the next seed gets a
 * fresh worker.
 */
class SeedRunner {
  #worker: Worker | null = null
  #ready: Promise<void> | null = null
  readonly #seconds: number

  constructor(seconds: number) {
    this.#seconds = seconds
  }

  #start(): Promise<void> {
    const worker = new Worker(new URL('./seed-worker.mjs', import.meta.url))
    this.#worker = worker
    return new Promise((resolve, reject) => {
      worker.once('message', (m) => (m === 'ready' ? resolve() : reject(new Error(`worker said ${String(m)}`))))
      worker.once('error', reject)
    })
  }

  async run(options: Omit<BrokerScheduleOptions, 'trace'> & { trace?: boolean }): Promise<BrokerScheduleResult> {
    this.#ready ??= this.#start()
    await this.#ready
    const worker = this.#worker!
    return new Promise((resolve, reject) => {
      const timer = systemRuntime.setTimer(() => {
        worker.removeAllListeners('message')
        void worker.terminate()
        this.#worker = null
        this.#ready = null
        resolve({
          seed: options.seed,
          ok: false,
          error: `hung: no result within ${this.#seconds} real seconds (a loop that never yields to the event loop; replay it with --trace to see where it stops)`,
          virtualMs: -1,
          events: -1,
          acked: -1,
          reads: -1,
          faults: -1,
          persistence: options.persistence ?? 'sync',
        })
      }, this.#seconds * 1000)
      const onMessage = (r: BrokerScheduleResult): void => {
        timer.cancel()
        worker.off('error', onError)
        resolve(r)
      }
      const onError = (e: Error): void => {
        timer.cancel()
        worker.off('message', onMessage)
        this.#worker = null
        this.#ready = null
        reject(e)
      }
      worker.once('message', onMessage)
      worker.once('error', onError)
      worker.postMessage(options)
    })
  }

  async close(): Promise<void> {
    await this.#worker?.terminate()
  }
}

const usage = 'usage: npm run sim:cluster -- --seeds N [--from S] | --seed S [--trace]  [--persistence sync|async|memory] [--brokers N] [--fault-ms MS] [--faults crash,disk,...] [--acks-all-only] [--no-churn] [--seed-timeout-s S]'

function fail(message: string): never {
  process.stderr.write(`sim:cluster: ${message}\n${usage}\n`)
  process.exit(2)
}

function count(flag: string, value: string | undefined, min: number, max: number): number | undefined {
  if (value === undefined) return undefined
  if (!/^\d+$/.test(value) || Number(value) < min || Number(value) > max) fail(`${flag} needs an integer in [${min}, ${max}], got ${JSON.stringify(value)}`)
  return Number(value)
}

function line(r: BrokerScheduleResult): string {
  return `seed ${r.seed} (${r.persistence}): ${r.ok ? 'passed' : `FAILED ${r.error}`} (virtual ${r.virtualMs} ms, ${r.events} events, ${r.acked} acks, ${r.reads} reads, ${r.faults} faults)`
}

async function main(): Promise<number> {
  let values
  try {
    ;({ values } = parseArgs({
      options: {
        seeds: { type: 'string' },
        from: { type: 'string' },
        seed: { type: 'string' },
        trace: { type: 'boolean' },
        persistence: { type: 'string' },
        brokers: { type: 'string' },
        'fault-ms': { type: 'string' },
        'seed-timeout-s': { type: 'string' },
        faults: { type: 'string' },
        'acks-all-only': { type: 'boolean' },
        'no-churn': { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    }))
  } catch (error) {
    fail((error as Error).message)
  }
  const persistence = values.persistence
  if (persistence !== undefined && persistence !== 'sync' && persistence !== 'async' && persistence !== 'memory') fail(`--persistence is sync, async or memory, got ${JSON.stringify(persistence)}`)
  const brokers = count('--brokers', values.brokers, 3, 7)
  const faultMs = count('--fault-ms', values['fault-ms'], 0, 600_000)
  const faults = values.faults?.split(',').map((f) => f.trim())
  for (const f of faults ?? []) if (!(faultKinds as readonly string[]).includes(f)) fail(`--faults takes a comma-separated list of ${faultKinds.join(', ')}; got ${JSON.stringify(f)}`)
  const common = {
    ...(faults === undefined ? {} : { faults: faults as FaultKind[] }),
    ...(values['acks-all-only'] === true ? { leaderAcks: false } : {}),
    ...(values['no-churn'] === true ? { topicChurn: false } : {}),
    ...(persistence === undefined ? {} : { persistence: persistence as PersistenceMode }),
    ...(brokers === undefined ? {} : { brokers }),
    ...(faultMs === undefined ? {} : { faultMs }),
  }
  const runner = new SeedRunner(count('--seed-timeout-s', values['seed-timeout-s'], 1, 3600) ?? seedSecondsMaxDefault)
  try {
    return await runSeeds(runner, values, common)
  } finally {
    await runner.close()
  }
}

async function runSeeds(
  runner: SeedRunner,
  values: { seed?: string | undefined; seeds?: string | undefined; from?: string | undefined; trace?: boolean | undefined },
  common: Omit<Partial<BrokerScheduleOptions>, 'trace' | 'seed'>,
): Promise<number> {
  const one = count('--seed', values.seed, 0, 2 ** 31)
  if (one !== undefined) {
    const r = await runner.run({ seed: one, ...common, trace: values.trace === true })
    process.stdout.write(`${line(r)}\n${r.ok ? 1 : 0} passed, ${r.ok ? 0 : 1} failed\n`)
    return r.ok ? 0 : 1
  }
  const seeds = count('--seeds', values.seeds, 1, 1_000_000) ?? 20
  const from = count('--from', values.from, 0, 2 ** 31) ?? 1
  let passed = 0
  let failed = 0
  const started = systemRuntime.nowMs()
  const progressEvery = Math.max(1, Math.floor(seeds / 20))
  for (let k = 0; k < seeds; k++) {
    const seed = from + k
    const r = await runner.run({ seed, ...common })
    if (r.ok) passed++
    else {
      failed++
      process.stdout.write(`${line(r)}\n  replay: npm run sim:cluster -- --seed ${seed} --trace\n`)
    }
    if ((k + 1) % progressEvery === 0 || k + 1 === seeds) {
      const s = ((systemRuntime.nowMs() - started) / 1000).toFixed(1)
      process.stderr.write(`sim:cluster: ${k + 1}/${seeds} schedules, ${failed} failed, ${s} s\n`)
    }
  }
  process.stdout.write(`${passed} passed, ${failed} failed\n`)
  return failed === 0 ? 0 : 1
}

process.exitCode = await main()
