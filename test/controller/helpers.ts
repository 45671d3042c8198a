/** Builders shared by the controller tests. */
import fc from 'fast-check'
import type { BrokerId, Command, TopicConfig } from '../../src/controller/index.ts'
import { ControllerState } from '../../src/controller/index.ts'

export const syncConfig: TopicConfig = { persistence: 'sync' }

/** A state with brokers 1..n registered and unfenced (racks from `racks`, if given). */
export function cluster(n: number, racks?: (id: BrokerId) => string | undefined): ControllerState {
  const state = new ControllerState()
  for (let id = 1; id <= n; id++) addBroker(state, id, racks?.(id))
  return state
}

export function addBroker(state: ControllerState, id: BrokerId, rack?: string): void {
  const reg: Command = { type: 'RegisterBroker', id, httpUrl: `http://127.0.0.1:${9000 + id}`, peerUrl: `127.0.0.1:${19000 + id}` }
  mustApply(state, rack === undefined ? reg : { ...reg, rack })
  mustApply(state, { type: 'UnfenceBroker', id })
}

export function mustApply(state: ControllerState, cmd: Command): void {
  const result = state.apply(cmd)
  if (!result.ok) throw result.error
}

/** Replica count per broker over all topics (only the given brokers, zeros included). */
export function counts(state: ControllerState, brokers: readonly BrokerId[]): number[] {
  const all = state.replicaCounts()
  return brokers.map((b) => all.get(b) ?? 0)
}

/** Preferred-leader count per broker. */
export function leaderCounts(state: ControllerState, brokers: readonly BrokerId[]): number[] {
  const m = new Map<BrokerId, number>()
  for (const t of state.topics()) for (const p of t.partitions) m.set(p.replicas[0]!, (m.get(p.replicas[0]!) ?? 0) + 1)
  return brokers.map((b) => m.get(b) ?? 0)
}

export function spread(xs: readonly number[]): number {
  return Math.max(...xs) - Math.min(...xs)
}

export function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i)
}

// ---------------------------------------------------------------- arbitraries of well-formed commands

/** Mostly registered ids (the state tests register 1..5), so sequences exercise apply, not only refusals. */
const brokerIdArb = fc.integer({ min: 1, max: 6 })
const topicNameArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('a', 'b', 'c') },
  { weight: 1, arbitrary: fc.stringMatching(/^[a-zA-Z0-9._-]{1,20}$/).filter((s) => s !== '.' && s !== '..') },
)
const configArb: fc.Arbitrary<TopicConfig> = fc.record(
  {
    persistence: fc.constantFrom('sync' as const, 'async' as const, 'memory' as const),
    retentionMs: fc.integer({ min: 1, max: 2 ** 40 }),
    retentionBytes: fc.integer({ min: 1, max: 2 ** 50 }),
  },
  { requiredKeys: ['persistence'] },
)
const replicasArb = (n: number) => fc.uniqueArray(brokerIdArb, { minLength: n, maxLength: n })

export const commandArb: fc.Arbitrary<Command> = fc.oneof(
  fc.record(
    {
      type: fc.constant('RegisterBroker' as const),
      id: brokerIdArb,
      httpUrl: fc.integer({ min: 1, max: 65535 }).map((p) => `http://10.0.0.1:${p}`),
      peerUrl: fc.integer({ min: 1, max: 65535 }).map((p) => `broker-a.local:${p}`),
      rack: fc.constantFrom('r1', 'r2', 'r3'),
    },
    { requiredKeys: ['type', 'id', 'httpUrl', 'peerUrl'] },
  ),
  fc.record({
    type: fc.constantFrom(
      'FenceBroker' as const,
      'UnfenceBroker' as const,
      'DecommissionBroker' as const,
      'RecommissionBroker' as const,
      'UnregisterBroker' as const,
    ),
    id: brokerIdArb,
  }),
  fc
    .record({ name: topicNameArb, partitions: fc.integer({ min: 1, max: 6 }), rf: fc.integer({ min: 1, max: 3 }), config: configArb })
    .chain(({ name, partitions, rf, config }) =>
      fc.array(replicasArb(rf), { minLength: partitions, maxLength: partitions }).map(
        (assignment): Command => ({ type: 'CreateTopic', name, partitions, replicationFactor: rf, config, assignment }),
      ),
    ),
  fc.record({ type: fc.constant('DeleteTopic' as const), name: topicNameArb }),
  fc
    .record({ name: topicNameArb, added: fc.integer({ min: 1, max: 3 }), rf: fc.integer({ min: 1, max: 3 }), base: fc.integer({ min: 1, max: 6 }) })
    .chain(({ name, added, rf, base }) =>
      fc.array(replicasArb(rf), { minLength: added, maxLength: added }).map(
        (assignment): Command => ({ type: 'CreatePartitions', name, partitions: base + added, assignment }),
      ),
    ),
  fc.record({ type: fc.constant('UpdateTopicConfig' as const), name: topicNameArb, config: configArb }),
  fc.record(
    {
      type: fc.constant('ReassignPartition' as const),
      topic: topicNameArb,
      partition: fc.integer({ min: 0, max: 3 }),
      replicas: fc.integer({ min: 1, max: 3 }).chain(replicasArb),
      topicId: fc.integer({ min: 0, max: 3 }),
      epoch: fc.integer({ min: 0, max: 2 }),
    },
    { requiredKeys: ['type', 'topic', 'partition', 'replicas'] },
  ),
)
