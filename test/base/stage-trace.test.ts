/**
 * The stage tracer of bench:trace (src/base/stage-trace.ts): silent until
 * enabled, reports the time between a mark and a stage on its clock, keeps
 * a bounded number of marks.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { stageTrace } from '../../src/base/stage-trace.ts'

test('the stage tracer reports nothing until enabled, then the time since each mark, once when asked to forget', () => {
  const seen: [string, number][] = []
  let now = 100
  stageTrace.mark('g#1')
  stageTrace.since('never', 'g#1')
  assert.equal(stageTrace.enabled, false)
  stageTrace.enable({ nowMs: () => now }, (stage, seconds) => seen.push([stage, seconds]))
  try {
    stageTrace.since('before-mark', 'g#1')
    assert.deepEqual(seen, [], 'a mark made while disabled is not kept')
    stageTrace.mark('g#1')
    now = 102.5
    stageTrace.since('propose_to_commit', 'g#1', true)
    stageTrace.since('again', 'g#1')
    stageTrace.sinceMs('from_ms', 100)
    assert.deepEqual(seen, [['propose_to_commit', 0.0025], ['from_ms', 0.0025]])
  } finally {
    stageTrace.disable()
  }
  stageTrace.since('after', 'g#1')
  assert.equal(seen.length, 2)
})

test('the stage tracer keeps a bounded number of marks, dropping the oldest', () => {
  const seen: string[] = []
  stageTrace.enable({ nowMs: () => 0 }, (stage) => seen.push(stage))
  try {
    for (let i = 0; i < 10_000; i++) stageTrace.mark(`g#${i}`)
    stageTrace.since('oldest', 'g#0')
    stageTrace.since('newest', 'g#9999')
    assert.deepEqual(seen, ['newest'])
  } finally {
    stageTrace.disable()
  }
})
