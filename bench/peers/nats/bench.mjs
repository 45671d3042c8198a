// Copied from ../shared/peers/nats/bench.mjs (written by this project for the peer comparison of issue 11);
// changed for bench/peers: ports and the npm clients' directory ($RILL_PEERS_DEPS, bench/peers/setup.sh).
// JetStream produce/consume benchmark with the `nats` npm client (nats.js v2).
//
// node bench.mjs --servers n1=127.0.0.1:14322,n2=127.0.0.1:14323,n3=127.0.0.1:14324
//                [--replicas 3] [--size 100] [--count 200000] [--window 1000]
//                [--lat-count 3000] [--connect leader|first] [--pids 1,2,3] [--label x]
//                [--max-seconds 300] [--consume-batch 1000] [--mode js|raw]
//
// One run =
//   1. (re)create file-backed stream BENCH (subjects bench.>) with num_replicas=R, wait until all
//      replicas are current;
//   2. connect to the stream leader (default) and publish COUNT messages of SIZE bytes with async
//      publish, at most WINDOW un-acked publishes in flight, waiting for every PubAck
//      (--mode js: js.publish(); --mode raw: nc.publish() + reply inbox, see below);
//      -> msgs/s, MB/s, PubAck latency p50/p99 (time from publish() call to its PubAck);
//   3. consume all COUNT messages with a durable pull consumer (AckPolicy.None, consume() with
//      max_messages=CONSUME_BATCH) -> msgs/s, MB/s;
//   4. LAT_COUNT sequential publishes (window = 1) -> unloaded PubAck latency p50/p99;
//   5. check stream message count, delete the stream.
// Prints one JSON line. Every loop is bounded by a count and by --max-seconds.
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { myCpuSec, pct, retry, serverCpuSec as serverCpuSecOf, sleep } from '../common.mjs';

const require = createRequire((process.env.RILL_PEERS_DEPS || '/tmp/rill-peers-deps') + '/package.json');
const { connect, createInbox, StorageType, AckPolicy, DeliverPolicy, RetentionPolicy, DiscardPolicy } = require('nats');
const dec = new TextDecoder();

const { values: a } = parseArgs({ options: {
  servers: { type: 'string', default: 'n1=127.0.0.1:14322,n2=127.0.0.1:14323,n3=127.0.0.1:14324' },
  replicas: { type: 'string', default: '3' },
  size: { type: 'string', default: '100' },
  count: { type: 'string', default: '200000' },
  window: { type: 'string', default: '1000' },
  'lat-count': { type: 'string', default: '3000' },
  'consume-batch': { type: 'string', default: '1000' },
  connect: { type: 'string', default: 'leader' },
  mode: { type: 'string', default: 'js' },
  pids: { type: 'string', default: '' },
  label: { type: 'string', default: '' },
  'max-seconds': { type: 'string', default: '300' },
} });
const R = Number(a.replicas), SIZE = Number(a.size), N = Number(a.count), W = Number(a.window);
const LATN = Number(a['lat-count']), CB = Number(a['consume-batch']), MODE = a.mode;
if (!['js', 'raw'].includes(MODE)) throw new Error('--mode js|raw');
const servers = Object.fromEntries(a.servers.split(',').map((s) => s.split('=')));
const names = Object.keys(servers);
const STREAM = 'BENCH', SUBJ = 'bench.data';
const hardDeadline = performance.now() + Number(a['max-seconds']) * 1000;
setTimeout(() => { console.error('bench.mjs: --max-seconds exceeded, exiting'); process.exit(2); },
  Number(a['max-seconds']) * 1000 + 5000).unref();

const pids = a.pids ? a.pids.split(',').map(Number) : [];
const serverCpuSec = () => serverCpuSecOf(pids);
const conn = (name) => connect({ servers: servers[name], noRandomize: true, ignoreClusterUpdates: true,
  maxReconnectAttempts: 0, name: `bench-${name}` });

// ---- 1. stream
const admin = await retry('connect', () => conn(names[0]));
const jsm = await retry('jetstreamManager', () => admin.jetstreamManager({ timeout: 10000 }));
try { await jsm.streams.delete(STREAM); } catch { /* not there */ }
await retry('add stream', () => jsm.streams.add({
  name: STREAM, subjects: ['bench.>'], storage: StorageType.File, num_replicas: R,
  retention: RetentionPolicy.Limits, discard: DiscardPolicy.Old, max_msgs: -1, max_bytes: -1,
}));
const info = await retry('stream ready', async () => {
  const si = await jsm.streams.info(STREAM);
  const ok = R === 1 || (si.cluster && si.cluster.leader &&
    (si.cluster.replicas || []).length === R - 1 && si.cluster.replicas.every((r) => r.current));
  if (!ok) throw new Error('stream not ready ' + JSON.stringify(si.cluster));
  return si;
});
const leader = info.cluster?.leader || names[0];
const target = a.connect === 'leader' && servers[leader] ? leader : names[0];
const nc = target === names[0] ? admin : await conn(target);
const js = nc.jetstream({ timeout: 10000 });
const payload = randomBytes(SIZE);

