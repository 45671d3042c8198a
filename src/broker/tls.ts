/**
 * A broker's TLS material: its certificate (and any intermediates), its
 * private key and the CA that peers' and clients' certificates are checked
 * against, read from PEM files and checked before use, at start and on
 * every reload (SIGHUP).
 *
 *   --tls-cert FILE  leaf [+ intermediates] ─┐
 *   --tls-key FILE   private key ────────────┼─▶ loadTlsMaterial ─▶ TlsMaterial (bytes + what identifies the leaf)
 *   --tls-ca FILE    CA certificate(s) ──────┘      checks: readable, PEM, key matches, chains to the CA,
 *                                                   valid now, names the broker's HTTP and peer hosts
 *
 * Every check is one a peer or a client would make anyway: failing here, at
 * start, with the file named, beats a cluster whose brokers refuse each
 * other with a TLS alert. A reload that fails keeps the old material.
 */
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { ErrorCode, RillError } from '../base/index.ts'

/** Whether clients of the HTTP API must present a certificate signed by the CA. */
export type ClientAuth = 'none' | 'optional' | 'required'
export const clientAuthModes: readonly ClientAuth[] = ['none', 'optional', 'required']

/** Where the TLS files are, and what clients must show (BrokerConfig.tls). */
export interface TlsConfig {
  readonly certFile: string
  readonly keyFile: string
  readonly caFile: string
  /**
   * `none`: a client certificate is asked for but not checked (brokers'
   * internal calls still need one from the CA); `optional`: a client that
   * shows one must show one signed by the CA; `required`: every client must.
   */
  readonly clientAuth: ClientAuth
}

/** Checked TLS material, ready for node:tls. */
export interface TlsMaterial {
  /** PEM: the leaf certificate, then any intermediates from the same file. */
  readonly cert: Buffer
  readonly key: Buffer
  /** PEM: the CA certificate(s) peers and clients are verified against. */
  readonly ca: Buffer
  /** The leaf's SHA-256 fingerprint (`AB:CD:...`), for logs: which certificate is in use. */
  readonly fingerprint256: string
  /** The leaf's serial number (hex). */
  readonly serial: string
  readonly subject: string
  /** When the leaf expires, ms since the epoch. */
  readonly validToMs: number
}

/** Largest PEM file read (a bundle of a few dozen certificates fits many times over). */
export const tlsFileBytesMax = 1024 * 1024
/** Certificates per file (leaf + intermediates, or a CA bundle). */
export const pemCertificatesMax = 64
/** Intermediates followed from the leaf to the CA. */
const chainDepthMax = 8
/** Listen addresses that are not a name a certificate could carry. */
const wildcardHosts: ReadonlySet<string> = new Set(['0.0.0.0', '::', ''])

function bad(field: string, message: string): RillError {
  return new RillError(ErrorCode.INVALID_REQUEST, `${field}: ${message}`, { details: { field } })
}

function readPem(field: string, path: string): string {
  let bytes: Buffer
  try {
    bytes = readFileSync(path)
  } catch (error) {
    throw bad(field, `cannot read ${path}: ${(error as Error).message}`)
  }
  if (bytes.byteLength > tlsFileBytesMax) throw bad(field, `${path} is larger than ${tlsFileBytesMax} bytes: not a PEM file`)
  return bytes.toString('utf8')
}

function certificates(field: string, path: string, text: string): X509Certificate[] {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []
  if (blocks.length === 0) throw bad(field, `${path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`)
  if (blocks.length > pemCertificatesMax) throw bad(field, `${path} holds more than ${pemCertificatesMax} certificates`)
  return blocks.map((block, i) => {
    try {
      return new X509Certificate(block)
    } catch (error) {
      throw bad(field, `certificate ${i + 1} in ${path} is not valid X.509: ${(error as Error).message}`)
    }
  })
}

function privateKey(field: string, path: string, text: string): KeyObject {
  try {
    return createPrivateKey(text)
  } catch (error) {
    throw bad(field, `${path} is not an unencrypted PEM private key: ${(error as Error).message}`)
  }
}

/** True if `cert` was issued and signed by `issuer`. */
function signedBy(cert: X509Certificate, issuer: X509Certificate): boolean {
  return cert.checkIssued(issuer) && cert.verify(issuer.publicKey)
}

/** Follows the leaf through the intermediates of its own file up to a certificate of the CA file; throws if it never gets there. */
function checkChain(config: TlsConfig, chain: readonly X509Certificate[], cas: readonly X509Certificate[]): void {
  let current = chain[0]!
  for (let depth = 0; depth <= chainDepthMax; depth++) {
    if (cas.some((ca) => signedBy(current, ca))) return
    const next = chain.find((c) => c !== current && signedBy(current, c))
    if (next === undefined) break
    current = next
  }
  throw bad('tls-cert', `${config.certFile} (${chain[0]!.subject.replace(/\n/g, ', ')}) is not signed by the CA in ${config.caFile}: peers would refuse it`)
}

