/**
 * `--help` on every command, `broker` included (API.md): exit 0 with the
 * command's usage on stdout. `rill broker --help` was an unknown flag (exit
 * 2; issue 10, hole 8). The commands are read from `rill help` itself, so
 * a command added later is covered too.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runCli } from './helpers.ts'

/** CLI processes started at once. */
const helpProcessesAtOnce = 4

test('every command and subcommand answers --help and -h with its usage, exit 0', { timeout: 300_000 }, async () => {
  const top = await runCli(['help'])
  assert.equal(top.code, 0)
  const listed = top.stdout.split('\n\n')[1]!.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[0]!).filter((c) => c !== '')
  assert.ok(listed.includes('broker') && listed.includes('dev') && listed.length >= 8, `commands listed: ${listed.join(' ')}`)
  const invocations: string[][] = []
  for (const command of listed) invocations.push([command, '--help'], [command, '-h'])
  for (const sub of ['create', 'list', 'describe', 'delete']) invocations.push(['topic', sub, '--help'])
  invocations.push(['group', 'describe', '--help'], ['broker', '--id', '1', '--help'], ['--help'], ['-h'])
  // A few processes at a time: ~30 node starts at once on a busy 2-core machine took over a minute each.
  const results: { args: string[]; r: Awaited<ReturnType<typeof runCli>> }[] = []
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < invocations.length) {
      const args = invocations[next++]!
      results.push({ args, r: await runCli(args, { timeoutMs: 60_000 }) })
    }
  }
  await Promise.all(Array.from({ length: helpProcessesAtOnce }, worker))
  for (const { args, r } of results) {
    const what = `rill ${args.join(' ')}: exit ${r.code}\n${r.stderr}`
    assert.equal(r.code, 0, what)
    assert.match(r.stdout, /usage:/, what)
    const command = args[0]!.startsWith('-') || args[0] === 'help' ? '<command>' : args[0]!
    assert.match(r.stdout, new RegExp(`rill ${command}`), what)
    assert.equal(r.stderr, '', what)
  }
})

test('rill broker --help lists every broker flag the parser takes', async () => {
  const r = await runCli(['broker', '--help'])
  assert.equal(r.code, 0, r.stderr)
  const flags = ['--id', '--dir', '--http', '--peer', '--seeds', '--join', '--cluster-id', '--secret', '--secret-file', '--persistence', '--rack', '--tick-ms', '--election-ticks', '--heartbeat-ticks', '--log-level', '--shutdown-timeout', '--quota-produce-bytes', '--quota-fetch-bytes', '--quota-requests', '--quota-throttle-max', '--config']
  for (const flag of flags) assert.match(r.stdout, new RegExp(`^  ${flag} `, 'm'), flag)
  assert.match(r.stdout, /RILL_SECRET_FILE/)
  assert.match(r.stdout, /RILL_QUOTA_THROTTLE_MAX/)
})
