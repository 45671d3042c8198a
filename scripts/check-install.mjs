#!/usr/bin/env node
// Checks the install paths a user takes, end to end, against the npm
// registry (slow, so not part of `npm test`):
//
//   1. git clone of this checkout's HEAD into a temp dir (no dist/, no node_modules/)
//   2. npm ci --omit=dev there: prepare builds dist/; no EBADENGINE warning; no tsx installed
//   3. node bin/rill.mjs broker --help, then a real single broker: /health answers 200; SIGTERM stops it (exit 0)
//   4. npm pack there, npm install of the tarball into a fresh project:
//      plain node imports rill/producer and rill/consumer; `npx rill help` runs the installed bin
//
// Every step has a deadline; on any failure it says which step and why,
// stops what it started and exits 1. Temp dirs are removed unless --keep.
//
// Usage: node scripts/check-install.mjs [--keep]
// Commits only: uncommitted changes are not in the clone (it says so).
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const keep = process.argv.includes('--keep')
for (const arg of process.argv.slice(2)) {
  if (arg !== '--keep') {
    console.error(`unknown argument "${arg}"; usage: node scripts/check-install.mjs [--keep]`)
    process.exit(2)
  }
}

/** Longest `npm ci` or `npm install` (downloads, native addons, tsc), ms. */
const npmInstallMs = 10 * 60_000
/** Longest `npm pack` (its prepare runs tsc again), ms. */
const npmPackMs = 5 * 60_000
/** Longest short command (git clone, a --help, an import), ms. */
const shortCommandMs = 60_000
/** Longest wait for the broker's /health, ms. */
const healthWaitMs = 60_000
/** Between two /health probes, ms. */
const healthPollMs = 250
/** Longest wait for the broker to exit after SIGTERM, ms. */
const stopWaitMs = 20_000

const started = Date.now()
const work = mkdtempSync(join(tmpdir(), 'rill-check-install-'))
let broker = null

function progress(line) {
  console.log(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${line}`)
}

function cleanUp() {
  if (broker !== null && broker.exitCode === null && broker.signalCode === null) broker.kill('SIGKILL')
  if (keep) console.log(`kept ${work}`)
  else rmSync(work, { recursive: true, force: true })
}

function fail(step, why) {
  console.error(`\n✖ ${step}: ${why}`)
  cleanUp()
  process.exit(1)
}

/** Runs a command to its end within `timeoutMs`; returns { stdout, all } (all: stdout then stderr, where npm warns), fails the check otherwise. */
function run(step, command, args, { cwd, timeoutMs, env = process.env }) {
  const r = spawnSync(command, args, { cwd, env, timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 })
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`
  if (r.error === undefined && r.status === 0) return { stdout: r.stdout, all: output }
  const why = r.signal === 'SIGKILL' ? `did not finish within ${timeoutMs / 1000} s` : r.error !== undefined ? r.error.message : `exit ${r.signal ?? r.status}`
  fail(step, `\`${command} ${args.join(' ')}\` ${why}\n${output.trim().split('\n').slice(-30).join('\n')}`)
}

function check(step, ok, why) {
  if (!ok) fail(step, why)
}

/** A port free on `host` now (the OS picks it). */
function freePort(host) {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, host, () => {
      const { port } = server.address()
      server.close(() => resolve(port))
    })
  })
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

async function healthy(url) {
  try {
    const r = await fetch(`${url}/health`, { signal: AbortSignal.timeout(2_000) })
    await r.arrayBuffer()
    return r.status === 200
  } catch {
    return false
  }
}

// 1. clone
const dirty = execFileSync('git', ['status', '--porcelain'], { cwd: root, encoding: 'utf8', timeout: shortCommandMs, killSignal: 'SIGKILL' }).trim()
if (dirty !== '') progress('note: the checkout has uncommitted changes; the clone has HEAD only')
const clone = join(work, 'clone')
progress(`git clone ${root} -> ${clone}`)
run('git clone', 'git', ['clone', '--quiet', root, clone], { cwd: work, timeoutMs: shortCommandMs })
check('git clone', !existsSync(join(clone, 'dist')), 'the clone has a dist/ (is dist/ committed?)')

// 2. npm ci --omit=dev
progress('npm ci --omit=dev (downloads from the registry, builds dist/; a few minutes at most)')
const ciOutput = run('npm ci --omit=dev', 'npm', ['ci', '--omit=dev', '--no-audit', '--no-fund'], { cwd: clone, timeoutMs: npmInstallMs }).all
check('npm ci --omit=dev', !/EBADENGINE/.test(ciOutput), `npm warned of an unsupported engine:\n${ciOutput}`)
check('npm ci --omit=dev', existsSync(join(clone, 'dist/src/cli/main.js')), 'prepare did not build dist/src/cli/main.js')
check('npm ci --omit=dev', !existsSync(join(clone, 'node_modules/tsx')), 'tsx (a devDependency) was installed')
progress('npm ci --omit=dev: ok (dist/ built, no EBADENGINE, no tsx)')

