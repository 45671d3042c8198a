/**
 * Three broker processes with TLS on (--tls-cert/--tls-key/--tls-ca,
 * --tls-client-auth optional): the SDKs produce and consume over https with
 * the CA and a forwarded produce crosses brokers over https; a plaintext
 * client and a client that does not trust the CA fail, the latter with a
 * TLS_ERROR saying what to change; a client certificate of another CA is
 * answered 401; a broker whose certificate comes from another CA cannot
 * join even with the cluster secret; SIGHUP swaps a broker's certificate
 * for new connections, and a bad file keeps the old one; a client holding
 * a TLS handshake open does not hold up a graceful stop.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import net from 'node:net'
import tls from 'node:tls'
import { Agent, request } from 'undici'
import { Consumer } from '../../consumer/index.ts'
import { Producer } from '../../producer/index.ts'
import { ClientErrorCode, RillClientError } from '../../client/index.ts'
import { createDevCa, type IssuedCert } from '../../src/cli/certs.ts'
import { runCli } from '../cli/helpers.ts'
import { call, freePort, hasExited, startCluster, stopProcess, waitFor, type TestCluster } from './helpers.ts'

const bin = new URL('../../bin/rill.mjs', import.meta.url).pathname
/** Longest wait for something the cluster does within a few ticks or one registration round, ms. */
const settleMs = 20_000

let cluster: TestCluster
let caPem: Buffer

before(async () => {
  // --shutdown-timeout 8s: below the API's 10 s TLS handshake bound (the last test).
  cluster = await startCluster({ tls: true, extraFlags: ['--tls-client-auth', 'optional', '--shutdown-timeout', '8s'] })
  caPem = readFileSync(cluster.tls!.ca.certFile)
  // Placement needs every broker registered and unfenced; their registration crosses brokers over https.
  await waitFor(async () => {
    const r = await api(urls()[0]!, 'GET', '/v1/metadata').catch(() => null)
    return r?.status === 200 && r.body.brokers.filter((b: { fenced?: boolean }) => b.fenced !== true).length === 3
  }, settleMs, 'three brokers registered over https')
  await waitFor(async () => {
    const r = await api(urls()[1]!, 'POST', '/v1/topics', { name: 'secure', partitions: 3, replicationFactor: 3 })
    // 503: an election under way, retriable as for any client.
    if (r.status !== 201 && r.status !== 503) throw new Error(`create: ${r.status} ${JSON.stringify(r.body)}`)
    return r.status === 201
  }, settleMs, 'topic created')
  await waitFor(async () => {
    const r = await api(urls()[0]!, 'GET', '/v1/metadata')
    const t = r.body.topics.find((x: { name: string }) => x.name === 'secure')
    return t !== undefined && t.partitions.every((p: { leader: number | null }) => p.leader !== null)
  }, settleMs, 'leaders of the topic')
})

after(async () => {
  await cluster?.stopAll()
})

const urls = (): string[] => cluster.brokers.map((b) => b.url)
const api = (url: string, method: string, path: string, body?: unknown) => call(url, method, path, body, 20_000, cluster.tls!.dispatcher)

/** The certificate a new TLS connection to `host:port` is served (shown a client certificate of the cluster CA, as the peer port demands). */
async function servedCertificate(host: string, port: number): Promise<tls.PeerCertificate> {
  const client = cluster.tls!.certs.get(1)!
  const socket = tls.connect({ host, port, ca: caPem, cert: readFileSync(client.certFile), key: readFileSync(client.keyFile) })
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve)
      socket.once('error', reject)
    })
    return socket.getPeerCertificate()
  } finally {
    socket.destroy()
  }
}

function hostPort(address: string): { host: string; port: number } {
  const u = new URL(address.includes('://') ? address : `tcp://${address}`)
  return { host: u.hostname, port: Number(u.port) }
}

test('SDKs over https with the CA: produce, consume, and a produce forwarded between brokers', async () => {
  const meta = await api(urls()[1]!, 'GET', '/v1/metadata')
  assert.ok(meta.body.brokers.length === 3 && meta.body.brokers.every((b: { url: string }) => b.url.startsWith('https://127.0.0.1:')), JSON.stringify(meta.body.brokers))

  const producer = new Producer({ brokers: urls(), tls: { ca: caPem }, deliveryTimeoutMs: 30_000 })
  try {
    const sent = await Promise.all(Array.from({ length: 30 }, (_, i) => producer.send('secure', { key: `k${i % 5}`, value: `v${i}` })))
    assert.equal(sent.length, 30)
  } finally {
    await producer.close()
  }
  // The topic route splits by partition and forwards what another broker leads (over https, with the CA).
  const forwarded = await api(urls()[2]!, 'POST', '/v1/topics/secure/records', { records: Array.from({ length: 12 }, (_, i) => ({ value: `f${i}` })) })
  assert.equal(forwarded.status, 200, JSON.stringify(forwarded.body))
  assert.equal(forwarded.body.offsets.length, 3, 'every partition written, most of them forwarded')

  const consumer = new Consumer({ brokers: urls()[0]!, tls: { ca: caPem }, fromBeginning: true })
  try {
    await consumer.subscribe('secure')
    const values = new Set<string>()
    const stop = AbortSignal.timeout(settleMs)
    for await (const batch of consumer.batches({ signal: stop })) {
      for (const r of batch.records) values.add(Buffer.from(r.value).toString())
      if (values.size === 42) break
    }
    assert.equal(values.size, 42)
    assert.ok(values.has('v0') && values.has('v29') && values.has('f11'))
  } finally {
    await consumer.close()
  }
})

