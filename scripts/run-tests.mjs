#!/usr/bin/env node
// Runs every test file under test/ with node's built-in runner (node:test),
// TypeScript loaded through tsx, one file at a time, each in its own process
// group with a hard deadline (DESIGN.md decision 14: nothing can hang CI).
//
//   for each file:  node --import tsx --test-reporter=spec FILE   (detached: its own process group)
//                   output streamed as it comes ──▶ "✔ FILE  N passed  12.3 s" | "✖ FILE ..."
//                   deadline passed ──▶ SIGTERM to the group, SIGKILL after killGraceMs ──▶ failed, next file
//                   exited ──▶ whatever it left in its group (a broker, a child) is SIGKILLed
//   at the end:     files and tests passed/failed, total time; exit 1 if anything failed
//
// Why: a CI run once hung for 90 minutes on one broker child spinning at
// 100% CPU that ignored SIGTERM, awaited by a helper with no deadline. Each
// file runs as `node FILE` rather than under `node --test` (which would add a
// second process per file) so the process group is the file's own.
//
// Usage: node scripts/run-tests.mjs [substring-filter ...]
//   RILL_TEST_FILE_TIMEOUT_MS   deadline per file (default 300000); files in
//                               fileTimeoutMsOverrides get at least theirs
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

const root = new URL('..', import.meta.url).pathname
const filters = process.argv.slice(2)

/** Deadline of one test file, ms (a file that takes longer is killed and fails). */
const fileTimeoutMsDefault = 300_000
/**
 * Files that need a longer deadline than the default, ms. Keep it short: a
 * file that needs more belongs in a bench or a nightly suite.
 */
const fileTimeoutMsOverrides = {}
/** Between SIGTERM to a file's process group and SIGKILL, ms. */
const killGraceMs = 5_000
/** After a file's process exited (or was SIGKILLed), the longest wait for its output pipes to close, ms. */
const pipeCloseWaitMs = 2_000

function fileTimeoutMs(file) {
  const fromEnv = process.env.RILL_TEST_FILE_TIMEOUT_MS
  let timeoutMs = fileTimeoutMsDefault
  if (fromEnv !== undefined && fromEnv !== '') {
    timeoutMs = Number(fromEnv)
    if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) {
      console.error(`RILL_TEST_FILE_TIMEOUT_MS must be a positive integer (ms), got "${fromEnv}"`)
      process.exit(2)
    }
  }
  return Math.max(timeoutMs, fileTimeoutMsOverrides[file] ?? 0)
}

function collect(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) collect(path, out)
    else if (name.endsWith('.test.ts')) out.push(relative(root, path))
  }
  return out
}

