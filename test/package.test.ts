/**
 * The package as npm packs it and as a user runs it, without tsx:
 *
 *   npm pack --dry-run ──▶ the file list: dist/ (JS and declarations of the
 *                          SDKs and the CLI), bin/, package.json, README; no
 *                          tests, no TypeScript sources; every relative import
 *                          of a packed .js file is packed too
 *   plain node         ──▶ imports rill/producer and rill/consumer (dist/)
 *   bin/rill.mjs       ──▶ runs dist/ and never resolves tsx, unless
 *                          RILL_FROM_SOURCE=1; without dist/ beside it, one
 *                          line that says to build, exit 1
 *
 * dist/ is built by `npm test` before the tests (and by `npm ci`); run
 * `npm run build` before running this file alone.
 */
import { after, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, normalize } from 'node:path'
import { fileURLToPath } from 'node:url'
import { readFile } from 'node:fs/promises'

const root = fileURLToPath(new URL('..', import.meta.url))
const bin = join(root, 'bin/rill.mjs')
/** Longest run of one child (npm pack --dry-run, a node child), ms. */
const childMs = 120_000
/** Temp dirs made by the tests, removed at the end. */
const temps: string[] = []

after(() => {
  for (const dir of temps) rmSync(dir, { recursive: true, force: true })
})

interface Ran {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs a child to its end (bounded); never throws on a non-zero exit. */
function run(file: string, args: string[], options: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  // NODE_OPTIONS emptied: the child gets no loader from this test's own process (tsx).
  const env = { ...process.env, NODE_OPTIONS: '', ...options.env }
  return new Promise((resolve) => {
    execFile(file, args, { cwd: options.cwd ?? root, env, timeout: childMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null
      resolve({ code, stdout, stderr })
    })
  })
}

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'rill-package-'))
  temps.push(dir)
  return dir
}

/**
 * A loader hook (node --import) that makes resolving tsx throw: a child
 * started with it fails the moment anything imports tsx.
 */
function noTsxHook(): string {
  const dir = tempDir()
  const hooks = join(dir, 'hooks.mjs')
  writeFileSync(hooks, `export async function resolve(specifier, context, next) {\n  if (/^tsx(\\/|$)/.test(specifier)) throw new Error('tsx resolved: ' + specifier)\n  return next(specifier, context)\n}\n`)
  const register = join(dir, 'register.mjs')
  writeFileSync(register, `import { register } from 'node:module'\nregister(${JSON.stringify(new URL(`file://${hooks}`).href)})\n`)
  return register
}

/** The relative specifiers a compiled ES module imports (static, re-exports, and string-literal dynamic imports). */
function relativeImports(js: string): string[] {
  const found: string[] = []
  for (const m of js.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s*)["'](\.{1,2}\/[^"']+)["']/gm)) found.push(m[1]!)
  return found
}

test('npm pack has the compiled SDKs, CLI, declarations and bin, every file they import, and no tests or sources', { timeout: childMs + 30_000 }, async () => {
  assert.ok(existsSync(join(root, 'dist/src/cli/main.js')), 'dist/ is missing: run `npm run build` first (npm test does)')
  // --ignore-scripts: the list only (prepare would rebuild dist/ under the running tests).
  const r = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'])
  assert.equal(r.code, 0, r.stderr)
  const files = new Set<string>((JSON.parse(r.stdout) as [{ files: { path: string }[] }])[0].files.map((f) => f.path))
  for (const path of [
    'package.json',
    'README.md',
    'bin/rill.mjs',
    'dist/producer/index.js',
    'dist/producer/index.d.ts',
    'dist/consumer/index.js',
    'dist/consumer/index.d.ts',
    'dist/src/cli/main.js',
    'dist/src/cli/main.d.ts',
    'dist/src/wire/index.js',
  ]) {
    assert.ok(files.has(path), `the package lacks ${path}`)
  }
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'))
  for (const target of [pkg.bin.rill, pkg.exports['./producer'].default, pkg.exports['./producer'].types, pkg.exports['./consumer'].default, pkg.exports['./consumer'].types]) {
    assert.ok(files.has(normalize(target)), `package.json points at ${target}, which is not packed`)
  }
  const unwanted = [...files].filter((f) => f.startsWith('test/') || f.startsWith('bench/') || f.startsWith('src/') || f.startsWith('dist/src/sim/') || (f.endsWith('.ts') && !f.endsWith('.d.ts')))
  assert.deepEqual(unwanted, [], 'tests, benches, sources or the simulator are packed')
  // Every relative import of a packed module resolves to a packed file (a build that left a file out fails here, not in a user's project).
  const missing: string[] = []
  for (const file of [...files].filter((f) => f.startsWith('dist/') && f.endsWith('.js'))) {
    for (const specifier of relativeImports(await readFile(join(root, file), 'utf8'))) {
      const target = normalize(join(dirname(file), specifier))
      if (!files.has(target)) missing.push(`${file} imports ${specifier}`)
    }
  }
  assert.deepEqual(missing, [], 'packed modules import files that are not packed')
})

