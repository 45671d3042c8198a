/**
 * `npm run sim -- --seeds N [--from S]`  runs N random fault schedules
 * `npm run sim -- --seed S [--trace]`    replays one, step by step
 *
 * Ends with "N passed, M failed"; exit code 1 if any failed. Every failure
 * prints its seed and the command that replays it.
 */
import { systemRuntime } from '../base/index.ts'
import { runSchedule } from './schedule.ts'

interface Args {
  seeds: number
  from: number
  seed: number | null
  trace: boolean
}

function usage(message: string): never {
  process.stderr.write(`sim: ${message}\nusage: npm run sim -- --seeds N [--from S] | --seed S [--trace]\n`)
  process.exit(2)
}

function parseCount(flag: string, value: string | undefined): number {
  if (value === undefined || !/^\d+$/.test(value)) usage(`${flag} needs a non-negative integer`)
  return Number(value)
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { seeds: 100, from: 1, seed: null, trace: false }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    switch (flag) {
      case '--seeds':
        args.seeds = parseCount(flag, argv[++i])
        break
      case '--from':
        args.from = parseCount(flag, argv[++i])
        break
      case '--seed':
        args.seed = parseCount(flag, argv[++i])
        break
      case '--trace':
        args.trace = true
        break
      default:
        usage(`unknown flag ${flag}`)
    }
  }
  return args
}

function main(): number {
  const args = parseArgs(process.argv.slice(2))
  if (args.seed !== null) {
    const trace = args.trace ? (line: string): void => void process.stdout.write(`${line}\n`) : undefined
    const r = runSchedule({ seed: args.seed, ...(trace === undefined ? {} : { trace }) })
    process.stdout.write(
      `seed ${r.seed}: ${r.ok ? 'passed' : `FAILED ${r.error}`} (virtual ${r.virtualMs} ms, ${r.acked} acked, ${r.messages} messages, ${r.checks} checks)\n`,
    )
    process.stdout.write(`${r.ok ? 1 : 0} passed, ${r.ok ? 0 : 1} failed\n`)
    return r.ok ? 0 : 1
  }
  let passed = 0
  let failed = 0
  const started = systemRuntime.nowMs()
  const progressEvery = Math.max(1, Math.floor(args.seeds / 20))
  for (let k = 0; k < args.seeds; k++) {
    const seed = args.from + k
    const r = runSchedule({ seed })
    if (r.ok) {
      passed++
    } else {
      failed++
      process.stdout.write(`seed ${seed} FAILED: ${r.error}\n  replay: npm run sim -- --seed ${seed} --trace\n`)
    }
    if ((k + 1) % progressEvery === 0) {
      const s = ((systemRuntime.nowMs() - started) / 1000).toFixed(1)
      process.stderr.write(`sim: ${k + 1}/${args.seeds} schedules, ${failed} failed, ${s} s\n`)
    }
  }
  process.stdout.write(`${passed} passed, ${failed} failed\n`)
  return failed === 0 ? 0 : 1
}

process.exitCode = main()
