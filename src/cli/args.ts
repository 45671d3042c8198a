/**
 * Flags of the `rill` commands: `--name value`, `--name=value`, booleans as
 * `--name`. Every command declares its flags; anything else is a usage error
 * (exit 2) naming the flag and what it expects.
 *
 * Every command also takes where the cluster is and how to reach it:
 * `--brokers URL,URL,...` (RILL_BROKERS; `--url` and RILL_URL are the same
 * thing under their old name, and take a list too): requests go to the first
 * broker that answers. For https:// brokers `--tls-ca FILE` (RILL_TLS_CA:
 * the cluster's CA certificate) and `--tls-cert FILE --tls-key FILE`
 * (RILL_TLS_CERT, RILL_TLS_KEY: a client certificate, for brokers that ask
 * for one), and `--token TOKEN` (RILL_TOKEN: a bearer token, for brokers
 * started with `--auth required`). `target()` gathers them.
 */
import { readFileSync } from 'node:fs'
import type { ClientTlsOptions } from '../../client/index.ts'

/**
 * Exit codes of every command but `broker` and `dev` (docs/cli.md): what
 * happened, for scripts. 130 is the shell's own code for a command ended by
 * SIGINT (128 + 2), 143 for SIGTERM (128 + 15).
 */
export const exitCodes = {
  ok: 0,
  /** The cluster answered no (unknown topic, refused, TLS mismatch, a failed write). */
  failed: 1,
  /** A bad flag or argument: nothing was sent. */
  usage: 2,
  /** No broker of --brokers answered. */
  unreachable: 3,
  interrupted: 130,
  terminated: 143,
} as const

/** A usage error: bad flag, missing argument. Exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError'
}

/** An operating failure: the cluster said no. Exit code 1 (3 for UnreachableError of client.ts). */
export class CliError extends Error {
  override name = 'CliError'
}

export type FlagSpec =
  | { readonly kind: 'boolean' }
  | { readonly kind: 'string'; readonly values?: readonly string[] }
  | { readonly kind: 'int'; readonly min: number; readonly max: number }
  | { readonly kind: 'url' }
  /** One or more broker URLs, comma-separated. */
  | { readonly kind: 'urls' }
  /** Repeatable: every value in order (`--header a=1 --header b=2`). */
  | { readonly kind: 'list'; readonly max: number }

export type FlagSpecs = Readonly<Record<string, FlagSpec>>

/** Parsed flags: strings, numbers, booleans and lists (repeatable flags, `urls`) by flag name. */
export type Flags = Record<string, string | number | boolean | readonly string[] | undefined>

export interface ParsedArgs {
  readonly flags: Flags
  readonly positionals: string[]
}

/** Flags every command takes. */
export const commonFlags: FlagSpecs = {
  brokers: { kind: 'urls' },
  url: { kind: 'urls' },
  help: { kind: 'boolean' },
  'tls-ca': { kind: 'string' },
  'tls-cert': { kind: 'string' },
  'tls-key': { kind: 'string' },
  token: { kind: 'string' },
}

/** Broker URLs one command takes (a list of thousands is a typo, not a cluster). */
export const brokerUrlsMax = 64

function parseUrl(name: string, raw: string): string {
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    throw new UsageError(`--${name} expects a URL like http://127.0.0.1:7070, got "${raw}"`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--${name} must be an http:// or https:// URL, got "${raw}"`)
  return raw.replace(/\/+$/, '')
}

/** `a,b,c` as URLs: at least one, at most `brokerUrlsMax`, each checked. */
export function parseUrls(name: string, raw: string): string[] {
  const parts = raw.split(',').map((s) => s.trim()).filter((s) => s !== '')
  if (parts.length === 0) throw new UsageError(`--${name} expects one or more URLs like http://127.0.0.1:7070,http://127.0.0.1:7071`)
  if (parts.length > brokerUrlsMax) throw new UsageError(`--${name}: at most ${brokerUrlsMax} URLs, got ${parts.length}`)
  return [...new Set(parts.map((p) => parseUrl(name, p)))]
}

function parseValue(name: string, spec: FlagSpec, raw: string): string | number | readonly string[] {
  switch (spec.kind) {
    case 'int': {
      if (!/^-?[0-9]+$/.test(raw)) throw new UsageError(`--${name} expects an integer, got "${raw}"`)
      const n = Number(raw)
      if (!Number.isSafeInteger(n) || n < spec.min || n > spec.max) throw new UsageError(`--${name} must be in [${spec.min}, ${spec.max}], got ${raw}`)
      return n
    }
    case 'url':
      return parseUrl(name, raw)
    case 'urls':
      return parseUrls(name, raw)
    case 'string':
      if (spec.values !== undefined && !spec.values.includes(raw)) {
        throw new UsageError(`--${name} must be one of ${spec.values.join(', ')}, got "${raw}"`)
      }
      return raw
    default:
      return raw
  }
}

/** Parses `argv` (after the command words) against `specs` plus the common flags. */
export function parseArgs(argv: readonly string[], specs: FlagSpecs): ParsedArgs {
  const all: FlagSpecs = { ...commonFlags, ...specs }
  const flags: Flags = {}
  const positionals: string[] = []
  let onlyPositionals = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (onlyPositionals || !arg.startsWith('-') || arg === '-') {
      positionals.push(arg)
      continue
    }
    if (arg === '--') {
      onlyPositionals = true
      continue
    }
    if (arg === '-h') {
      flags.help = true
      continue
    }
    if (!arg.startsWith('--')) throw new UsageError(`unknown flag ${arg}`)
    const eq = arg.indexOf('=')
    const name = arg.slice(2, eq === -1 ? undefined : eq)
    const spec = all[name]
    if (spec === undefined) throw new UsageError(`unknown flag --${name}`)
    const previous = flags[name]
    if (previous !== undefined && spec.kind !== 'list') throw new UsageError(`--${name} given twice`)
    if (spec.kind === 'list' && Array.isArray(previous) && previous.length >= spec.max) throw new UsageError(`--${name}: at most ${spec.max}`)
    if (spec.kind === 'boolean') {
      if (eq !== -1) throw new UsageError(`--${name} takes no value`)
      flags[name] = true
      continue
    }
    let raw: string
    if (eq !== -1) raw = arg.slice(eq + 1)
    else {
      const next = argv[i + 1]
      if (next === undefined || (next.startsWith('--') && next.length > 2)) throw new UsageError(`--${name} needs a value`)
      raw = next
      i++
    }
    flags[name] = spec.kind === 'list' ? [...((previous as readonly string[] | undefined) ?? []), raw] : parseValue(name, spec, raw)
  }
  if (flags.url !== undefined && flags.brokers !== undefined && specs.brokers === undefined) throw new UsageError('--url is the old name of --brokers: give one of them')
  return { flags, positionals }
}

