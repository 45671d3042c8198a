/**
 * The SDKs' HTTP client against https:// brokers (client/http.ts): with the
 * CA it talks; without it, or against a plaintext port, it fails at once
 * with TLS_ERROR (never retried) saying what to change. (A server that
 * refuses a missing client certificate in a TLS 1.3 handshake only closes
 * the connection after it: brokers answer 401 instead, see
 * test/broker/tls-cluster.test.ts.)
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer as createHttpServer, type Server } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ClientErrorCode, HttpTransport, RillClient, RillClientError } from '../../client/index.ts'
import { createDevCa, type DevCa, type IssuedCert } from '../../src/cli/certs.ts'

let root = ''
let ca: DevCa
let server: IssuedCert
let client: IssuedCert
let other: DevCa
const servers: Server[] = []

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'rill-client-tls-'))
  ca = await createDevCa({ dir: join(root, 'ca') })
  other = await createDevCa({ dir: join(root, 'other'), name: 'other-ca' })
  server = await ca.issue({ name: 'broker', hosts: ['127.0.0.1'] })
  client = await ca.issue({ name: 'client', hosts: [] })
})

after(async () => {
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))))
  rmSync(root, { recursive: true, force: true })
})

const answer = (_req: unknown, res: { setHeader(n: string, v: string): void; end(b: string): void }): void => {
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify({ ok: true }))
}

async function listen(s: Server): Promise<string> {
  servers.push(s)
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  return `127.0.0.1:${(s.address() as AddressInfo).port}`
}

async function https(options: { requireClientCert?: boolean } = {}): Promise<string> {
  const s = createHttpsServer(
    { cert: readFileSync(server.certFile), key: readFileSync(server.keyFile), ca: readFileSync(ca.certFile), requestCert: true, rejectUnauthorized: options.requireClientCert === true },
    answer,
  )
  return `https://${await listen(s)}`
}

async function tlsFailure(http: HttpTransport, url: string): Promise<RillClientError> {
  const error = await http.request({ url, method: 'GET', path: '/health' }).then(
    () => assert.fail('the request should fail'),
    (e: unknown) => e,
  )
  assert.ok(error instanceof RillClientError, String(error))
  return error
}

test('with the CA (and a client certificate where one is required) requests go through', async () => {
  const http = new HttpTransport({ tls: { ca: readFileSync(ca.certFile) } })
  const mtls = new HttpTransport({ tls: { ca: readFileSync(ca.certFile, 'utf8'), cert: readFileSync(client.certFile), key: readFileSync(client.keyFile) } })
  try {
    assert.deepEqual(await http.request({ url: await https(), method: 'GET', path: '/health' }), { ok: true })
    assert.deepEqual(await mtls.request({ url: await https({ requireClientCert: true }), method: 'GET', path: '/health' }), { ok: true })
  } finally {
    await http.close()
    await mtls.close()
  }
})

test('each TLS failure is TLS_ERROR, not retriable, with what to change', async () => {
  const noCa = new HttpTransport()
  const wrongCa = new HttpTransport({ tls: { ca: readFileSync(other.certFile) } })
  const withCa = new HttpTransport({ tls: { ca: readFileSync(ca.certFile) } })
  try {
    const url = await https()
    for (const http of [noCa, wrongCa]) {
      const e = await tlsFailure(http, url)
      assert.equal(e.code, ClientErrorCode.TLS_ERROR)
      assert.equal(e.retriable, false)
      assert.equal(e.status, 0)
      assert.match(e.message, /TLS: the broker's certificate is not trusted: give the cluster's CA certificate \(tls\.ca; the CLI's --tls-ca FILE or RILL_TLS_CA\)/)
    }
    // The certificate names 127.0.0.1, not localhost.
    const named = await tlsFailure(withCa, url.replace('127.0.0.1', 'localhost'))
    assert.equal(named.code, ClientErrorCode.TLS_ERROR)
    assert.match(named.message, /does not name the host in the URL/)
    const plain = await tlsFailure(withCa, `https://${await listen(createHttpServer(answer))}`)
    assert.equal(plain.code, ClientErrorCode.TLS_ERROR)
    assert.match(plain.message, /does not speak TLS at this address: use http:\/\//)
  } finally {
    await Promise.all([noCa.close(), wrongCa.close(), withCa.close()])
  }
})

test('RillClient: a TLS failure on every bootstrap broker is that TLS_ERROR, not a retriable UNREACHABLE', async () => {
  const c = new RillClient({ brokers: [await https(), await https()] })
  try {
    await assert.rejects(c.metadata.refresh(), (e: unknown) => e instanceof RillClientError && e.code === ClientErrorCode.TLS_ERROR && !e.retriable)
    await assert.rejects(c.requestAny({ method: 'GET', path: '/health' }), (e: unknown) => e instanceof RillClientError && e.code === ClientErrorCode.TLS_ERROR)
  } finally {
    await c.close()
  }
})

test('bad tls options are INVALID_REQUEST at construction', () => {
  assert.throws(() => new HttpTransport({ tls: { cert: 'x' } }), /tls: cert and key go together/)
  assert.throws(() => new HttpTransport({ tls: { ca: 5 as unknown as string } }), /tls: ca must be PEM/)
})