test('the CLI with --tls-ca works; without it, it fails with TLS_ERROR naming the flag', async () => {
  const ok = await runCli(['topic', 'list', '--url', urls()[0]!, '--tls-ca', cluster.tls!.ca.certFile])
  assert.equal(ok.code, 0, ok.stderr)
  assert.match(ok.stdout, /^secure$/m)
  const bad = await runCli(['topic', 'list', '--url', urls()[0]!])
  assert.equal(bad.code, 1)
  assert.match(bad.stderr, /TLS_ERROR: https:\/\/127\.0\.0\.1:\d+: the broker's certificate is not trusted: .*--tls-ca FILE or RILL_TLS_CA/)
})

test('a plaintext client is refused; an SDK client that does not trust the CA fails at once with TLS_ERROR', async () => {
  const plain = urls()[0]!.replace('https://', 'http://')
  await assert.rejects(fetch(`${plain}/health`, { signal: AbortSignal.timeout(5_000) }))
  const producer = new Producer({ brokers: urls(), deliveryTimeoutMs: 20_000 })
  try {
    const error = await producer.send('secure', { value: 'x' }).then(() => assert.fail('sent without trusting the CA'), (e: unknown) => e)
    assert.ok(error instanceof RillClientError, String(error))
    assert.equal(error.code, ClientErrorCode.TLS_ERROR, error.message)
    assert.equal(error.retriable, false)
    assert.match(error.message, /the broker's certificate is not trusted: give the cluster's CA certificate/)
  } finally {
    await producer.close()
  }
})

test('--tls-client-auth optional: no client certificate or one of the CA is served; one of another CA is answered 401 saying why', async () => {
  const other = await createDevCa({ dir: join(cluster.root, 'other-client'), name: 'other-ca' })
  const foreign = await other.issue({ name: 'client', hosts: [] })
  const own = await cluster.tls!.ca.issue({ name: 'client', hosts: [] })
  const withCert = (cert: IssuedCert): Agent => new Agent({ connect: { ca: caPem, cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) } })
  const foreignAgent = withCert(foreign)
  const ownAgent = withCert(own)
  try {
    assert.equal((await call(urls()[0]!, 'GET', '/v1/topics', undefined, 5_000, cluster.tls!.dispatcher)).status, 200)
    assert.equal((await call(urls()[0]!, 'GET', '/v1/topics', undefined, 5_000, ownAgent)).status, 200)
    const refused = await call(urls()[0]!, 'GET', '/v1/topics', undefined, 5_000, foreignAgent)
    assert.equal(refused.status, 401)
    assert.equal(refused.body.error.code, 'UNAUTHORIZED')
    assert.match(refused.body.error.message, /client certificate is not accepted .*show one signed by the cluster CA, or none/)
    // Internal routes need a certificate of the CA whatever the mode (then the cluster MAC).
    const internal = await call(urls()[0]!, 'GET', '/internal/v1/leaderships', undefined, 5_000, cluster.tls!.dispatcher)
    assert.equal(internal.status, 401)
    assert.match(internal.body.error.message, /internal route: needs a client certificate of the cluster CA/)
    const internalWithCert = await call(urls()[0]!, 'GET', '/internal/v1/leaderships', undefined, 5_000, ownAgent)
    assert.equal(internalWithCert.status, 401)
    assert.match(internalWithCert.body.error.message, /MAC/)
  } finally {
    await foreignAgent.destroy()
    await ownAgent.destroy()
  }
})

