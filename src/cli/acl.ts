/**
 * `rill acl`: bearer tokens and ACLs of a cluster started with `--auth
 * required` (docs/security.md).
 *
 *   rill acl token create --principal P [--secret-file F]   the token on stdout, once
 *   rill acl token list [--principal P]
 *   rill acl token revoke ID
 *   rill acl add|remove --principal P (--topic NAME | --group NAME | --cluster) [--prefixed] --operation OP[,OP...]
 *   rill acl list [--principal P]
 *   rill acl whoami
 *
 * Every command authenticates with `--token` (RILL_TOKEN) like any other.
 * `token create --secret-file F` instead proves it holds the cluster secret
 * (the internal MAC, and under TLS a client certificate of the CA): how an
 * operator issues the first token, for a `--super-users` principal.
 */
import type { AclEntry } from '../controller/index.ts'
import { UsageError, expectPositionals, parseArgs, target, type FlagSpecs, type Flags } from './args.ts'
import { CliError } from './args.ts'
import { request } from './client.ts'
import { table } from './topic.ts'

export const aclUsage = `usage:
  rill acl token create --principal P [--secret-file FILE]   prints the new token (only this once)
  rill acl token list [--principal P]
  rill acl token revoke ID
  rill acl add    --principal P (--topic NAME | --group NAME | --cluster) [--prefixed] --operation OP[,OP...]
  rill acl remove --principal P (--topic NAME | --group NAME | --cluster) [--prefixed] --operation OP[,OP...]
  rill acl list [--principal P]
  rill acl whoami
operations: topic produce|consume|describe|create|delete|all; group read|describe|all; cluster create|delete|alter|describe|all
NAME "*" is every topic (group); --prefixed makes NAME a prefix
(all take --brokers URL,... and --token TOKEN or RILL_TOKEN; --secret-file authenticates with the cluster secret instead)
`

type Out = (line: string) => void

const principalFlag: FlagSpecs = { principal: { kind: 'string' } }
const aclFlags: FlagSpecs = {
  principal: { kind: 'string' },
  topic: { kind: 'string' },
  group: { kind: 'string' },
  cluster: { kind: 'boolean' },
  prefixed: { kind: 'boolean' },
  operation: { kind: 'string' },
}

interface TokenAnswer {
  id: string
  principal: string
  createdMs: number
  token: string
}

export async function aclCommand(argv: readonly string[], out: Out, err: Out): Promise<number> {
  const [sub, ...rest] = argv
  switch (sub) {
    case 'token':
      return tokenCommand(rest, out, err)
    case 'add':
    case 'remove': {
      const parsed = parseArgs(rest, aclFlags)
      if (parsed.flags.help === true) return help(out)
      expectPositionals(parsed, [])
      const at = target(parsed.flags)
      for (const acl of aclsOf(parsed.flags)) {
        if (sub === 'add') {
          await request(at, 'POST', '/v1/acls', { body: acl })
          out(`added ${describeAcl(acl)}`)
        } else {
          const q = new URLSearchParams(acl as unknown as Record<string, string>).toString()
          const r = await request<{ removed: boolean }>(at, 'DELETE', `/v1/acls?${q}`)
          out(`${r.removed ? 'removed' : 'no such ACL:'} ${describeAcl(acl)}`)
        }
      }
      return 0
    }
    case 'list': {
      const parsed = parseArgs(rest, principalFlag)
      if (parsed.flags.help === true) return help(out)
      expectPositionals(parsed, [])
      const q = typeof parsed.flags.principal === 'string' ? `?principal=${encodeURIComponent(parsed.flags.principal)}` : ''
      const { acls } = await request<{ acls: AclEntry[] }>(target(parsed.flags), 'GET', `/v1/acls${q}`)
      out(table(['PRINCIPAL', 'RESOURCE', 'NAME', 'PATTERN', 'OPERATION'], acls.map((a) => [a.principal, a.resourceType, a.resourceName, a.patternType, a.operation])))
      return 0
    }
    case 'whoami': {
      const parsed = parseArgs(rest, {})
      if (parsed.flags.help === true) return help(out)
      expectPositionals(parsed, [])
      const { principal } = await request<{ principal: string | null }>(target(parsed.flags), 'GET', '/v1/whoami')
      out(principal ?? '(anonymous: the broker does not require authentication)')
      return 0
    }
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      return help(out)
    default:
      throw new UsageError(`unknown acl command "${sub}" (token, add, remove, list, whoami)`)
  }
}