// ---- 2. windowed async publish
// --mode js : js.publish() (the client's JetStream publish API: one request + timer per message)
// --mode raw: nc.publish() with a per-message reply subject under one wildcard inbox subscription,
//             PubAck JSON parsed in the subscription callback (what Go's PublishAsync does)
const lat = new Float64Array(N);
const start = new Float64Array(N);
let inflight = 0, acked = 0, errors = 0, firstErr = null, wake = null, issued = 0;
const onDone = () => { inflight--; if (wake) { const w = wake; wake = null; w(); } };
const ticker = setInterval(() => { if (wake) { const w = wake; wake = null; w(); } }, 250);
const waitSlot = () => new Promise((r) => { wake = r; });
let rawSub = null, rawPrefix = '';
if (MODE === 'raw') {
  rawPrefix = createInbox() + '.';
  rawSub = nc.subscribe(rawPrefix + '*', { callback: (err, m) => {
    if (err) { errors++; firstErr ??= err.message; return; }
    const i = Number(m.subject.slice(rawPrefix.length));
    let ok = false;
    try { const pa = JSON.parse(dec.decode(m.data)); ok = pa && pa.seq > 0 && !pa.error; if (!ok) firstErr ??= JSON.stringify(pa); }
    catch (e) { firstErr ??= `bad ack: ${e.message} ${m.headers ? m.headers.code : ''}`; }
    if (ok) { lat[i] = performance.now() - start[i]; acked++; } else errors++;
    onDone();
  } });
  await nc.flush();
}
let cpuS0 = serverCpuSec(), cpuC0 = myCpuSec();
let t0 = performance.now();
for (let i = 0; i < N; i++) {
  while (inflight >= W && performance.now() < hardDeadline) await waitSlot();
  if (performance.now() > hardDeadline) break;
  inflight++; issued++;
  const s = performance.now();
  if (MODE === 'raw') {
    start[i] = s;
    nc.publish(SUBJ, payload, { reply: rawPrefix + i });
  } else {
    js.publish(SUBJ, payload).then(
      () => { lat[i] = performance.now() - s; acked++; onDone(); },
      (e) => { errors++; firstErr ??= e.message; onDone(); });
  }
}
while (inflight > 0 && performance.now() < hardDeadline) await waitSlot();
clearInterval(ticker);
if (rawSub) rawSub.unsubscribe();
const pubSec = (performance.now() - t0) / 1000;
const pubCpuServers = serverCpuSec() - cpuS0, pubCpuClient = myCpuSec() - cpuC0;
const okLat = lat.subarray(0, issued).filter((x) => x > 0);

// ---- 3. pull consume everything
await jsm.consumers.add(STREAM, { durable_name: 'bench', ack_policy: AckPolicy.None,
  deliver_policy: DeliverPolicy.All, filter_subject: SUBJ });
const consumer = await js.consumers.get(STREAM, 'bench');
cpuS0 = serverCpuSec(); cpuC0 = myCpuSec();
t0 = performance.now();
const msgs = await consumer.consume({ max_messages: CB });
const stopper = setTimeout(() => msgs.stop(), Math.max(1000, hardDeadline - performance.now()));
let consumed = 0, cbytes = 0;
for await (const m of msgs) {
  consumed++; cbytes += m.data.length;
  if (consumed >= acked) break;
}
clearTimeout(stopper);
const conSec = (performance.now() - t0) / 1000;
const conCpuServers = serverCpuSec() - cpuS0, conCpuClient = myCpuSec() - cpuC0;
try { msgs.stop(); } catch { /* already stopped */ }

// ---- 4. sequential publish latency (window 1)
const slat = [];
for (let i = 0; i < LATN && performance.now() < hardDeadline; i++) {
  const s = performance.now();
  await js.publish('bench.lat', payload);
  slat.push(performance.now() - s);
}

// ---- 5. verify + cleanup
const fin = await jsm.streams.info(STREAM);
await jsm.streams.delete(STREAM);
await nc.close(); if (nc !== admin) await admin.close();

const r3 = (x) => +x.toFixed(3);
console.log(JSON.stringify({
  test: 'nats-jetstream', label: a.label, mode: MODE, replicas: R, size: SIZE, count: N, window: W,
  connected_to: target, stream_leader: leader,
  pub_acked: acked, pub_errors: errors, pub_first_error: firstErr,
  pub_seconds: r3(pubSec), pub_msgs_per_s: Math.round(acked / pubSec), pub_MBps: +(acked * SIZE / pubSec / 1e6).toFixed(2),
  ack_ms_p50: r3(pct(okLat, 0.5)), ack_ms_p99: r3(pct(okLat, 0.99)), ack_ms_max: r3(pct(okLat, 1)),
  pub_cpu_servers_s: r3(pubCpuServers), pub_cpu_client_s: r3(pubCpuClient),
  consume_batch: CB, consumed, con_seconds: r3(conSec), con_msgs_per_s: Math.round(consumed / conSec),
  con_MBps: +(cbytes / conSec / 1e6).toFixed(2), con_cpu_servers_s: r3(conCpuServers), con_cpu_client_s: r3(conCpuClient),
  seq_count: slat.length, seq_ack_ms_p50: r3(pct(slat, 0.5)), seq_ack_ms_p99: r3(pct(slat, 0.99)),
  stream_msgs_at_end: fin.state.messages, expected_msgs: acked + slat.length,
}));