/** Throws unless the leaf names every host clients and peers reach this broker at. */
function checkHosts(config: TlsConfig, leaf: X509Certificate, hosts: readonly string[]): void {
  for (const host of hosts) {
    if (wildcardHosts.has(host)) continue
    const named = isIP(host) === 0 ? leaf.checkHost(host) : leaf.checkIP(host)
    if (named === undefined) {
      throw bad('tls-cert', `${config.certFile} does not name ${host} (its names: ${leaf.subjectAltName ?? leaf.subject.replace(/\n/g, ', ')}): peers and clients connecting to ${host} would refuse it`)
    }
  }
}

/**
 * Reads and checks the files of `config`. `hosts` are the addresses the
 * broker is reached at (HTTP and peer); the certificate must name each one
 * (a wildcard listen address is skipped). `nowMs` (wall clock) checks the
 * validity period. Throws INVALID_REQUEST naming the flag and the file.
 */
export function loadTlsMaterial(config: TlsConfig, options: { nowMs: number; hosts: readonly string[] }): TlsMaterial {
  const certText = readPem('tls-cert', config.certFile)
  const keyText = readPem('tls-key', config.keyFile)
  const caText = readPem('tls-ca', config.caFile)
  const chain = certificates('tls-cert', config.certFile, certText)
  const cas = certificates('tls-ca', config.caFile, caText)
  const key = privateKey('tls-key', config.keyFile, keyText)
  const leaf = chain[0]!
  if (!leaf.checkPrivateKey(key)) throw bad('tls-key', `${config.keyFile} is not the key of the certificate in ${config.certFile}`)
  for (const ca of cas) if (!ca.ca) throw bad('tls-ca', `${config.caFile} holds ${ca.subject.replace(/\n/g, ', ')}, which is not a CA certificate`)
  checkChain(config, chain, cas)
  const validFromMs = Date.parse(leaf.validFrom)
  const validToMs = Date.parse(leaf.validTo)
  if (!(options.nowMs >= validFromMs)) throw bad('tls-cert', `${config.certFile} is not valid before ${leaf.validFrom}`)
  if (!(options.nowMs <= validToMs)) throw bad('tls-cert', `${config.certFile} expired ${leaf.validTo}`)
  checkHosts(config, leaf, options.hosts)
  return {
    cert: Buffer.from(certText),
    key: Buffer.from(keyText),
    ca: Buffer.from(caText),
    fingerprint256: leaf.fingerprint256,
    serial: leaf.serialNumber,
    subject: leaf.subject.replace(/\n/g, ', '),
    validToMs,
  }
}

/** Longest a client may take for the TLS handshake of the HTTP API, ms (node's default is 120 s: a socket held that long by a client that never speaks). */
export const httpTlsHandshakeMsMax = 10_000

/** The certificate, key and CA of a secure context (what `setSecureContext` takes on a reload). */
export function secureContextOptions(material: TlsMaterial): { cert: Buffer; key: Buffer; ca: Buffer; minVersion: 'TLSv1.2' } {
  return { cert: material.cert, key: material.key, ca: material.ca, minVersion: 'TLSv1.2' }
}

/**
 * How node:https serves the API with `material`. A client certificate is
 * always asked for (brokers' internal calls show theirs) and never refused
 * in the handshake: the API answers a request that lacks the certificate
 * `clientAuth` demands with 401 UNAUTHORIZED in its error shape
 * (src/cli/broker.ts). A TLS 1.3 client refused in the handshake only sees
 * its connection closed after it, which says nothing about why.
 */
export function serverTlsOptions(material: TlsMaterial): ReturnType<typeof secureContextOptions> & { requestCert: true; rejectUnauthorized: false; handshakeTimeout: number } {
  return { ...secureContextOptions(material), requestCert: true, rejectUnauthorized: false, handshakeTimeout: httpTlsHandshakeMsMax }
}

/**
 * Why a request on a connection whose client certificate is `peer` may not
 * go on under `clientAuth`, or null if it may. `internal`: an internal
 * route, which always needs a certificate of the CA (brokers show theirs).
 */
export function clientCertificateRefusal(peer: { authorized: boolean; presented: boolean; error: string | null }, clientAuth: ClientAuth, internal: boolean): string | null {
  if (peer.authorized) return null
  const why = peer.presented ? `its client certificate is not accepted (${peer.error ?? 'not signed by the cluster CA'})` : 'it shows no client certificate'
  if (internal) return `internal route: needs a client certificate of the cluster CA (brokers show theirs); ${why}`
  if (clientAuth === 'required') return `this broker requires a client certificate signed by the cluster CA (--tls-client-auth required); ${why}`
  if (clientAuth === 'optional' && peer.presented) return `${why}: show one signed by the cluster CA, or none (--tls-client-auth optional)`
  return null
}