async function tokenCommand(argv: readonly string[], out: Out, err: Out): Promise<number> {
  const [sub, ...rest] = argv
  switch (sub) {
    case 'create': {
      const parsed = parseArgs(rest, { principal: { kind: 'string' }, 'secret-file': { kind: 'string' } })
      if (parsed.flags.help === true) return help(out)
      expectPositionals(parsed, [])
      const principal = parsed.flags.principal
      if (typeof principal !== 'string') throw new UsageError('--principal is required')
      const at = target(parsed.flags)
      const secretFile = parsed.flags['secret-file']
      let made: TokenAnswer
      if (typeof secretFile === 'string') {
        // Loaded only here: the broker's secret-file rules and the internal MAC.
        const [{ readClusterSecretFile }, { internalHeaders }] = await Promise.all([import('../broker/config.ts'), import('../broker/internal-auth.ts')])
        let secret: Uint8Array
        try {
          secret = readClusterSecretFile(secretFile)
        } catch (error) {
          throw new UsageError((error as Error).message)
        }
        const path = '/internal/v1/tokens'
        const bodyText = JSON.stringify({ principal })
        made = await request<TokenAnswer>(at, 'POST', path, { body: { principal }, bodyText, headers: internalHeaders(secret, 'POST', path, bodyText) })
      } else {
        made = await request<TokenAnswer>(at, 'POST', '/v1/acl/tokens', { body: { principal } })
      }
      out(made.token)
      err(`token ${made.id} for ${made.principal}: shown only this once (the cluster keeps a hash); revoke with rill acl token revoke ${made.id}`)
      return 0
    }
    case 'list': {
      const parsed = parseArgs(rest, principalFlag)
      if (parsed.flags.help === true) return help(out)
      expectPositionals(parsed, [])
      const q = typeof parsed.flags.principal === 'string' ? `?principal=${encodeURIComponent(parsed.flags.principal)}` : ''
      const { tokens } = await request<{ tokens: { id: string; principal: string; createdMs: number }[] }>(target(parsed.flags), 'GET', `/v1/acl/tokens${q}`)
      out(table(['ID', 'PRINCIPAL', 'CREATED'], tokens.map((t) => [t.id, t.principal, new Date(t.createdMs).toISOString()])))
      return 0
    }
    case 'revoke': {
      const parsed = parseArgs(rest, {})
      if (parsed.flags.help === true) return help(out)
      const [id] = expectPositionals(parsed, ['ID'])
      if (!/^[0-9a-f]{16}$/.test(id!)) throw new UsageError(`a token id is 16 hex digits (rill acl token list), got "${id}"`)
      const r = await request<{ revoked: boolean }>(target(parsed.flags), 'DELETE', `/v1/acl/tokens/${id}`)
      if (!r.revoked) throw new CliError(`no token ${id}`)
      out(`revoked token ${id}`)
      return 0
    }
    default:
      throw new UsageError(`unknown acl token command "${sub ?? ''}" (create, list, revoke)`)
  }
}

function help(out: Out): number {
  out(aclUsage.trimEnd())
  return 0
}

/** The ACLs `rill acl add|remove` flags describe: one per operation. */
export function aclsOf(flags: Flags): AclEntry[] {
  const principal = flags.principal
  if (typeof principal !== 'string') throw new UsageError('--principal is required')
  const chosen = [typeof flags.topic === 'string', typeof flags.group === 'string', flags.cluster === true].filter(Boolean).length
  if (chosen !== 1) throw new UsageError('give exactly one of --topic NAME, --group NAME, --cluster')
  const operations = typeof flags.operation === 'string' ? flags.operation.split(',').map((o) => o.trim()) : []
  if (operations.length === 0 || operations.some((o) => o === '')) throw new UsageError('--operation OP[,OP...] is required')
  const resourceType: AclEntry['resourceType'] = typeof flags.topic === 'string' ? 'topic' : typeof flags.group === 'string' ? 'group' : 'cluster'
  const resourceName = resourceType === 'cluster' ? 'cluster' : String(resourceType === 'topic' ? flags.topic : flags.group)
  if (resourceType === 'cluster' && flags.prefixed === true) throw new UsageError('--prefixed names a topic or group prefix, not the cluster')
  const patternType: AclEntry['patternType'] = flags.prefixed === true ? 'prefixed' : 'literal'
  return operations.map((operation) => ({ principal, resourceType, resourceName, patternType, operation: operation as AclEntry['operation'] }))
}

function describeAcl(a: AclEntry): string {
  const name = a.resourceType === 'cluster' ? 'the cluster' : `${a.resourceType} ${a.patternType === 'prefixed' ? `${a.resourceName}*` : a.resourceName}`
  return `${a.principal} may ${a.operation} ${name}`
}
