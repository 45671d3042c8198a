#!/usr/bin/env node
// The `rill` command. Loads the TypeScript sources through tsx so a checkout
// runs after `npm ci` with no build step; the process stays the broker's own
// (signals reach it directly).
import { register } from 'tsx/esm/api'

register()
await import('../src/cli/main.ts')
