// Copied from ../shared/peers/rabbitmq/bench.mjs (written by this project for the peer comparison of issue 11);
// changed for bench/peers: ports and the npm clients' directory ($RILL_PEERS_DEPS, bench/peers/setup.sh).
// RabbitMQ 3.10 produce/consume benchmark: streams (stream protocol, rabbitmq-stream-js-client) and
// quorum queues (AMQP 0-9-1, amqplib). Same output shape as ../nats/bench.mjs.
//
// node bench.mjs --mode stream|subentry|quorum
//                --amqp rabbit1=127.0.0.1:15801,... --streams rabbit1=127.0.0.1:15811,...
//                [--replicas 3] [--size 100] [--count 200000] [--window 10000] [--batch 100]
//                [--credits 10] [--prefetch 1000] [--ack-every 100] [--lat-count 3000]
//                [--pids 1,2,3] [--label x] [--max-seconds 300]
//
// One run =
//   1. (re)create the stream (initial-cluster-size R; leader = node of the first endpoint, "client-local")
//      and wait until metadata shows R-1 replicas, or (re)declare quorum queue (x-quorum-initial-group-size R);
//   2. publish COUNT messages of SIZE random bytes, at most WINDOW un-confirmed messages in flight,
//      counting only confirmed ones -> msgs/s, MB/s, confirm latency p50/p99 (publish call -> confirm):
//      --mode stream  : publisher.send() per message (the client packs up to 100 messages per publish frame;
//                       each message is its own log entry)
//      --mode subentry: publisher.sendSubEntries() with BATCH messages per sub-entry (one log entry per
//                       batch, uncompressed; the Kafka-record-batch analogue); one confirm per batch
//      --mode quorum  : confirm channel, ch.publish(persistent) with a callback per message
//   3. consume all confirmed messages:
//      stream         : from offset first, on a connection to a *replica* (the client picks one at random
//                       from the stream metadata), credit policy creditsOnChunkReceived(CREDITS, 1);
//      subentry       : skipped (client 1.0.0 decodes only the first sub-entry batch of each chunk);
//      quorum         : basic.consume on the leader's node, prefetch PREFETCH, manual acks with
//                       multiple=true every ACK_EVERY messages;
//   4. LAT_COUNT sequential publishes (window 1) -> unloaded confirm latency p50/p99;
//   5. verify (stream: consumed == last offset + 1 == confirmed; subentry: depth reported by AMQP
//      queue.declare(passive) == confirmed; quorum: consumed == depth before consuming == confirmed),
//      delete the stream/queue. A consume that makes no progress for 30 s is abandoned (con_error).
// Prints one JSON line. Every loop is bounded by a count and by --max-seconds.
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { myCpuSec, pct, retry, serverCpuSec as serverCpuSecOf, sleep } from '../common.mjs';

const require = createRequire((process.env.RILL_PEERS_DEPS || '/tmp/rill-peers-deps') + '/package.json');

const { values: a } = parseArgs({ options: {
  mode: { type: 'string', default: 'stream' },
  amqp: { type: 'string', default: 'rabbit1=127.0.0.1:15801,rabbit2=127.0.0.1:15802,rabbit3=127.0.0.1:15803' },
  streams: { type: 'string', default: 'rabbit1=127.0.0.1:15811,rabbit2=127.0.0.1:15812,rabbit3=127.0.0.1:15813' },
  replicas: { type: 'string', default: '3' },
  size: { type: 'string', default: '100' },
  count: { type: 'string', default: '200000' },
  window: { type: 'string', default: '' },
  batch: { type: 'string', default: '100' },
  credits: { type: 'string', default: '10' },
  prefetch: { type: 'string', default: '1000' },
  'ack-every': { type: 'string', default: '100' },
  'lat-count': { type: 'string', default: '3000' },
  pids: { type: 'string', default: '' },
  label: { type: 'string', default: '' },
  'max-seconds': { type: 'string', default: '300' },
  user: { type: 'string', default: 'guest' },
  password: { type: 'string', default: 'guest' },
} });
const MODE = a.mode;
if (!['stream', 'subentry', 'quorum'].includes(MODE)) throw new Error('--mode stream|subentry|quorum');
const R = Number(a.replicas), SIZE = Number(a.size), N = Number(a.count);
const W = Number(a.window || (MODE === 'quorum' ? 1000 : 10000));
const B = MODE === 'subentry' ? Number(a.batch) : 1;
const CREDITS = Number(a.credits), PREFETCH = Number(a.prefetch), ACK_EVERY = Number(a['ack-every']);
const LATN = Number(a['lat-count']);
if (MODE === 'quorum' && ACK_EVERY > PREFETCH / 2) throw new Error('--ack-every must be <= prefetch/2');
if (MODE === 'subentry' && W < B) throw new Error('--window must be >= --batch');
const parseEndpoints = (s) => s.split(',').map((x) => { const [name, hp] = x.split('='); const [host, port] = hp.split(':'); return { name, host, port: Number(port) }; });
const amqpEps = parseEndpoints(a.amqp), streamEps = parseEndpoints(a.streams);
const nodeOf = (eps, host, port) => (eps.find((e) => e.port === Number(port) && (e.host === host || host === 'localhost')) || {}).name || `${host}:${port}`;
const NAME = `bench-${MODE}-${process.pid}`;
const hardDeadline = performance.now() + Number(a['max-seconds']) * 1000;
setTimeout(() => { console.error('bench.mjs: --max-seconds exceeded, exiting'); process.exit(2); },
  Number(a['max-seconds']) * 1000 + 5000).unref();

