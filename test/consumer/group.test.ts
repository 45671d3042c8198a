/**
 * Consumer groups through the SDK on three real brokers. Members run as
 * their own processes (test/consumer/member.ts) so one can be killed -9.
 * While records keep arriving, a group of three forms, one member leaves,
 * one is stopped past its session and comes back as a zombie (refused,
 * rejoins), then is killed -9; then:
 *   - in every generation no partition was assigned to two members;
 *   - at the end one live member owns every partition;
 *   - every record below the group's committed offsets was processed by
 *     some member (at least once: nothing committed was skipped).
 * Then consumers and all brokers restart, and a consumer resumes exactly at
 * the committed offsets.
 */
import { after, before, test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Consumer, type AssignmentEvent } from '../../consumer/index.ts'
import { call, createTopic, produce, startCluster, waitFor, type TestCluster } from './helpers.ts'
import { stopProcess } from '../broker/helpers.ts'

const topic = 'work'
const partitions = 6
const groupId = 'workers'
const memberScript = fileURLToPath(new URL('./member.ts', import.meta.url))
/** SIGTERM → SIGKILL for a member, ms: longer than its own close bound (member.ts), so a slow close shows as its exit 1. */
const memberStopMs = 20_000

let c: TestCluster

before(async () => {
  c = await startCluster()
  await createTopic(c, topic, partitions)
})

after(async () => {
  await c.stopAll()
})

interface Member {
  readonly name: string
  readonly child: ChildProcess
  readonly events: { type: string; [k: string]: unknown }[]
  exited: Promise<number | null>
}

function startMember(name: string): Member {
  const args = { brokers: c.brokers.map((b) => b.url), groupId, topic, handlerMs: 15, sessionTimeoutMs: 3000, maxBytes: 300 }
  // The IPC channel makes the member exit if this test process dies.
  const child = spawn(process.execPath, ['--import', 'tsx', memberScript, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] })
  const events: Member['events'] = []
  let partial = ''
  child.stdout!.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n')
    partial = lines.pop()!
    for (const l of lines) if (l.trim() !== '') events.push(JSON.parse(l))
  })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  void exited.then((code) => {
    if (code !== 0 && code !== null) console.error(`member ${name} exited ${code}: ${stderr.slice(-2000)}`)
  })
  return { name, child, events, exited }
}

/** A group request through any broker, following 421 and retrying 503 (bounded). */
async function groupCall(method: string, path: string): Promise<any> {
  let url = c.brokers.find((b) => b.child !== null)!.url
  for (let i = 0; i < 100; i++) {
    const r = await call(url, method, path).catch(() => null)
    if (r?.status === 421 && r.body?.error?.leader?.url) url = r.body.error.leader.url
    else if (r !== null && r.status === 200) return r.body
    else await new Promise((resolve) => setTimeout(resolve, 100))
  }
  throw new Error(`${method} ${path}: no answer`)
}

/** The group has `n` members, each with its fair share and nothing being revoked. */
let lastGroup: unknown = null

async function balanced(n: number): Promise<boolean> {
  const g = await groupCall('GET', `/v1/groups/${groupId}`)
  lastGroup = g
  if (g.members.length !== n) return false
  const counts = g.members.map((m: any) => m.assignment.reduce((k: number, tp: any) => k + tp.partitions.length, 0))
  const revoking = g.members.some((m: any) => m.revoking.length > 0)
  return !revoking && counts.reduce((a: number, b: number) => a + b, 0) === partitions && counts.every((k: number) => k === Math.floor(partitions / n) || k === Math.ceil(partitions / n))
}

async function highWatermarks(): Promise<number[]> {
  const m = (await call(c.brokers.find((b) => b.child !== null)!.url, 'GET', '/v1/metadata')).body
  return m.topics.find((t: any) => t.name === topic)?.partitions.map((p: any) => p.highWatermark) ?? []
}

async function committed(): Promise<Map<number, number>> {
  const body = await groupCall('GET', `/v1/groups/${groupId}/offsets`)
  return new Map(body.offsets.filter((o: any) => o.topic === topic).map((o: any) => [o.partition, o.offset]))
}

