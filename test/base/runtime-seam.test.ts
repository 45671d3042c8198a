/**
 * Time and timers reach src/ through one adapter (src/base/runtime.ts), so
 * the simulator can replace them: this fails when a clock read or a timer
 * appears anywhere else in src/ (DESIGN.md decision 13).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'

const root = new URL('../..', import.meta.url).pathname
const adapter = 'src/base/runtime.ts'
const forbidden = /\b(Date\.now|performance\.now|setTimeout|setInterval|setImmediate|clearTimeout|clearInterval|clearImmediate|queueMicrotask|process\.hrtime|AbortSignal\.timeout)\b/

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) sources(path, out)
    else if (name.endsWith('.ts')) out.push(path)
  }
  return out
}

/** Lines of code (comments stripped) that read the clock or arm a timer. */
function offenders(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' '))
  const out: string[] = []
  code.split('\n').forEach((line, i) => {
    const bare = line.replace(/\/\/.*$/, '')
    if (forbidden.test(bare)) out.push(`${i + 1}: ${line.trim()}`)
  })
  return out
}

test('no clock read or timer in src/ outside the runtime adapter', () => {
  const found: string[] = []
  for (const path of sources(join(root, 'src'))) {
    const rel = relative(root, path)
    if (rel === adapter) continue
    for (const o of offenders(readFileSync(path, 'utf8'))) found.push(`${rel}:${o}`)
  }
  assert.deepEqual(found, [], `use the Runtime (src/base/runtime.ts) instead:\n${found.join('\n')}`)
})

test('the check finds what it looks for', () => {
  assert.equal(offenders('const t = Date.now()').length, 1)
  assert.equal(offenders('x.setTimeout(fn)').length, 1)
  assert.equal(offenders('// setTimeout in a comment\n/* Date.now() */ const a = 1').length, 0)
})