const pids = a.pids ? a.pids.split(',').map(Number) : [];
const serverCpuSec = () => serverCpuSecOf(pids);
const payload = randomBytes(SIZE);
// wait until done() or no progress (progress() unchanged) for STALL_S seconds, or the hard deadline
const STALL_S = 30;
async function waitProgress(done, progress) {
  let last = progress(), lastT = performance.now();
  while (!done() && performance.now() < hardDeadline) {
    await sleep(20);
    const p = progress();
    if (p !== last) { last = p; lastT = performance.now(); } else if (performance.now() - lastT > STALL_S * 1000) return false;
  }
  return done();
}

// ---- shared windowed-publish bookkeeping (units = publish calls: messages, or batches in subentry mode)
let wake = null;
const kick = () => { if (wake) { const w = wake; wake = null; w(); } };
const waitSlot = () => new Promise((r) => { wake = r; });
const ticker = setInterval(kick, 250);

const res = { test: MODE === 'quorum' ? 'rabbitmq-quorum' : 'rabbitmq-stream', peer: 'rabbitmq', label: a.label,
  mode: MODE, replicas: R, size: SIZE, count: N, window: W };

let depthConn = null; // AMQP connection for amqpDepth()
if (MODE === 'quorum') await runQuorum(); else await runStream();
clearInterval(ticker);
console.log(JSON.stringify(res));
process.exit(0);