/** Exactly `names.length` positionals, named in the error. */
export function expectPositionals(parsed: ParsedArgs, names: readonly string[]): string[] {
  const got = parsed.positionals
  if (got.length < names.length) throw new UsageError(`missing ${names.slice(got.length).join(' ')}`)
  if (got.length > names.length) throw new UsageError(`unexpected argument "${got[names.length]}"`)
  return got
}

/** Default broker URL: RILL_URL, or the first broker of `rill dev`. */
export const defaultUrl = 'http://127.0.0.1:7070'
/** The first broker of `rill dev --tls`: the default when a CA is given but no URL. */
export const defaultTlsUrl = 'https://127.0.0.1:7070'
/** Largest certificate or key file read (a PEM bundle is kilobytes). */
const pemFileBytesMax = 1024 * 1024

/** The brokers of a command: --brokers (or --url), then RILL_BROKERS (or RILL_URL), then the default. */
export function brokerUrls(flags: Flags, env: NodeJS.ProcessEnv = process.env): string[] {
  const flag = flags.brokers ?? flags.url
  if (Array.isArray(flag)) return [...(flag as readonly string[])]
  for (const name of ['RILL_BROKERS', 'RILL_URL']) {
    const fromEnv = env[name]
    if (fromEnv !== undefined && fromEnv !== '') return parseUrls(`brokers (${name})`, fromEnv)
  }
  return [tlsFile(flags, env, 'tls-ca') === null ? defaultUrl : defaultTlsUrl]
}

/** Where the cluster is and how to reach it: the broker URL and TLS settings (read from their files). */
export interface Target {
  /** The broker asked first: `urls[0]`. */
  readonly url: string
  /** Every broker given: a request that finds one not answering tries the next (client.ts). */
  readonly urls: readonly string[]
  readonly tls: ClientTlsOptions | undefined
  /** Bearer token for brokers started with `--auth required` (--token, RILL_TOKEN). */
  readonly token?: string
}

/** `--tls-ca`, `--tls-cert` or `--tls-key` (or RILL_TLS_CA, RILL_TLS_CERT, RILL_TLS_KEY): the path given, or null. */
function tlsFile(flags: Flags, env: NodeJS.ProcessEnv, name: 'tls-ca' | 'tls-cert' | 'tls-key'): string | null {
  const flag = flags[name]
  if (typeof flag === 'string') return flag
  const fromEnv = env[`RILL_${name.toUpperCase().replace('-', '_')}`]
  return fromEnv === undefined || fromEnv === '' ? null : fromEnv
}

function readPem(name: string, path: string): Buffer {
  let bytes: Buffer
  try {
    bytes = readFileSync(path)
  } catch (error) {
    throw new UsageError(`--${name}: cannot read ${path}: ${(error as Error).message}`)
  }
  if (bytes.byteLength > pemFileBytesMax || !bytes.toString('latin1').includes('-----BEGIN ')) throw new UsageError(`--${name}: ${path} is not a PEM file`)
  return bytes
}

/** The URL and TLS settings of a command (usage errors for unreadable files or a certificate without its key). */
export function target(flags: Flags, env: NodeJS.ProcessEnv = process.env): Target {
  const ca = tlsFile(flags, env, 'tls-ca')
  const cert = tlsFile(flags, env, 'tls-cert')
  const key = tlsFile(flags, env, 'tls-key')
  if ((cert === null) !== (key === null)) throw new UsageError(`--tls-cert and --tls-key go together (or RILL_TLS_CERT and RILL_TLS_KEY)`)
  const tls: ClientTlsOptions = {
    ...(ca === null ? {} : { ca: readPem('tls-ca', ca) }),
    ...(cert === null ? {} : { cert: readPem('tls-cert', cert), key: readPem('tls-key', key!) }),
  }
  const token = typeof flags.token === 'string' ? flags.token : env.RILL_TOKEN === undefined || env.RILL_TOKEN === '' ? undefined : env.RILL_TOKEN
  if (token !== undefined && !/^[\x21-\x7e]{1,512}$/.test(token)) throw new UsageError('--token (or RILL_TOKEN) must be one word of printable characters, as `rill acl token create` prints it')
  const urls = brokerUrls(flags, env)
  return { url: urls[0]!, urls, tls: ca === null && cert === null ? undefined : tls, ...(token === undefined ? {} : { token }) }
}