test('a broker with a certificate of another CA cannot join, though it knows the secret and trusts the cluster CA', async () => {
  const other = await createDevCa({ dir: join(cluster.root, 'other-broker'), name: 'other-ca' })
  const peerHost = '127.0.0.14'
  const cert = await other.issue({ name: 'broker-4', hosts: ['127.0.0.1', peerHost] })
  const bundle = join(cluster.root, 'both-cas.crt')
  writeFileSync(bundle, Buffer.concat([caPem, readFileSync(other.certFile)]))
  const httpPort = await freePort('127.0.0.1')
  const peerPort = await freePort(peerHost)
  const b1 = cluster.brokers[0]!
  const args = [bin, 'broker', '--id', '4', '--dir', join(cluster.root, 'broker-4'), '--http', `127.0.0.1:${httpPort}`, '--peer', `${peerHost}:${peerPort}`,
    '--seeds', cluster.seeds, '--join', b1.url, '--tick-ms', '20', '--election-ticks', '15', '--log-level', 'warn',
    '--tls-cert', cert.certFile, '--tls-key', cert.keyFile, '--tls-ca', bundle]
  const output: string[] = []
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  child.stdout!.on('data', (d: Buffer) => output.push(d.toString()))
  child.stderr!.on('data', (d: Buffer) => output.push(d.toString()))
  try {
    // Its registration reaches broker 1 and is refused there: twice, so a retry did not get through either.
    const refusals = async (): Promise<number> => {
      const m = /rill_http_requests_total\{[^}]*route="\/internal\/v1\/brokers"[^}]*status="401"[^}]*\} (\d+)/.exec(await fetchMetrics(b1.url))
      return m === null ? 0 : Number(m[1])
    }
    await waitFor(async () => {
      if (hasExited(child)) throw new Error(`broker 4 exited: ${output.join('')}`)
      return (await refusals()) >= 2
    }, settleMs, 'broker 4 refused twice at registration', () => output.join(''))
    const meta = await api(b1.url, 'GET', '/v1/metadata')
    assert.deepEqual(meta.body.brokers.map((b: { id: number }) => b.id).sort(), [1, 2, 3])
    // Its certificate is refused by the peer transport too.
    const { host, port } = hostPort(b1.peer)
    const before = await peerTlsRefusals(b1.url)
    const socket = tls.connect({ host, port, ca: caPem, cert: readFileSync(cert.certFile), key: readFileSync(cert.keyFile) })
    socket.on('error', () => {})
    await waitFor(async () => (await peerTlsRefusals(b1.url)) > before, settleMs, 'the peer port refusing the foreign certificate')
    socket.destroy()
  } finally {
    await stopProcess(child, { what: 'broker 4' })
  }
})

async function fetchMetrics(url: string): Promise<string> {
  const r = await request(`${url}/metrics`, { dispatcher: cluster.tls!.dispatcher, headersTimeout: 5_000, bodyTimeout: 5_000 })
  return r.body.text()
}

async function peerTlsRefusals(url: string): Promise<number> {
  const m = /rill_transport_connections_rejected_total\{[^}]*reason="tls"[^}]*\} (\d+)/.exec(await fetchMetrics(url))
  return m === null ? 0 : Number(m[1])
}

test('SIGHUP: a new certificate is served to new connections (HTTP and peer), the cluster carries on; a bad file keeps the old one', async () => {
  const b2 = cluster.brokers[1]!
  const http = hostPort(b2.url)
  const peer = hostPort(b2.peer)
  const first = cluster.tls!.certs.get(2)!
  assert.equal((await servedCertificate(http.host, http.port)).fingerprint256, first.fingerprint256)
  const second = await cluster.tls!.ca.issue({ name: 'broker-2', hosts: ['127.0.0.1', peer.host] })
  assert.equal(second.certFile, first.certFile, 'the same files, new contents')
  assert.notEqual(second.serial, first.serial)
  b2.child!.kill('SIGHUP')
  await waitFor(async () => (await servedCertificate(http.host, http.port)).serialNumber === second.serial, settleMs, 'the HTTP API serving the new certificate')
  assert.equal((await servedCertificate(peer.host, peer.port)).fingerprint256, second.fingerprint256, 'the peer port too')
  // Still one cluster: a write through broker 2 is forwarded and replicated over the new contexts.
  const written = await api(b2.url, 'POST', '/v1/topics/secure/records', { records: [{ value: 'after-reload-1' }, { value: 'after-reload-2' }, { value: 'after-reload-3' }] })
  assert.equal(written.status, 200, JSON.stringify(written.body))

  const good = readFileSync(second.certFile)
  writeFileSync(second.certFile, 'not a certificate\n')
  try {
    b2.child!.kill('SIGHUP')
    await waitFor(() => b2.output.join('').includes('"event":"tls_reload_failed"'), settleMs, 'the failed reload logged', () => b2.output.join(''))
    assert.match(b2.output.join(''), /TLS reload failed, keeping certificate serial [0-9A-F]+: tls-cert: .*broker-2\.crt holds no PEM certificate/)
    assert.equal((await servedCertificate(http.host, http.port)).serialNumber, second.serial, 'the old context kept')
    assert.equal(hasExited(b2.child!), false)
  } finally {
    writeFileSync(second.certFile, good)
  }
})

test('a graceful stop does not wait for a TLS handshake a client holds open (the HTTPS server would, up to 10 s)', async () => {
  const b3 = cluster.brokers[2]!
  const { host, port } = hostPort(b3.url)
  const silent = net.connect({ host, port })
  silent.on('error', () => {})
  try {
    await new Promise<void>((resolve, reject) => {
      silent.once('connect', resolve)
      silent.once('error', reject)
    })
    const exit = await stopProcess(b3.child!, { what: 'broker 3' })
    b3.child = null
    assert.deepEqual(exit, { code: 0, signal: null, killed: false }, b3.output.join('').slice(-2000))
    assert.doesNotMatch(b3.output.join(''), /shutdown_timeout/)
  } finally {
    silent.destroy()
  }
})
