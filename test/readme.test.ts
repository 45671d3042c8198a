/**
 * The README's "Try it" blocks work as a new user runs them: pasted, each as
 * one block, right after `npm start` prints `ready` (issue 12: the produce
 * right after the create got 404 or 421, and the fetch read a partition the
 * record had not gone to).
 *
 *   README.md ──fenced blocks of "## Try it"──▶ ports rewritten (below) ──▶ bash, one block at a time
 *   `npm start` = node bin/rill.mjs dev ──▶ the same, with a temp --dir and free --port
 *
 * The one rewrite: the blocks talk to `rill dev`'s default ports, which may be
 * taken on this machine (another engineer's cluster, a developer's own
 * `npm start`), so `localhost:7070`, `:7071`, `:7072` become the test
 * cluster's three HTTP ports, and the CLI lines (which use the CLI's default
 * URL, the first dev broker) get RILL_URL set to the first. The test checks
 * that this is all there is to rewrite: the CLI's default URL is dev's first
 * broker, and no other dev port is left in a block.
 *
 * Blocks elsewhere in the README that talk to a running cluster belong to
 * another test (listed in `ownedElsewhere`) or must be added here: a block
 * outside those sections that names a dev port or the CLI fails this test.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { defaultUrl } from '../src/cli/args.ts'
import { devPortDefault } from '../src/cli/dev.ts'
import { stopProcess, waitFor } from './broker/helpers.ts'

const root = fileURLToPath(new URL('..', import.meta.url))
const readme = readFileSync(join(root, 'README.md'), 'utf8')

/** The sections whose blocks this test runs against the cluster. */
const runSections = ['Try it']
/** Sections of which this test runs the blocks that talk to the cluster (the others start their own). */
const runClusterBlocksOf = ['Benchmarks']
/** Sections whose blocks another test owns (they talk to a cluster too). */
const ownedElsewhere: Record<string, string> = {
  'Produce and consume from TypeScript or JavaScript': 'test/examples.test.ts runs examples/*.mjs, which these blocks show',
  Install: 'the Install section has its own test',
}
/** What marks a block as talking to a running cluster. */
const talksToCluster = /localhost:\d|127\.0\.0\.1:\d|bin\/rill\.mjs|\brill (produce|consume|status|topic|group|acl)\b/

/** Brokers of `npm start`. */
const brokers = 3
/** Longest wait for `ready`, ms (rill dev's own bound is 60 s). */
const readyWaitMs = 65_000
/** Longest run of one block, ms (then SIGKILL and a failure). */
const blockWaitMs = 60_000
/** Longest wait for rill dev to stop after SIGTERM, ms. */
const devStopWaitMs = 30_000

interface Block {
  readonly section: string
  readonly line: number
  readonly text: string
}

/** The fenced blocks of a Markdown text, each with the `## ` section it is in ('' before the first). */
function fencedBlocks(markdown: string): Block[] {
  const blocks: Block[] = []
  let section = ''
  let open: { line: number; lines: string[] } | null = null
  markdown.split('\n').forEach((line, i) => {
    if (open !== null) {
      if (/^```\s*$/.test(line)) {
        blocks.push({ section, line: open.line, text: open.lines.join('\n') })
        open = null
      } else {
        open.lines.push(line)
      }
      return
    }
    if (line.startsWith('```')) open = { line: i + 1, lines: [] }
    else if (line.startsWith('## ')) section = line.slice(3).trim()
  })
  assert.equal(open, null, 'README.md has a fence that never closes')
  return blocks
}

/** A first HTTP port such that it, the next `count - 1` and their peer ports (+100) are free now. */
async function freeDevPort(count: number): Promise<number> {
  const listen = (port: number): Promise<boolean> =>
    new Promise((resolve) => {
      const s = createServer()
      s.once('error', () => resolve(false))
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
    })
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20_000 + Math.floor(Math.random() * 40_000)
    let free = true
    for (let i = 0; i < count && free; i++) free = (await listen(port + i)) && (await listen(port + 100 + i))
    if (free) return port
  }
  throw new Error(`no ${count} free dev ports found`)
}

/** The block as run here: the default dev ports replaced by the test cluster's. */
function rewritePorts(text: string, port: number): string {
  let out = text
  for (let i = 0; i < brokers; i++) out = out.replaceAll(`localhost:${devPortDefault + i}`, `localhost:${port + i}`)
  return out
}

/** Runs `script` with bash in the repository root; SIGKILLed after `blockWaitMs`. */
function bash(script: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    // -e: a command that fails fails the block, as a user would notice; pipefail: also inside `printf | rill produce`.
    const child = spawn('bash', ['-e', '-o', 'pipefail', '-c', script], { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), blockWaitMs)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

const blocks = fencedBlocks(readme)
const tryIt = blocks.filter((b) => runSections.includes(b.section))

let dir = ''
let port = 0
let dev: ChildProcess | null = null
let devOutput = ''

/** Starts of rill dev tried: a port found free may be taken by someone else before dev binds it (dev then refuses). */
const devStartsMax = 3

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'rill-readme-'))
  for (let attempt = 1; ; attempt++) {
    port = await freeDevPort(brokers)
    devOutput = ''
    // What `npm start` runs (checked below), with a temp data directory and the free ports.
    const child = spawn(process.execPath, [join(root, 'bin/rill.mjs'), 'dev', '--dir', dir, '--port', String(port)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
    dev = child
    child.stdout!.on('data', (d: Buffer) => (devOutput += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (devOutput += d.toString()))
    await waitFor(() => /^ready$/m.test(devOutput) || child.exitCode !== null, readyWaitMs, 'rill dev ready', () => devOutput)
    if (/^ready$/m.test(devOutput)) return
    await stopProcess(child, { what: 'rill dev' })
    if (!/not free/.test(devOutput) || attempt === devStartsMax) assert.fail(`rill dev did not start:\n${devOutput}`)
  }
})

after(async () => {
  if (dev !== null) await stopProcess(dev, { graceMs: devStopWaitMs, what: 'rill dev' })
  await rm(dir, { recursive: true, force: true, maxRetries: 10 })
})

test('the README says what npm start runs, and its ports are the defaults of rill dev and of the CLI', () => {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }
  assert.equal(pkg.scripts.start, 'node bin/rill.mjs dev')
  assert.match(readme, new RegExp(`\`npm start\` runs \`rill dev\`: three broker processes on \`http://127\\.0\\.0\\.1:${devPortDefault}\``))
  // The CLI lines of the blocks rely on this: RILL_URL below stands for it.
  assert.equal(defaultUrl, `http://127.0.0.1:${devPortDefault}`)
})

