/**
 * Throwaway certificates for `rill dev --tls` and the tests: a CA, and
 * certificates it signs for brokers (and clients). node:crypto makes the keys
 * (EC P-256), but Node cannot build an X.509 certificate, so the `openssl`
 * binary signs them (Debian/Ubuntu: `apt-get install openssl`; any OpenSSL
 * 1.1.1 or 3.x). Each call runs with a bounded time and its own minimal
 * config file, so the system's openssl.cnf does not matter.
 *
 *   createDevCa({ dir })          ──▶ DIR/ca.key (0600), DIR/ca.crt           self-signed, CA:TRUE
 *   ca.issue({ name, hosts })     ──▶ DIR/NAME.key (0600), DIR/NAME.crt       CN=NAME, SAN=hosts,
 *                                                                             serverAuth + clientAuth
 *
 * Every certificate gets a fresh random serial, so a reissued one is told
 * apart from the one it replaces (the SIGHUP reload test relies on it).
 * These are for development and tests: short-lived (`devCertDays`), keys
 * unencrypted on disk. Production certificates come from the operator's CA.
 */
import { execFile } from 'node:child_process'
import { generateKeyPairSync, randomBytes, X509Certificate } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { join } from 'node:path'
import { CliError } from './args.ts'

/** Longest one openssl run may take before it is killed, ms (each takes ~20 ms). */
export const opensslTimeoutMs = 10_000
/** Validity of a throwaway certificate, days. */
export const devCertDays = 30
/** Names (CN, file base names) and hosts a caller may give: nothing that could reach a shell or a config file. */
const namePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const hostPattern = /^[A-Za-z0-9.:-]{1,253}$/
/** Subject alternative names per certificate. */
const hostsMax = 32

/** A certificate and its key on disk, with what identifies it. */
export interface IssuedCert {
  readonly certFile: string
  readonly keyFile: string
  /** Serial number as Node's X509Certificate reports it (upper-case hex). */
  readonly serial: string
  /** SHA-256 fingerprint as Node reports it (`AB:CD:...`). */
  readonly fingerprint256: string
}

export interface DevCa extends IssuedCert {
  /**
   * Signs a new certificate `NAME.crt` (key `NAME.key`) in the CA's
   * directory, named `name` (CN) with `hosts` as subject alternative names
   * (IP addresses and DNS names). Usable by a server and as a client
   * certificate. Issuing the same name again replaces the files.
   */
  issue(options: { name: string; hosts: readonly string[]; days?: number }): Promise<IssuedCert>
}

/** Runs openssl with `args`; a missing binary or a failure is a CliError that says what to do. */
async function openssl(args: readonly string[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    execFile('openssl', args, { timeout: opensslTimeoutMs, killSignal: 'SIGKILL', maxBuffer: 1024 * 1024 }, (error, _stdout, stderr) => {
      if (error === null) return resolve()
      const e = error as NodeJS.ErrnoException & { killed?: boolean }
      if (e.code === 'ENOENT') {
        return reject(new CliError('making certificates needs the openssl binary, which is not on PATH (Debian/Ubuntu: apt-get install openssl)'))
      }
      const why = e.killed === true ? `killed after ${opensslTimeoutMs} ms` : String(stderr).trim().split('\n').slice(-3).join(' | ')
      reject(new CliError(`openssl ${args[0]} failed: ${why || e.message}`))
    })
  })
}

/** A fresh EC P-256 private key as PKCS#8 PEM, written readable by its owner only. */
function writeKey(path: string): void {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1', privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
  writeFileSync(path, privateKey, { mode: 0o600 })
}

/** A positive random 128-bit serial for openssl's -set_serial. */
function newSerial(): string {
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0]! & 0x7f) | 0x10
  return `0x${bytes.toString('hex')}`
}

function identify(certFile: string, keyFile: string): IssuedCert {
  const x = new X509Certificate(readFileSync(certFile))
  return { certFile, keyFile, serial: x.serialNumber, fingerprint256: x.fingerprint256 }
}

function checkName(what: string, name: string): void {
  if (!namePattern.test(name)) throw new CliError(`${what} "${name}": use 1-64 of [A-Za-z0-9._-], starting with a letter or digit`)
}

/** The subjectAltName value for `hosts`: IP:... for addresses, DNS:... for names. */
function subjectAltNames(hosts: readonly string[]): string {
  if (hosts.length > hostsMax) throw new CliError(`at most ${hostsMax} hosts per certificate, got ${hosts.length}`)
  for (const h of hosts) if (!hostPattern.test(h)) throw new CliError(`host "${h}" is not an IP address or DNS name`)
  return hosts.map((h) => (isIP(h) === 0 ? `DNS:${h}` : `IP:${h}`)).join(',')
}

/**
 * Makes a new CA in `dir` (created if missing; an older CA there is
 * replaced): `ca.key`, `ca.crt`. Answers it with `issue` for certificates.
 */
export async function createDevCa(options: { dir: string; name?: string; days?: number }): Promise<DevCa> {
  const { dir } = options
  const name = options.name ?? 'rill-dev-ca'
  checkName('CA name', name)
  const days = options.days ?? devCertDays
  mkdirSync(dir, { recursive: true })
  // Only what req and x509 need, so no system openssl.cnf is read.
  const config = join(dir, 'openssl.cnf')
  writeFileSync(
    config,
    [
      '[req]',
      'distinguished_name = dn',
      '[dn]',
      '[ca]',
      'basicConstraints = critical,CA:TRUE',
      'keyUsage = critical,keyCertSign,cRLSign',
      'subjectKeyIdentifier = hash',
      '',
    ].join('\n'),
  )
  const keyFile = join(dir, 'ca.key')
  const certFile = join(dir, 'ca.crt')
  writeKey(keyFile)
  await openssl(['req', '-x509', '-new', '-key', keyFile, '-config', config, '-extensions', 'ca', '-subj', `/CN=${name}`, '-days', String(days), '-set_serial', newSerial(), '-out', certFile])
  const ca = identify(certFile, keyFile)
  return {
    ...ca,
    async issue(leaf) {
      checkName('certificate name', leaf.name)
      const san = subjectAltNames(leaf.hosts)
      const base = join(dir, leaf.name)
      const ext = `${base}.ext`
      writeFileSync(
        ext,
        [
          '[leaf]',
          'basicConstraints = critical,CA:FALSE',
          'keyUsage = critical,digitalSignature,keyEncipherment',
          'extendedKeyUsage = serverAuth,clientAuth',
          'subjectKeyIdentifier = hash',
          'authorityKeyIdentifier = keyid',
          ...(san === '' ? [] : [`subjectAltName = ${san}`]),
          '',
        ].join('\n'),
      )
      const key = `${base}.key`
      const csr = `${base}.csr`
      const crt = `${base}.crt`
      writeKey(key)
      await openssl(['req', '-new', '-key', key, '-config', config, '-subj', `/CN=${leaf.name}`, '-out', csr])
      await openssl(['x509', '-req', '-in', csr, '-CA', certFile, '-CAkey', keyFile, '-set_serial', newSerial(), '-days', String(leaf.days ?? days), '-extfile', ext, '-extensions', 'leaf', '-out', crt])
      return identify(crt, key)
    },
  }
}