/** Produces small batches round-robin until stopped (records keep arriving while members come and go). */
function keepProducing(): { stop: () => Promise<void> } {
  let stopped = false
  const loop = (async () => {
    for (let i = 0; !stopped && i < 10_000; i++) {
      await produce(c, topic, i % partitions, [`live-${i}-a`, `live-${i}-b`])
      await new Promise((resolve) => setTimeout(resolve, 30))
    }
  })()
  return {
    stop: async () => {
      stopped = true
      await loop
    },
  }
}

/** Processed offsets per partition, from every member's reports (the killed one's included). */
function processedOffsets(members: Member[]): Map<number, Set<number>> {
  const out = new Map<number, Set<number>>()
  for (const m of members) {
    for (const e of m.events) {
      if (e.type !== 'processed') continue
      const set = out.get(e.partition as number) ?? new Set<number>()
      for (let o = e.first as number; o <= (e.last as number); o++) set.add(o)
      out.set(e.partition as number, set)
    }
  }
  return out
}

/** No partition in two members' assignments of one generation. */
function assertExclusive(members: Member[]): void {
  const owner = new Map<string, string>()
  for (const m of members) {
    for (const e of m.events) {
      if (e.type !== 'assignment' || e.lost === true) continue
      for (const [t, p] of e.assignment as [string, number][]) {
        const key = `${e.generation}:${t}/${p}`
        const other = owner.get(key)
        assert.ok(other === undefined || other === m.name, `generation ${e.generation}: ${t}/${p} assigned to ${other} and ${m.name}`)
        owner.set(key, m.name)
      }
    }
  }
}

test('a group under join, leave and kill -9: exclusive per generation, nothing committed skipped', { timeout: 120_000 }, async () => {
  for (let p = 0; p < partitions; p++) for (let b = 0; b < 5; b++) await produce(c, topic, p, [`pre-${p}-${b}-a`, `pre-${p}-${b}-b`, `pre-${p}-${b}-c`])
  const producer = keepProducing()
  const a = startMember('a')
  const members = [a]
  try {
    await waitFor(() => a.events.some((e) => e.type === 'processed'), 30_000, 'a processes')
    const b = startMember('b')
    const k = startMember('k')
    members.push(b, k)
    const context = (): string => `group ${JSON.stringify(lastGroup)}\n${members.map((m) => `${m.name}: ${JSON.stringify(m.events.filter((e) => e.type !== 'processed').slice(-6))}`).join('\n')}`
    await waitFor(() => balanced(3), 30_000, 'three members, two partitions each', context)
    await waitFor(() => b.events.some((e) => e.type === 'processed') && k.events.some((e) => e.type === 'processed'), 30_000, 'b and k process')

    assert.equal((await stopProcess(b.child, { graceMs: memberStopMs, what: 'member b' })).code, 0)
    assert.ok(b.events.some((e) => e.type === 'closed'))
    await waitFor(() => balanced(2), 30_000, 'two members after b left', context)

    // A zombie: k is paused past its session, the coordinator expires it and gives a everything;
    // resumed, k's first heartbeat or commit is refused, it drops its partitions uncommitted and joins again.
    k.child.kill('SIGSTOP')
    await waitFor(() => balanced(1), 30_000, 'k expired while stopped', context)
    k.child.kill('SIGCONT')
    await waitFor(() => balanced(2), 30_000, 'k back as a new member', context)
    assert.ok(k.events.some((e) => e.type === 'assignment' && e.lost === true), 'k dropped its partitions as lost')

    await stopProcess(k.child, { signal: 'SIGKILL', what: 'member k' })
    // The coordinator expires k after its 3 s session; a gets everything.
    await waitFor(() => balanced(1), 30_000, 'one member after k was killed', context)
    await producer.stop()

    const hws = await highWatermarks()
    await waitFor(async () => {
      const done = await committed()
      return hws.every((hw, p) => (done.get(p) ?? 0) >= hw)
    }, 30_000, 'a committed everything')
    assert.equal((await stopProcess(a.child, { graceMs: memberStopMs, what: 'member a' })).code, 0)

    assertExclusive(members)
    const done = await committed()
    const processed = processedOffsets(members)
    for (let p = 0; p < partitions; p++) {
      assert.equal(done.get(p), hws[p], `partition ${p}: committed ${done.get(p)}, high watermark ${hws[p]}`)
      const missing = Array.from({ length: hws[p]! }, (_, o) => o).filter((o) => !processed.get(p)?.has(o))
      assert.deepEqual(missing, [], `partition ${p}: committed past records no member processed`)
    }
    const last = a.events.filter((e) => e.type === 'assignment').at(-1)!
    assert.equal((last.assignment as unknown[]).length, partitions)
  } finally {
    await producer.stop()
    await Promise.allSettled(members.map((m) => stopProcess(m.child, { signal: 'SIGKILL', what: `member ${m.name}` })))
  }
})