// ============================================================================ streams
async function runStream() {
  const rs = require('rabbitmq-stream-js-client');
  const { creditsOnChunkReceived } = require('rabbitmq-stream-js-client/dist/consumer_credit_policy');
  // Compatibility shim: every published version of rabbitmq-stream-js-client (0.4.2 ... 1.0.0) sends
  // ExchangeCommandVersions (key 27) right after open; that command exists only from RabbitMQ 3.11, so
  // 3.10 answers "unknown command", sends Close, and the client crashes ("Unknown response 22").
  // Skip it for servers < 3.11 (the client uses the answer only for logging/feature checks).
  const { Connection } = require('rabbitmq-stream-js-client/dist/connection');
  const origXcv = Connection.prototype.exchangeCommandVersions;
  Connection.prototype.exchangeCommandVersions = async function () {
    const [maj, min] = String(this.peerProperties?.version ?? '').split('.').map(Number);
    if (maj < 3 || (maj === 3 && min < 11)) { res.client_shim = 'skip ExchangeCommandVersions (server < 3.11)'; return true; }
    return origXcv.call(this);
  };
  const ep = streamEps[0];
  const client = await retry('stream connect', () => rs.connect({ hostname: ep.host, port: ep.port,
    username: a.user, password: a.password, vhost: '/', heartbeat: 0, connectionName: 'bench' }));
  res.version = client.rabbitManagementVersion ?? null;
  try { await client.deleteStream({ stream: NAME }); } catch { /* not there */ }
  await client.createStream({ stream: NAME, arguments: { 'initial-cluster-size': R, 'queue-leader-locator': 'client-local' } });
  const md = await retry('stream replicas up', async () => {
    const [m] = await client.queryMetadata({ streams: [NAME] });
    if (!m || !m.leader || (m.replicas || []).length < R - 1) throw new Error('stream not ready ' + JSON.stringify(m));
    return m;
  });
  res.stream_leader = nodeOf(streamEps, md.leader.host, md.leader.port);
  res.stream_replicas = (md.replicas || []).map((x) => nodeOf(streamEps, x.host, x.port));

  const publisher = await client.declarePublisher({ stream: NAME });
  const pi = publisher.getConnectionInfo();
  res.connected_to = nodeOf(streamEps, pi.host, pi.port);
  res.batch = B;

  // ---- 2. windowed publish. confirms arrive as arrays of publishingIds (1-based, one per send / sub-entry)
  const NU = Math.ceil(N / B);                // publish units
  const start = new Float64Array(NU + LATN + 2), lat = new Float64Array(NU);
  let unitsDone = 0, msgsAcked = 0, errors = 0, firstErr = null, phase = 'pub', seqDone = 0;
  const unitSize = (u) => (u < NU - 1 ? B : N - B * (NU - 1));
  publisher.on('publish_confirm', (err, ids) => {
    for (const id of ids) {
      const u = Number(id) - 1;
      if (phase === 'pub') {
        if (err) { errors += unitSize(u); firstErr ??= `publish error code ${err}`; }
        else { msgsAcked += unitSize(u); lat[u] = performance.now() - start[u]; }
        unitsDone++;
      } else {
        if (err) { errors++; firstErr ??= `seq publish error code ${err}`; }
        else start[u] = performance.now() - start[u]; // reuse as latency
        seqDone++;
      }
    }
    kick();
  });
  const units = [];
  if (MODE === 'subentry') for (let i = 0; i < B; i++) units.push({ content: payload });
  let cpuS0 = serverCpuSec(), cpuC0 = myCpuSec();
  let t0 = performance.now(), issued = 0;
  for (let u = 0; u < NU; u++) {
    while ((issued - unitsDone) * B >= W && performance.now() < hardDeadline) await waitSlot();
    if (performance.now() > hardDeadline) break;
    start[u] = performance.now(); issued++;
    try {
      if (MODE === 'stream') {
        await publisher.send(payload);        // publishingId u+1 (queued; written in frames of up to 100)
      } else {
        // the client (1.0.0) sends sub-entries with the publisher's current publishingId without
        // advancing it; set it so every batch gets its own id (and its own confirm latency)
        publisher.publishingId = BigInt(u + 1);
        await publisher.sendSubEntries(u < NU - 1 ? units : units.slice(0, unitSize(u)));
      }
    } catch (e) { errors += unitSize(u); unitsDone++; firstErr ??= e.message; }
  }
  await publisher.flush();
  while (unitsDone < issued && performance.now() < hardDeadline) await waitSlot();
  const pubSec = (performance.now() - t0) / 1000;
  res.pub_cpu_servers_s = +(serverCpuSec() - cpuS0).toFixed(3);
  res.pub_cpu_client_s = +(myCpuSec() - cpuC0).toFixed(3);
  const okLat = lat.subarray(0, issued).filter((x) => x > 0);
  Object.assign(res, pubFields(msgsAcked, errors, firstErr, pubSec, okLat));

  // subentry: stream depth as reported by AMQP 0-9-1 queue.declare(passive) on the leader's node; the
  // broker updates that figure asynchronously (seconds), so poll until it reaches the confirmed count
  if (MODE === 'subentry') {
    const lep = amqpEps.find((e) => e.name === res.stream_leader) || amqpEps[0];
    const end = performance.now() + 20000;
    do { res.amqp_declare_count = await amqpDepth(lep); }
    while (res.amqp_declare_count !== msgsAcked && performance.now() < end && await sleep(500) === undefined);
  }

  // ---- 3. consume from offset first (on a replica when there is one)
  // Not for --mode subentry: rabbitmq-stream-js-client 1.0.0 decodes only the first sub-entry batch of
  // each delivered chunk (decodeDeliverResponse), so a consumer misses messages and then stalls.
  let consumed = 0, cbytes = 0, lastOffset = -1n;
  if (MODE === 'stream' && msgsAcked > 0) {
    cpuS0 = serverCpuSec(); cpuC0 = myCpuSec();
    t0 = performance.now();
    const consumer = await client.declareConsumer({ stream: NAME, offset: rs.Offset.first(),
      creditPolicy: creditsOnChunkReceived(CREDITS, 1) }, (m) => {
      consumed++; cbytes += m.content.length;
      if (m.offset !== undefined && m.offset > lastOffset) lastOffset = m.offset;
    });
    const ci = consumer.getConnectionInfo();
    res.consumer_node = nodeOf(streamEps, ci.host, ci.port);
    if (!await waitProgress(() => consumed >= msgsAcked, () => consumed)) res.con_error = `consume stalled at ${consumed}`;
    const conSec = (performance.now() - t0) / 1000;
    res.con_cpu_servers_s = +(serverCpuSec() - cpuS0).toFixed(3);
    res.con_cpu_client_s = +(myCpuSec() - cpuC0).toFixed(3);
    Object.assign(res, { consume_credits: CREDITS, consumed, con_seconds: +conSec.toFixed(3),
      con_msgs_per_s: Math.round(consumed / conSec), con_MBps: +(cbytes / conSec / 1e6).toFixed(2) });
    try { await consumer.close(); } catch { /* ignore */ }
  } else {
    res.consume_skipped = 'rabbitmq-stream-js-client 1.0.0 decodes only the first sub-entry of a chunk';
  }

  // ---- 4. sequential publishes (window 1), each as a single message
  phase = 'seq';
  publisher.publishingId = BigInt(NU);         // next send() uses NU+1
  const slat = [];
  for (let i = 0; i < LATN && performance.now() < hardDeadline; i++) {
    const u = NU + i; const before = seqDone;
    start[u] = performance.now();
    await publisher.send(payload);
    await publisher.flush();
    while (seqDone === before && performance.now() < hardDeadline) await waitSlot();
    slat.push(start[u]);
  }
  Object.assign(res, seqFields(slat));

  // ---- 5. verify + cleanup
  res.expected_msgs = msgsAcked;
  if (MODE === 'stream') {
    res.msgs_at_end = Number(lastOffset) + 1;   // highest offset seen by the consumer + 1 (offsets start at 0)
    res.verify_ok = consumed === msgsAcked && res.msgs_at_end === msgsAcked && errors === 0;
  } else {
    res.msgs_at_end = res.amqp_declare_count;
    res.verify_ok = res.amqp_declare_count === msgsAcked && errors === 0;
  }
  try { await publisher.close(); } catch { /* ignore */ }
  try { await depthConn?.close(); } catch { /* ignore */ }
  await client.deleteStream({ stream: NAME });
  await client.close();
}