test('every README block that talks to a cluster is run here or owned by another test', () => {
  assert.ok(tryIt.length >= 2, `"Try it" has ${tryIt.length} blocks`)
  for (const b of blocks) {
    if (runSections.includes(b.section) || runClusterBlocksOf.includes(b.section) || ownedElsewhere[b.section] !== undefined) continue
    assert.doesNotMatch(b.text, talksToCluster, `README.md line ${b.line} (section "${b.section}") talks to a cluster: run it in test/readme.test.ts or name its test in ownedElsewhere`)
  }
  for (const b of tryIt) {
    // After the rewrite no dev port may be left (a block on other ports would not be run against this cluster).
    assert.doesNotMatch(rewritePorts(b.text, port), /\b7[01]7\d\b/, `README.md line ${b.line}: a dev port the rewrite does not cover`)
  }
})

test('the "Try it" blocks, pasted one after the other right after ready, do what the README says', { timeout: 180_000 }, async () => {
  const env: NodeJS.ProcessEnv = { ...process.env, RILL_URL: `http://127.0.0.1:${port}` }
  for (const name of ['RILL_TLS_CA', 'RILL_TLS_CERT', 'RILL_TLS_KEY', 'RILL_TOKEN']) delete env[name]
  const [curlBlock, cliBlock] = tryIt as [Block, Block]

  const curl = await bash(rewritePorts(curlBlock.text, port), env)
  assert.equal(curl.code, 0, `README.md line ${curlBlock.line}: ${curl.stderr}`)
  const [created, produced, fetched] = curl.stdout.trimEnd().split('\n').map((l) => JSON.parse(l))
  assert.deepEqual(created, { name: 'orders', partitions: 3, ready: true }, curl.stdout)
  assert.deepEqual(produced, { offsets: [{ partition: 2, baseOffset: 0, lastOffset: 0 }] }, curl.stdout)
  assert.equal(fetched.partition, 2, curl.stdout)
  assert.deepEqual(fetched.records.map((r: any) => [r.offset, r.key, r.value]), [[0, 'user-1', 'hello']], curl.stdout)

  const cli = await bash(rewritePorts(cliBlock.text, port), env)
  assert.equal(cli.code, 0, `README.md line ${cliBlock.line}: ${cli.stderr}`)
  const lines = cli.stdout.split('\n')
  assert.deepEqual(lines.slice(0, 6), ['partition 0 offset 0', 'partition 0 offset 1', 'partition 0 offset 2', 'a', 'b', 'c'], cli.stdout)
  const status = lines.slice(6).join('\n')
  assert.match(status, /^controller leader: [123]$/m, cli.stdout)
  for (const p of [0, 1, 2]) assert.match(status, new RegExp(`^orders\\s+${p}\\s+[123]\\s`, 'm'), cli.stdout)
})

test('the Benchmarks block of rill bench runs against npm start\'s cluster: a summary line per command', { timeout: 180_000 }, async () => {
  const benchBlocks = blocks.filter((b) => runClusterBlocksOf.includes(b.section) && talksToCluster.test(b.text))
  assert.equal(benchBlocks.length, 1, 'one rill bench block')
  const block = benchBlocks[0]!
  const env: NodeJS.ProcessEnv = { ...process.env, RILL_URL: `http://127.0.0.1:${port}` }
  for (const name of ['RILL_TLS_CA', 'RILL_TLS_CERT', 'RILL_TLS_KEY', 'RILL_TOKEN', 'RILL_BROKERS']) delete env[name]
  const run = await bash(rewritePorts(block.text, port), env)
  assert.equal(run.code, 0, `README.md line ${block.line}: ${run.stderr}`)
  const lines = run.stdout.trimEnd().split('\n')
  assert.equal(lines.length, 2, run.stdout)
  assert.match(lines[0]!, /^produce bench: 20,000 records of 100 B in .* records\/s, .* MB\/s; ack latency p50 /, run.stdout)
  assert.match(lines[1]!, /^e2e bench: .* e2e latency p50 .*received /, run.stdout)
})