test('consumers and brokers restart: a consumer resumes at the committed offsets', { timeout: 120_000 }, async () => {
  const before = await committed()
  for (let p = 0; p < partitions; p++) await produce(c, topic, p, [`after-${p}`])
  // Every broker killed -9 and restarted: the offsets are in __consumer_offsets (sync).
  await Promise.all(c.brokers.map((b) => c.kill(b.id)))
  await Promise.all(c.brokers.map((b) => c.start(b.id)))
  await waitFor(async () => (await highWatermarks().catch(() => [])).length === partitions, 30_000, 'metadata back after the restart')
  const k = new Consumer({ brokers: c.brokers.map((b) => b.url), groupId, sessionTimeoutMs: 3000, maxWaitMs: 500 })
  const events: AssignmentEvent[] = []
  k.on('assignment', (e) => events.push(e))
  try {
    await k.subscribe(topic)
    const firsts = new Map<number, number>()
    for await (const batch of k) {
      if (!firsts.has(batch.partition)) firsts.set(batch.partition, batch.records[0]!.offset)
      if (firsts.size === partitions) break
    }
    for (let p = 0; p < partitions; p++) assert.equal(firsts.get(p), before.get(p), `partition ${p} resumed at ${firsts.get(p)}, committed ${before.get(p)}`)
    assert.ok(events.some((e) => e.assignment.length === partitions && e.generation > 0))
    assert.equal(k.assignment().length, partitions)
    assert.ok(k.generation > 0 && k.memberId !== null)
  } finally {
    await k.close()
  }
  // It left: the group is empty again.
  assert.equal((await groupCall('GET', `/v1/groups/${groupId}`)).members.length, 0)
})

test('close() while run() is inside a handler: the member stays in the group until the handler returns, then commits that batch and leaves', { timeout: 60_000 }, async () => {
  const group = 'closers'
  const k = new Consumer({ brokers: c.brokers.map((b) => b.url), groupId: group, fromBeginning: true, sessionTimeoutMs: 3000, maxWaitMs: 500 })
  let entered!: (b: { partition: number; last: number }) => void
  const inHandler = new Promise<{ partition: number; last: number }>((resolve) => (entered = resolve))
  let release!: () => void
  const gate = new Promise<void>((resolve) => (release = resolve))
  let handlerDone = false
  for (let p = 0; p < partitions; p++) await produce(c, topic, p, [`closing-${p}`])
  await k.subscribe(topic)
  const running = k.run({
    eachBatch: async (batch) => {
      entered({ partition: batch.partition, last: batch.records.at(-1)!.offset })
      await gate
      handlerDone = true
    },
  })
  const held = await Promise.race([inHandler, running.then(() => assert.fail('run() ended before a batch'))])
  const closing = k.close()
  let closed = false
  void closing.then(() => (closed = true))
  // Give a close that does not wait for the handler every chance to leave (it takes a commit and a DELETE).
  await Promise.race([closing, new Promise((resolve) => setTimeout(resolve, 1500))])
  const during = await groupCall('GET', `/v1/groups/${group}`)
  assert.equal(closed, false, 'close() finished while the handler still held a batch')
  assert.equal(during.members.length, 1, 'the member left while its handler still processed a batch: another member could take the partition')
  release()
  await closing
  await running
  assert.ok(handlerDone)
  const after = await groupCall('GET', `/v1/groups/${group}`)
  assert.equal(after.members.length, 0)
  const stored = after.offsets.find((o: { topic: string; partition: number }) => o.topic === topic && o.partition === held.partition)
  assert.equal(stored?.offset, held.last + 1, 'the batch the handler finished is committed')
})

