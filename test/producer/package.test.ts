/**
 * `rill/producer` as users import it: plain `node` (no tsx) loads the
 * compiled SDK from dist/ through package.json "exports", and it produces
 * to a (fake) broker. dist/ is built by `npm test` / `npm ci`; this test
 * builds it itself when it is missing or older than the sources.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { FakeBroker } from './fake-broker.ts'

const run = promisify(execFile)
const root = fileURLToPath(new URL('../..', import.meta.url))

let broker: FakeBroker

/** Newest modification time of the .ts files under `dir` (ms). */
function newestMs(dir: string): number {
  let newest = 0
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    const s = statSync(path)
    if (s.isDirectory()) newest = Math.max(newest, newestMs(path))
    else if (name.endsWith('.ts')) newest = Math.max(newest, s.mtimeMs)
  }
  return newest
}

before(async () => {
  broker = await new FakeBroker({ orders: 2 }).start()
  let builtMs = 0
  try {
    builtMs = statSync(join(root, 'dist/producer/index.js')).mtimeMs
  } catch {
    builtMs = 0
  }
  const sourcesMs = Math.max(newestMs(join(root, 'producer')), newestMs(join(root, 'client')), newestMs(join(root, 'src/wire')), newestMs(join(root, 'src/base')))
  if (builtMs < sourcesMs) {
    // Type errors elsewhere (consumer/ being edited) must not stop the emit of the producer files: tsc emits anyway.
    await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, timeout: 120_000, killSignal: 'SIGKILL' }).catch(() => undefined)
  }
})

after(async () => {
  await broker.close()
})

test('plain node imports rill/producer from dist/ and produces with it', { timeout: 60_000 }, async () => {
  const script = `
    import { Producer, RillClientError } from 'rill/producer'
    const producer = new Producer({ brokers: [process.env.BROKER], lingerMs: 0 })
    const acks = await producer.send('orders', [{ key: 'user-1', value: 'hello' }, { value: new Uint8Array([1, 2]), partition: 1 }])
    let code = null
    try { new Producer({ brokers: [] }) } catch (e) { code = e instanceof RillClientError ? e.code : 'not a RillClientError' }
    await producer.close()
    console.log(JSON.stringify({ acks, code }))
  `
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: root, env: { ...process.env, BROKER: broker.url, NODE_OPTIONS: '' }, timeout: 50_000, killSignal: 'SIGKILL' })
  const result = JSON.parse(stdout)
  assert.equal(result.code, 'INVALID_REQUEST')
  assert.equal(result.acks.length, 2)
  assert.equal(result.acks[1].partition, 1)
  assert.deepEqual(broker.batches.map((b) => b.values).flat().sort(), ['\u0001\u0002', 'hello'])
})