// ============================================================================ quorum queues
async function runQuorum() {
  const amqp = require('amqplib');
  const ep = amqpEps[0];
  const conn = await retry('amqp connect', () => amqp.connect({ protocol: 'amqp', hostname: ep.host, port: ep.port,
    username: a.user, password: a.password, vhost: '/', heartbeat: 0 }));
  res.version = conn.connection?.serverProperties?.version ?? null;
  res.connected_to = ep.name;
  const admin = await conn.createChannel();
  await admin.deleteQueue(NAME);
  const ch = await conn.createConfirmChannel();
  await ch.assertQueue(NAME, { durable: true,
    arguments: { 'x-queue-type': 'quorum', 'x-quorum-initial-group-size': R, 'x-queue-leader-locator': 'client-local' } });
  res.queue_leader = ep.name; // client-local: the node we are connected to

  // ---- 2. windowed publish with per-message confirm callbacks
  const lat = new Float64Array(N);
  let inflight = 0, acked = 0, errors = 0, firstErr = null, issued = 0;
  const onDone = () => { inflight--; kick(); };
  let drained = true;
  ch.on('drain', () => { drained = true; kick(); });
  let cpuS0 = serverCpuSec(), cpuC0 = myCpuSec();
  let t0 = performance.now();
  for (let i = 0; i < N; i++) {
    while ((inflight >= W || !drained) && performance.now() < hardDeadline) await waitSlot();
    if (performance.now() > hardDeadline) break;
    inflight++; issued++;
    const s = performance.now();
    const ok = ch.publish('', NAME, payload, { persistent: true }, (err) => {
      if (err) { errors++; firstErr ??= String(err.message || err); } else { lat[i] = performance.now() - s; acked++; }
      onDone();
    });
    if (!ok) drained = false;
  }
  while (inflight > 0 && performance.now() < hardDeadline) await waitSlot();
  const pubSec = (performance.now() - t0) / 1000;
  res.pub_cpu_servers_s = +(serverCpuSec() - cpuS0).toFixed(3);
  res.pub_cpu_client_s = +(myCpuSec() - cpuC0).toFixed(3);
  const okLat = lat.subarray(0, issued).filter((x) => x > 0);
  Object.assign(res, pubFields(acked, errors, firstErr, pubSec, okLat));
  const depth = (await ch.checkQueue(NAME)).messageCount;

  // ---- 3. consume with prefetch + multiple acks
  const cch = await conn.createChannel();
  await cch.prefetch(PREFETCH, false);
  let consumed = 0, cbytes = 0, sinceAck = 0;
  cpuS0 = serverCpuSec(); cpuC0 = myCpuSec();
  t0 = performance.now();
  const { consumerTag } = await cch.consume(NAME, (m) => {
    if (!m) return; // cancelled by server
    consumed++; cbytes += m.content.length; sinceAck++;
    if (sinceAck >= ACK_EVERY || consumed >= acked) { cch.ack(m, true); sinceAck = 0; }
  }, { noAck: false });
  if (acked > 0 && !await waitProgress(() => consumed >= acked, () => consumed)) res.con_error = `consume stalled at ${consumed}`;
  const conSec = (performance.now() - t0) / 1000;
  res.con_cpu_servers_s = +(serverCpuSec() - cpuS0).toFixed(3);
  res.con_cpu_client_s = +(myCpuSec() - cpuC0).toFixed(3);
  Object.assign(res, { consume_prefetch: PREFETCH, ack_every: ACK_EVERY, consumed, con_seconds: +conSec.toFixed(3),
    con_msgs_per_s: Math.round(consumed / conSec), con_MBps: +(cbytes / conSec / 1e6).toFixed(2) });
  await cch.cancel(consumerTag);
  await cch.close();

  // ---- 4. sequential publishes (window 1)
  const slat = [];
  for (let i = 0; i < LATN && performance.now() < hardDeadline; i++) {
    const s = performance.now();
    await new Promise((resolve, reject) => ch.publish('', NAME, payload, { persistent: true },
      (err) => (err ? reject(err) : resolve())));
    slat.push(performance.now() - s);
  }
  Object.assign(res, seqFields(slat));

  // ---- 5. verify + cleanup
  res.msgs_at_end = depth;          // queue depth after publishing, before consuming
  res.expected_msgs = acked;
  res.verify_ok = consumed === acked && depth === acked && errors === 0;
  await admin.deleteQueue(NAME);
  await ch.close(); await admin.close(); await conn.close();
}

