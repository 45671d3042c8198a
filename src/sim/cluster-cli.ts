/**
 * `npm run sim:cluster -- --seeds N [--from S]`   runs N schedules of whole brokers
 * `npm run sim:cluster -- --seed S [--trace]`     replays one, event by event
 *
 * Options: `--persistence sync|async` (default: by seed, two sync to one
 * async), `--brokers N` (default 3), `--fault-ms MS` (virtual ms of faults).
 * Ends with "N passed, M failed"; exit code 1 if any failed. Every failure
 * prints its seed and the command that replays it.
 */
import { parseArgs } from 'node:util'
import { systemRuntime } from '../base/index.ts'
import type { PersistenceMode } from '../log/index.ts'
import { runBrokerSchedule, type BrokerScheduleResult } from './broker-schedule.ts'

const usage = 'usage: npm run sim:cluster -- --seeds N [--from S] | --seed S [--trace]  [--persistence sync|async] [--brokers N] [--fault-ms MS]'

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
      },
      strict: true,
      allowPositionals: false,
    }))
  } catch (error) {
    fail((error as Error).message)
  }
  const persistence = values.persistence
  if (persistence !== undefined && persistence !== 'sync' && persistence !== 'async') fail(`--persistence is sync or async, got ${JSON.stringify(persistence)}`)
  const brokers = count('--brokers', values.brokers, 3, 7)
  const faultMs = count('--fault-ms', values['fault-ms'], 0, 600_000)
  const common = {
    ...(persistence === undefined ? {} : { persistence: persistence as PersistenceMode }),
    ...(brokers === undefined ? {} : { brokers }),
    ...(faultMs === undefined ? {} : { faultMs }),
  }
  const one = count('--seed', values.seed, 0, 2 ** 31)
  if (one !== undefined) {
    const trace = values.trace === true ? (l: string): void => void process.stdout.write(`${l}\n`) : undefined
    const r = await runBrokerSchedule({ seed: one, ...common, ...(trace === undefined ? {} : { trace }) })
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
    const r = await runBrokerSchedule({ seed, ...common })
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