test('plain node (no tsx) imports rill/producer and rill/consumer from dist/', { timeout: childMs + 10_000 }, async () => {
  const script = `
    const producer = await import('rill/producer')
    const consumer = await import('rill/consumer')
    console.log(JSON.stringify({ producer: Object.keys(producer), consumer: Object.keys(consumer) }))
  `
  const r = await run(process.execPath, ['--import', noTsxHook(), '--input-type=module', '-e', script])
  assert.equal(r.code, 0, r.stderr)
  const keys = JSON.parse(r.stdout)
  for (const name of ['Producer', 'RillClientError']) assert.ok(keys.producer.includes(name), `rill/producer exports ${keys.producer}`)
  for (const name of ['Consumer', 'RillClientError']) assert.ok(keys.consumer.includes(name), `rill/consumer exports ${keys.consumer}`)
})

test('bin/rill.mjs runs dist/ without tsx; RILL_FROM_SOURCE=1 is what loads tsx', { timeout: 3 * childMs }, async () => {
  const hook = noTsxHook()
  const plain = await run(process.execPath, ['--import', hook, bin, '--help'])
  assert.equal(plain.code, 0, plain.stderr)
  assert.match(plain.stdout, /^usage: rill <command>/)
  // The same hook stops the development switch: it does catch tsx.
  const fromSource = await run(process.execPath, ['--import', hook, bin, '--help'], { env: { RILL_FROM_SOURCE: '1' } })
  assert.equal(fromSource.code, 1, fromSource.stdout)
  assert.match(fromSource.stderr, /RILL_FROM_SOURCE=1 needs tsx/)
  // And without the hook the switch runs the sources.
  const source = await run(process.execPath, [bin, '--help'], { env: { RILL_FROM_SOURCE: '1' } })
  assert.equal(source.code, 0, source.stderr)
  assert.match(source.stdout, /^usage: rill <command>/)
})

test('bin/rill.mjs without dist/ beside it says in one line to build, exit 1; a bad RILL_FROM_SOURCE is a usage error', { timeout: 2 * childMs }, async () => {
  const dir = tempDir()
  cpSync(join(root, 'bin'), join(dir, 'bin'), { recursive: true })
  const r = await run(process.execPath, [join(dir, 'bin/rill.mjs'), '--help'], { cwd: dir })
  assert.equal(r.code, 1, r.stdout)
  assert.equal(r.stdout, '')
  const lines = r.stderr.trimEnd().split('\n')
  assert.equal(lines.length, 1, r.stderr)
  assert.match(lines[0]!, /dist\/src\/cli\/main\.js is missing: run `npm run build` \(or `npm ci`\)/)
  const bad = await run(process.execPath, [bin, '--help'], { env: { RILL_FROM_SOURCE: 'yes' } })
  assert.equal(bad.code, 2, bad.stdout)
  assert.match(bad.stderr, /RILL_FROM_SOURCE must be 1/)
})
