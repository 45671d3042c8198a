#!/usr/bin/env node
// Runs every test file under test/ with node's built-in runner (node:test),
// TypeScript loaded through tsx. Node 20's runner does not discover *.ts files
// by itself, so this script lists them and hands them over explicitly.
// Usage: node scripts/run-tests.mjs [substring-filter ...]
import { readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { spawnSync } from 'node:child_process'

const root = new URL('..', import.meta.url).pathname
const filters = process.argv.slice(2)

function collect(dir, out) {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) collect(path, out)
    else if (name.endsWith('.test.ts')) out.push(relative(root, path))
  }
  return out
}

const files = collect(join(root, 'test'), []).filter(
  (f) => filters.length === 0 || filters.some((s) => f.includes(s)),
)
if (files.length === 0) {
  console.error('no test files matched')
  process.exit(1)
}
const args = ['--import', 'tsx', '--test', '--test-reporter=spec', ...files]
const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' })
process.exit(result.status ?? 1)