const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`

/** Signals every process in the group led by `pid`; false when none is left. */
function signalGroup(pid, signal) {
  try {
    process.kill(-pid, signal)
    return true
  } catch {
    return false
  }
}

/**
 * The live processes of the group led by `pgid` (Linux /proc; none found
 * elsewhere), as "pid command" lines. Zombies are left out: an orphan that
 * exited may wait a while for its reaper, and it holds nothing.
 */
function groupMembers(pgid) {
  const members = []
  let pids = []
  try {
    pids = readdirSync('/proc').filter((name) => /^\d+$/.test(name))
  } catch {
    return members
  }
  for (const pid of pids) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[2]) !== pgid || fields[0] === 'Z' || fields[0] === 'X') continue
      const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()
      members.push(`${pid} ${command.slice(0, 160)}`)
    } catch {
      // gone meanwhile
    }
  }
  return members
}

/** The spec reporter's closing lines: `ℹ tests 12`, `ℹ duration_ms 345.6`, ... */
const reporterSummaryLine = /^ℹ (tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) [\d.]+$/
const stripAnsi = (text) => text.replace(/\x1b\[[0-9;]*m/g, '')

/** The counts from the spec reporter's closing lines (`ℹ pass 12`), or null if it never got there. */
function parseCounts(output) {
  const count = (name) => {
    const all = [...stripAnsi(output).matchAll(new RegExp(`^ℹ ${name} (\\d+)$`, 'gm'))]
    return all.length === 0 ? null : Number(all.at(-1)[1])
  }
  const passed = count('pass')
  const failed = count('fail')
  if (passed === null || failed === null) return null
  return { passed, failed: failed + (count('cancelled') ?? 0) }
}

let current = null

/** Runs one file; resolves { ok, killed, counts, ms, leftovers }. */
function runFile(file) {
  const timeoutMs = fileTimeoutMs(file)
  const started = Date.now()
  const args = ['--import', 'tsx', '--test-reporter=spec', file]
  // Piped, the reporter would drop its colours: keep them when a person watches.
  const env = process.stdout.isTTY && process.env.NO_COLOR === undefined ? { ...process.env, FORCE_COLOR: '1' } : process.env
  const child = spawn(process.execPath, args, { cwd: root, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
  // Streamed line by line, without the reporter's closing counts (the progress line has them).
  let output = ''
  let partial = ''
  child.stdout.on('data', (d) => {
    const text = d.toString()
    output += text
    const lines = (partial + text).split('\n')
    partial = lines.pop()
    for (const line of lines) if (!reporterSummaryLine.test(stripAnsi(line))) process.stdout.write(`${line}\n`)
  })
  child.stdout.once('end', () => partial !== '' && process.stdout.write(`${partial}\n`))
  child.stderr.on('data', (d) => process.stderr.write(d))
  return new Promise((resolve) => {
    let killed = false
    let killTimer = null
    const deadline = setTimeout(() => {
      killed = true
      console.log(`\n✖ ${file}: KILLED, it exceeded its ${seconds(timeoutMs)} deadline (SIGTERM to its process group, SIGKILL after ${seconds(killGraceMs)})`)
      signalGroup(child.pid, 'SIGTERM')
      killTimer = setTimeout(() => signalGroup(child.pid, 'SIGKILL'), killGraceMs)
    }, timeoutMs)
    current = { child, kill: () => signalGroup(child.pid, 'SIGKILL') }
    let exit = null
    const finish = () => {
      clearTimeout(deadline)
      clearTimeout(killTimer)
      current = null
      const counts = parseCounts(output)
      const ok = !killed && exit.code === 0 && counts !== null && counts.failed === 0
      resolve({ ok, killed, exit, counts, ms: Date.now() - started, leftovers: exit.leftovers })
    }
    child.once('error', (error) => {
      exit ??= { code: null, signal: null, leftovers: [] }
      console.error(`cannot run ${file}: ${error.message}`)
      finish()
    })
    child.once('exit', (code, signal) => {
      // Whatever the file left running in its group goes now (a broker it
      // spawned, a grandchild holding its pipes), so the next file starts clean.
      const leftovers = groupMembers(child.pid)
      signalGroup(child.pid, 'SIGKILL')
      exit = { code, signal, leftovers }
      const closeWait = setTimeout(finish, pipeCloseWaitMs)
      child.once('close', () => {
        clearTimeout(closeWait)
        finish()
      })
    })
  })
}

function onSignal(signal) {
  if (current !== null) current.kill()
  console.error(`\n${signal}: test run stopped`)
  process.exit(130)
}
process.once('SIGINT', () => onSignal('SIGINT'))
process.once('SIGTERM', () => onSignal('SIGTERM'))

const files = collect(join(root, 'test'), []).filter((f) => filters.length === 0 || filters.some((s) => f.includes(s)))
if (files.length === 0) {
  console.error('no test files matched')
  process.exit(1)
}

const runStarted = Date.now()
const failedFiles = []
const totals = { passed: 0, failed: 0 }
for (const [i, file] of files.entries()) {
  console.log(`\n▶ ${file} (${i + 1}/${files.length})`)
  const r = await runFile(file)
  if (r.counts !== null) {
    totals.passed += r.counts.passed
    totals.failed += r.counts.failed
  }
  const tests = r.counts === null ? 'no test summary' : `${r.counts.passed} passed${r.counts.failed > 0 ? `, ${r.counts.failed} failed` : ''}`
  const why = r.killed
    ? `killed: exceeded its ${seconds(fileTimeoutMs(file))} deadline`
    : r.exit.code !== 0
      ? `exit ${r.exit.signal ?? r.exit.code}`
      : r.counts === null
        ? 'ended without a test summary'
        : null
  if (r.leftovers.length > 0) console.log(`  ${file} left ${r.leftovers.length} process(es) running (SIGKILLed):\n${r.leftovers.map((l) => `    ${l}`).join('\n')}`)
  console.log(`${r.ok ? '✔' : '✖'} ${file}  ${tests}  ${seconds(r.ms)}${why === null || r.ok ? '' : `  (${why})`}`)
  if (!r.ok) failedFiles.push({ file, why: why ?? 'tests failed' })
}

console.log('')
console.log(`files: ${files.length - failedFiles.length} passed, ${failedFiles.length} failed`)
console.log(`tests: ${totals.passed} passed, ${totals.failed} failed`)
console.log(`time:  ${seconds(Date.now() - runStarted)}`)
for (const f of failedFiles) console.log(`  ✖ ${f.file} (${f.why})`)
process.exit(failedFiles.length === 0 ? 0 : 1)
