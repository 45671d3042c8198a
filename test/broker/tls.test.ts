/**
 * A broker's TLS files are checked before use (src/broker/tls.ts): each
 * mistake an operator can make is a coded error naming the flag and the
 * file, found at start instead of as a TLS alert between brokers.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { ErrorCode, RillError } from '../../src/base/index.ts'
import { clientCertificateRefusal, loadTlsMaterial, type TlsConfig } from '../../src/broker/tls.ts'
import { createDevCa } from '../../src/cli/certs.ts'

const hosts = ['127.0.0.1', '127.0.0.11']

test('loadTlsMaterial: good files load; every bad one is INVALID_REQUEST naming the flag and file', async () => {
  const root = mkdtempSync(join(tmpdir(), 'rill-tls-'))
  try {
    const ca = await createDevCa({ dir: join(root, 'a') })
    const other = await createDevCa({ dir: join(root, 'b'), name: 'other-ca' })
    const good = await ca.issue({ name: 'broker-1', hosts: [...hosts, 'localhost'] })
    const stranger = await other.issue({ name: 'broker-9', hosts })
    const narrow = await ca.issue({ name: 'broker-narrow', hosts: ['127.0.0.1'] })
    const config: TlsConfig = { certFile: good.certFile, keyFile: good.keyFile, caFile: ca.certFile, clientAuth: 'none' }
    const now = Date.now()

    const m = loadTlsMaterial(config, { nowMs: now, hosts })
    assert.equal(m.fingerprint256, good.fingerprint256)
    assert.equal(m.serial, good.serial)
    assert.match(m.subject, /CN=broker-1/)
    assert.deepEqual(m.cert, readFileSync(good.certFile))
    // A wildcard listen address is no name to check.
    loadTlsMaterial(config, { nowMs: now, hosts: ['0.0.0.0'] })
    // A CA bundle holding the right CA among others is fine.
    const bundle = join(root, 'bundle.crt')
    writeFileSync(bundle, Buffer.concat([readFileSync(other.certFile), readFileSync(ca.certFile)]))
    loadTlsMaterial({ ...config, caFile: bundle }, { nowMs: now, hosts })

    const garbage = join(root, 'garbage.pem')
    writeFileSync(garbage, 'not a pem file\n')
    const cases: Array<[string, TlsConfig, RegExp, { nowMs?: number; hosts?: string[] }?]> = [
      ['missing cert', { ...config, certFile: join(root, 'nope.crt') }, /^tls-cert: cannot read .*nope\.crt/],
      ['missing key', { ...config, keyFile: join(root, 'nope.key') }, /^tls-key: cannot read .*nope\.key/],
      ['missing CA', { ...config, caFile: join(root, 'nope-ca.crt') }, /^tls-ca: cannot read .*nope-ca\.crt/],
      ['cert not PEM', { ...config, certFile: garbage }, /^tls-cert: .*garbage\.pem holds no PEM certificate/],
      ['key not PEM', { ...config, keyFile: garbage }, /^tls-key: .*garbage\.pem is not an unencrypted PEM private key/],
      ['CA not PEM', { ...config, caFile: garbage }, /^tls-ca: .*garbage\.pem holds no PEM certificate/],
      ['key of another certificate', { ...config, keyFile: stranger.keyFile }, /^tls-key: .*broker-9\.key is not the key of the certificate in .*broker-1\.crt/],
      ['certificate of another CA', { ...config, certFile: stranger.certFile, keyFile: stranger.keyFile }, /^tls-cert: .*broker-9\.crt \(CN=broker-9\) is not signed by the CA in .*ca\.crt: peers would refuse it/],
      ['a leaf given as the CA', { ...config, caFile: good.certFile }, /^tls-ca: .* holds CN=broker-1, which is not a CA certificate/],
      ['expired', config, /^tls-cert: .*broker-1\.crt expired/, { nowMs: now + 400 * 86_400_000 }],
      ['not yet valid', config, /^tls-cert: .*broker-1\.crt is not valid before/, { nowMs: now - 86_400_000 }],
      ['a host it does not name', { ...config, certFile: narrow.certFile, keyFile: narrow.keyFile }, /^tls-cert: .*broker-narrow\.crt does not name 127\.0\.0\.11 \(its names: IP Address:127\.0\.0\.1\)/],
      ['a DNS name it does not name', config, /^tls-cert: .* does not name broker1\.example/, { hosts: ['broker1.example'] }],
    ]
    for (const [name, c, pattern, options] of cases) {
      assert.throws(
        () => loadTlsMaterial(c, { nowMs: options?.nowMs ?? now, hosts: options?.hosts ?? hosts }),
        (e: unknown) => e instanceof RillError && e.code === ErrorCode.INVALID_REQUEST && pattern.test(e.message),
        name,
      )
    }
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

test('createDevCa: each certificate has its own serial; reissuing a name replaces its files', async () => {
  const root = mkdtempSync(join(tmpdir(), 'rill-tls-'))
  try {
    const ca = await createDevCa({ dir: root })
    const first = await ca.issue({ name: 'broker-1', hosts: ['127.0.0.1', 'localhost'] })
    const kept = join(root, 'first.crt')
    copyFileSync(first.certFile, kept)
    const second = await ca.issue({ name: 'broker-1', hosts: ['127.0.0.1'] })
    assert.equal(second.certFile, first.certFile)
    assert.notEqual(second.serial, first.serial)
    assert.notEqual(second.fingerprint256, first.fingerprint256)
    const x = new X509Certificate(readFileSync(second.certFile))
    assert.equal(x.serialNumber, second.serial)
    assert.ok(x.checkIssued(new X509Certificate(readFileSync(ca.certFile))))
    assert.equal(x.checkIP('127.0.0.1'), '127.0.0.1')
    assert.equal(new X509Certificate(readFileSync(kept)).checkHost('localhost'), 'localhost')
    assert.equal(x.checkHost('localhost'), undefined)
    assert.equal(new X509Certificate(readFileSync(ca.certFile)).ca, true)
    await assert.rejects(ca.issue({ name: 'a/b', hosts: [] }), /certificate name "a\/b"/)
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
})

test('clientCertificateRefusal: what each --tls-client-auth mode lets through; internal routes always need a certificate of the CA', () => {
  const good = { authorized: true, presented: true, error: null }
  const none = { authorized: false, presented: false, error: null }
  const foreign = { authorized: false, presented: true, error: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' }
  for (const mode of ['none', 'optional', 'required'] as const) {
    assert.equal(clientCertificateRefusal(good, mode, false), null)
    assert.equal(clientCertificateRefusal(good, mode, true), null)
    assert.match(clientCertificateRefusal(none, mode, true)!, /^internal route: needs a client certificate of the cluster CA .*shows no client certificate/)
    assert.match(clientCertificateRefusal(foreign, mode, true)!, /not accepted \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\)/)
  }
  assert.equal(clientCertificateRefusal(none, 'none', false), null)
  assert.equal(clientCertificateRefusal(foreign, 'none', false), null)
  assert.equal(clientCertificateRefusal(none, 'optional', false), null)
  assert.match(clientCertificateRefusal(foreign, 'optional', false)!, /not accepted .*show one signed by the cluster CA, or none/)
  assert.match(clientCertificateRefusal(none, 'required', false)!, /requires a client certificate signed by the cluster CA \(--tls-client-auth required\); it shows no client certificate/)
  assert.match(clientCertificateRefusal(foreign, 'required', false)!, /requires a client certificate/)
})
