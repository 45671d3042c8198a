#!/usr/bin/env node
// The `rill` command. Runs the compiled CLI, dist/src/cli/main.js, built by
// `npm run build` (and by `npm ci` / `npm install` through "prepare"), in
// this very process: a broker's PID is this process's, and signals reach it
// directly.
//
//   RILL_FROM_SOURCE unset, '' or '0' ──▶ dist/src/cli/main.js; missing ──▶ one line: build it, exit 1
//   RILL_FROM_SOURCE=1                ──▶ src/cli/main.ts through tsx (a devDependency): development
//                                         only, no build step after an edit, every start transpiles
//   anything else                     ──▶ one line: what it accepts, exit 2 (a usage error)
//
// Plain JavaScript on purpose: it must run before anything is compiled.
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

const compiledMain = new URL('../dist/src/cli/main.js', import.meta.url)
const sourceMain = new URL('../src/cli/main.ts', import.meta.url)
const packageRoot = fileURLToPath(new URL('..', import.meta.url))

/** Exit code of a usage error (API.md: 0 ok, 1 failure, 2 usage error). */
const usageExit = 2
/** Exit code when the CLI cannot be loaded at all. */
const failureExit = 1

function fail(line, code) {
  process.stderr.write(`rill: ${line}\n`)
  process.exit(code)
}

const fromSource = process.env.RILL_FROM_SOURCE ?? ''
if (fromSource !== '' && fromSource !== '0' && fromSource !== '1') {
  fail(`RILL_FROM_SOURCE must be 1 (load src/ through tsx) or 0 / unset (run dist/), got "${fromSource}"`, usageExit)
}

if (fromSource === '1') {
  if (!existsSync(sourceMain)) fail(`RILL_FROM_SOURCE=1 but ${fileURLToPath(sourceMain)} is missing (an installed package ships dist/ only): unset RILL_FROM_SOURCE`, failureExit)
  let register
  try {
    ;({ register } = await import('tsx/esm/api'))
  } catch {
    fail(`RILL_FROM_SOURCE=1 needs tsx, a devDependency: run \`npm ci\` (without --omit=dev) in ${packageRoot}, or unset RILL_FROM_SOURCE`, failureExit)
  }
  register()
  await import(sourceMain.href)
} else {
  if (!existsSync(compiledMain)) {
    fail(`${fileURLToPath(compiledMain)} is missing: run \`npm run build\` (or \`npm ci\`) in ${packageRoot} first, or set RILL_FROM_SOURCE=1 to run the sources through tsx`, failureExit)
  }
  await import(compiledMain.href)
}