async function amqpDepth(ep) {
  const amqp = require('amqplib');
  try {
    depthConn ??= await amqp.connect({ protocol: 'amqp', hostname: ep.host, port: ep.port, username: a.user,
      password: a.password, vhost: '/', heartbeat: 0 });
    const ch = await depthConn.createChannel();
    const n = (await ch.checkQueue(NAME)).messageCount;
    await ch.close();
    return n;
  } catch (e) { depthConn = null; return `error: ${e.message}`; }
}
function pubFields(acked, errors, firstErr, pubSec, okLat) {
  const r3 = (x) => (x == null ? null : +x.toFixed(3));
  return { pub_acked: acked, pub_errors: errors, pub_first_error: firstErr, pub_seconds: r3(pubSec),
    pub_msgs_per_s: Math.round(acked / pubSec), pub_MBps: +(acked * SIZE / pubSec / 1e6).toFixed(2),
    ack_ms_p50: r3(pct(okLat, 0.5)), ack_ms_p99: r3(pct(okLat, 0.99)), ack_ms_max: r3(pct(okLat, 1)) };
}
function seqFields(slat) {
  const r3 = (x) => (x == null ? null : +x.toFixed(3));
  return { seq_count: slat.length, seq_ack_ms_p50: r3(pct(slat, 0.5)), seq_ack_ms_p99: r3(pct(slat, 0.99)) };
}
