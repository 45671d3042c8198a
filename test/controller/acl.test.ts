/**
 * ACLs and tokens in the controller's metadata: the matcher (exact, prefix,
 * wildcard, implied describe, default deny), the shape rules the codec
 * enforces, apply with its bounds, and snapshots that keep both.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { isRillError } from '../../src/base/index.ts'
import type { AclEntry, Command } from '../../src/controller/index.ts'
import { aclAllows, ControllerState, decodeCommand, encodeCommand, parseCommand } from '../../src/controller/index.ts'
import { aclsMax, tokensMax } from '../../src/controller/acl.ts'

const acl = (principal: string, resourceType: AclEntry['resourceType'], resourceName: string, patternType: AclEntry['patternType'], operation: AclEntry['operation']): AclEntry => ({
  principal,
  resourceType,
  resourceName,
  patternType,
  operation,
})
const topic = (name: string) => ({ type: 'topic' as const, name })
const group = (name: string) => ({ type: 'group' as const, name })
const cluster = { type: 'cluster' as const, name: 'cluster' }

test('matcher: nothing is allowed without an ACL (default deny)', () => {
  assert.equal(aclAllows([], 'alice', 'produce', topic('orders')), false)
  assert.equal(aclAllows([acl('bob', 'topic', '*', 'literal', 'all')], 'alice', 'produce', topic('orders')), false)
})

test('matcher: a literal name is that resource only; * is every resource of its type', () => {
  const acls = [acl('alice', 'topic', 'orders', 'literal', 'produce')]
  assert.equal(aclAllows(acls, 'alice', 'produce', topic('orders')), true)
  assert.equal(aclAllows(acls, 'alice', 'produce', topic('orders2')), false)
  assert.equal(aclAllows(acls, 'alice', 'produce', topic('order')), false)
  assert.equal(aclAllows(acls, 'alice', 'consume', topic('orders')), false, 'produce does not give consume')
  assert.equal(aclAllows(acls, 'alice', 'produce', group('orders')), false, 'a topic ACL says nothing of a group of the same name')
  const all = [acl('alice', 'topic', '*', 'literal', 'consume')]
  assert.equal(aclAllows(all, 'alice', 'consume', topic('anything')), true)
  assert.equal(aclAllows(all, 'alice', 'produce', topic('anything')), false)
})

test('matcher: a prefixed name matches names starting with it; "*" prefixed is only a literal star', () => {
  const acls = [acl('alice', 'topic', 'team-a.', 'prefixed', 'consume'), acl('alice', 'group', 'app-', 'prefixed', 'read')]
  assert.equal(aclAllows(acls, 'alice', 'consume', topic('team-a.orders')), true)
  assert.equal(aclAllows(acls, 'alice', 'consume', topic('team-a.')), true)
  assert.equal(aclAllows(acls, 'alice', 'consume', topic('team-b.orders')), false)
  assert.equal(aclAllows(acls, 'alice', 'consume', topic('team-a')), false)
  assert.equal(aclAllows(acls, 'alice', 'read', group('app-1')), true)
  assert.equal(aclAllows(acls, 'alice', 'read', group('other')), false)
})

test('matcher: any operation on a resource implies describe of it; all covers every operation', () => {
  const acls = [acl('alice', 'topic', 'orders', 'literal', 'produce'), acl('bob', 'cluster', 'cluster', 'literal', 'all'), acl('carol', 'group', 'g', 'literal', 'read')]
  assert.equal(aclAllows(acls, 'alice', 'describe', topic('orders')), true)
  assert.equal(aclAllows(acls, 'alice', 'describe', topic('other')), false)
  for (const op of ['create', 'delete', 'alter', 'describe'] as const) assert.equal(aclAllows(acls, 'bob', op, cluster), true)
  assert.equal(aclAllows(acls, 'alice', 'alter', cluster), false)
  assert.equal(aclAllows(acls, 'carol', 'describe', group('g')), true)
})

test('codec: ACL commands round-trip; malformed ones are INVALID_REQUEST naming the field', () => {
  const good: Command = { type: 'AddAcl', acl: acl('User:alice', 'topic', 'orders', 'prefixed', 'produce') }
  assert.deepEqual(decodeCommand(encodeCommand(good)), good)
  const bad: [unknown, string][] = [
    [{ type: 'AddAcl', acl: { ...good.acl, principal: '' } }, 'principal'],
    [{ type: 'AddAcl', acl: { ...good.acl, principal: 'a,b' } }, 'principal'],
    [{ type: 'AddAcl', acl: { ...good.acl, principal: 'x'.repeat(256) } }, 'principal'],
    [{ type: 'AddAcl', acl: { ...good.acl, resourceType: 'broker' } }, 'resourceType'],
    [{ type: 'AddAcl', acl: { ...good.acl, operation: 'read' } }, 'operation'],
    [{ type: 'AddAcl', acl: { ...good.acl, operation: 'alter' } }, 'operation'],
    [{ type: 'AddAcl', acl: { ...good.acl, patternType: 'regex' } }, 'patternType'],
    [{ type: 'AddAcl', acl: { ...good.acl, resourceName: 'a/b' } }, 'resourceName'],
    [{ type: 'AddAcl', acl: { ...good.acl, resourceName: '*', patternType: 'prefixed' } }, 'resourceName'],
    [{ type: 'AddAcl', acl: { ...good.acl, resourceName: 'x'.repeat(250) } }, 'resourceName'],
    [{ type: 'AddAcl', acl: acl('a', 'cluster', 'orders', 'literal', 'alter') }, 'resourceName'],
    [{ type: 'AddAcl', acl: { ...good.acl, extra: 1 } }, 'acl'],
    [{ type: 'CreateToken', id: 'zz', principal: 'a', hash: 'a'.repeat(64), createdMs: 1 }, 'id'],
    [{ type: 'CreateToken', id: 'a'.repeat(16), principal: 'a', hash: 'A'.repeat(64), createdMs: 1 }, 'hash'],
    [{ type: 'CreateToken', id: 'a'.repeat(16), principal: 'a', hash: 'a'.repeat(64), createdMs: -1 }, 'createdMs'],
    [{ type: 'RevokeToken', id: 'a'.repeat(17) }, 'id'],
  ]
  for (const [cmd, field] of bad) {
    assert.throws(() => parseCommand(cmd), (e: unknown) => isRillError(e, 'INVALID_REQUEST') && e.details['field'] === field, JSON.stringify(cmd))
  }
})

test('state: ACLs are added once, removed, listed sorted; tokens created and revoked; both survive a snapshot', () => {
  const s = new ControllerState()
  const a = acl('bob', 'topic', 'orders', 'literal', 'consume')
  const b = acl('alice', 'group', 'g', 'literal', 'read')
  assert.equal(s.apply({ type: 'AddAcl', acl: a }).ok, true)
  const v = s.version
  assert.equal(s.apply({ type: 'AddAcl', acl: { ...a } }).ok, true)
  assert.equal(s.version, v, 'adding an ACL again changes nothing')
  assert.equal(s.apply({ type: 'AddAcl', acl: b }).ok, true)
  assert.deepEqual(s.acls(), [b, a])
  const token = { type: 'CreateToken' as const, id: '0123456789abcdef', principal: 'alice', hash: 'ab'.repeat(32), createdMs: 5 }
  assert.equal(s.apply(token).ok, true)
  const again = s.apply({ ...token, principal: 'mallory' })
  assert.equal(again.ok, false, 'a token id is never reused')
  assert.equal(s.token(token.id)?.principal, 'alice')

  const copy = ControllerState.fromSnapshot(s.snapshot())
  assert.deepEqual(copy.acls(), s.acls())
  assert.deepEqual(copy.tokens(), s.tokens())
  assert.deepEqual(copy.snapshot(), s.snapshot())

  assert.equal(s.apply({ type: 'RemoveAcl', acl: a }).ok, true)
  assert.deepEqual(s.acls(), [b])
  assert.equal(s.apply({ type: 'RevokeToken', id: token.id }).ok, true)
  assert.equal(s.token(token.id), undefined)
  const unknown = s.apply({ type: 'RevokeToken', id: token.id })
  assert.equal(!unknown.ok && unknown.error.details['reason'], 'unknown-token')
})

test('state: ACL and token counts are bounded; a refused command changes nothing', () => {
  const s = new ControllerState()
  for (let i = 0; i < aclsMax; i++) assert.equal(s.apply({ type: 'AddAcl', acl: acl(`p${i}`, 'topic', 't', 'literal', 'produce') }).ok, true)
  const before = s.snapshot()
  const over = s.apply({ type: 'AddAcl', acl: acl('one-more', 'topic', 't', 'literal', 'produce') })
  assert.equal(!over.ok && over.error.details['reason'], 'too-many-acls')
  assert.deepEqual(s.snapshot(), before)
  assert.equal(s.apply({ type: 'AddAcl', acl: acl('p0', 'topic', 't', 'literal', 'produce') }).ok, true, 'a repeat at the bound is still a no-op')

  const t = new ControllerState()
  for (let i = 0; i < tokensMax; i++) {
    assert.equal(t.apply({ type: 'CreateToken', id: i.toString(16).padStart(16, '0'), principal: 'p', hash: 'cd'.repeat(32), createdMs: 0 }).ok, true)
  }
  const full = t.apply({ type: 'CreateToken', id: 'ffffffffffffffff', principal: 'p', hash: 'cd'.repeat(32), createdMs: 0 })
  assert.equal(!full.ok && full.error.details['reason'], 'too-many-tokens')
})

test('snapshot: format 1 (before ACLs and tokens) restores with none; a snapshot with a bad ACL is refused', async () => {
  const { Packr } = await import('msgpackr')
  const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false, int64AsType: 'number' })
  const old = new Uint8Array(packr.pack({ format: 1, version: 3, nextTopicId: 1, brokers: [], topics: [] }))
  const s = ControllerState.fromSnapshot(old)
  assert.equal(s.version, 3)
  assert.deepEqual(s.acls(), [])
  const bad = new Uint8Array(packr.pack({ format: 2, version: 3, nextTopicId: 1, brokers: [], topics: [], acls: [['a', 'topic', 'x', 'literal', 'alter']], tokens: [] }))
  assert.throws(() => ControllerState.fromSnapshot(bad), (e: unknown) => isRillError(e, 'INVALID_REQUEST'))
})
