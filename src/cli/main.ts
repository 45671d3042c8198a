/**
 * The `rill` command line. Exit codes: 0 ok, 1 failure, 2 usage error (API.md).
 */
const usage = `usage: rill <command> [flags]

commands:
  dev        start a local cluster (not built yet: see README "Status")
  help       this text
`

function main(argv: readonly string[]): number {
  const command = argv[0] ?? 'help'
  switch (command) {
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(usage)
      return 0
    case 'dev':
      process.stderr.write('rill dev: the broker is not built yet; the Raft core and its simulator are (npm run sim).\n')
      return 1
    default:
      process.stderr.write(`rill: unknown command "${command}"\n${usage}`)
      return 2
  }
}

process.exitCode = main(process.argv.slice(2))