// 3. the broker from the production install
const brokerHelp = run('rill broker --help', process.execPath, ['bin/rill.mjs', 'broker', '--help'], { cwd: clone, timeoutMs: shortCommandMs }).stdout
check('rill broker --help', brokerHelp.startsWith('usage: rill broker'), `unexpected output:\n${brokerHelp}`)
progress('node bin/rill.mjs broker --help: ok')
const httpPort = await freePort('127.0.0.1')
const peerPort = await freePort('127.0.0.1')
const url = `http://127.0.0.1:${httpPort}`
const brokerArgs = ['bin/rill.mjs', 'broker', '--id', '1', '--dir', join(work, 'data'), '--http', `127.0.0.1:${httpPort}`, '--peer', `127.0.0.1:${peerPort}`, '--seeds', `1@127.0.0.1:${peerPort}`, '--log-level', 'warn']
progress(`node ${brokerArgs.join(' ')}`)
broker = spawn(process.execPath, brokerArgs, { cwd: clone, stdio: ['ignore', 'pipe', 'pipe'] })
let brokerOutput = ''
broker.stdout.on('data', (d) => (brokerOutput += d.toString()))
broker.stderr.on('data', (d) => (brokerOutput += d.toString()))
const exited = new Promise((resolve) => broker.once('exit', (code, signal) => resolve({ code, signal })))
const healthDeadline = Date.now() + healthWaitMs
for (;;) {
  if (broker.exitCode !== null || broker.signalCode !== null) fail('broker start', `the broker exited (${broker.signalCode ?? `code ${broker.exitCode}`}):\n${brokerOutput.slice(-3000)}`)
  if (await healthy(url)) break
  if (Date.now() > healthDeadline) fail('broker start', `${url}/health did not answer 200 within ${healthWaitMs / 1000} s:\n${brokerOutput.slice(-3000)}`)
  await sleep(healthPollMs)
}
progress(`broker: ${url}/health answers 200`)
broker.kill('SIGTERM')
const exit = await Promise.race([exited, sleep(stopWaitMs).then(() => null)])
check('broker stop', exit !== null, `the broker did not exit within ${stopWaitMs / 1000} s of SIGTERM`)
check('broker stop', exit.code === 0, `the broker exited ${exit.signal ?? `code ${exit.code}`} after SIGTERM:\n${brokerOutput.slice(-3000)}`)
progress('broker: stopped cleanly on SIGTERM')

// 4. the tarball in another project
const packs = join(work, 'packs')
mkdirSync(packs)
progress('npm pack')
run('npm pack', 'npm', ['pack', '--silent', '--pack-destination', packs], { cwd: clone, timeoutMs: npmPackMs })
const tarballs = readdirSync(packs).filter((name) => name.endsWith('.tgz'))
check('npm pack', tarballs.length === 1, `expected one .tgz in ${packs}, found ${JSON.stringify(tarballs)}`)
const tarball = join(packs, tarballs[0])
progress(`packed ${tarball}`)
const app = join(work, 'app')
mkdirSync(app)
writeFileSync(join(app, 'package.json'), `${JSON.stringify({ name: 'rill-check-app', version: '1.0.0', private: true, type: 'module' }, null, 2)}\n`)
// As the README says: npm applies overrides from the root project only, so the app repeats rill's (cookie 2 declares node >=22).
run('npm pkg set overrides', 'npm', ['pkg', 'set', 'overrides.light-my-request.cookie=^1.1.1'], { cwd: app, timeoutMs: shortCommandMs })
progress(`npm install ${tarball} (in a fresh project)`)
const installOutput = run('npm install <tarball>', 'npm', ['install', '--no-audit', '--no-fund', tarball], { cwd: app, timeoutMs: npmInstallMs }).all
check('npm install <tarball>', !/EBADENGINE/.test(installOutput), `npm warned of an unsupported engine:\n${installOutput}`)
const plainEnv = { ...process.env, NODE_OPTIONS: '' }
for (const [entry, name] of [['rill/producer', 'Producer'], ['rill/consumer', 'Consumer']]) {
  const keys = run(`import ${entry}`, process.execPath, ['--input-type=module', '-e', `const m = await import('${entry}'); console.log(Object.keys(m).sort().join(' '))`], { cwd: app, timeoutMs: shortCommandMs, env: plainEnv }).stdout.trim()
  check(`import ${entry}`, keys.split(' ').includes(name), `exports "${keys}" lack ${name}`)
  progress(`plain node: import('${entry}') -> ${keys}`)
}
const help = run('npx rill help', 'npx', ['--no-install', 'rill', 'help'], { cwd: app, timeoutMs: shortCommandMs, env: plainEnv }).stdout
check('npx rill help', help.startsWith('usage: rill <command>'), `unexpected output:\n${help}`)
progress('npx rill help: ok (the installed bin runs the packaged dist/)')

cleanUp()
console.log(`\n✔ install check passed in ${((Date.now() - started) / 1000).toFixed(0)} s`)
