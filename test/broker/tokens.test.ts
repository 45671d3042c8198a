/**
 * The token store: a token authenticates its principal until revoked; the
 * metadata holds only a keyed hash (useless without the cluster secret); a
 * token with one character changed, another cluster's key, or junk
 * authenticates nobody. Security (over a real ControllerState): super-users
 * may do everything, others what their ACLs allow, and nothing by default.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ControllerState } from '../../src/controller/index.ts'
import { type Security, authenticateToken, newToken, parseToken, tokenHashKey } from '../../src/broker/index.ts'
import { testSecurity } from '../api/helpers.ts'

const secret = Uint8Array.from(Buffer.alloc(32, 1))
const otherSecret = Uint8Array.from(Buffer.alloc(32, 2))

/** A Security whose controller is a ControllerState this process leads (propose = apply). */
function security(options: { superUsers?: string[] } = {}): { security: Security; state: ControllerState } {
  const state = new ControllerState()
  return { state, security: testSecurity({ secret, superUsers: options.superUsers ?? [], state }) }
}

test('a token authenticates its principal; the metadata holds only its keyed hash', async () => {
  const { security: s, state } = security()
  const made = await s.createToken('alice')
  assert.match(made.token, /^rill_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)
  assert.equal(s.authenticate(made.token), 'alice')
  const stored = state.token(made.id)!
  assert.equal(stored.principal, 'alice')
  assert.ok(!Buffer.from(state.snapshot()).includes(Buffer.from(made.token.slice(22))), 'the token is nowhere in the metadata')
  assert.ok(!stored.hash.includes(parseToken(made.token)!.secret.toString('hex')))
  assert.deepEqual(s.tokens(), [{ id: made.id, principal: 'alice', createdMs: made.createdMs }])
})

test('a changed, foreign, revoked or malformed token authenticates nobody', async () => {
  const { security: s } = security()
  const made = await s.createToken('alice')
  const last = made.token.at(-1)!
  const changed = made.token.slice(0, -1) + (last === 'A' ? 'B' : 'A')
  assert.equal(s.authenticate(changed), null)
  // Every other last character, those that decode to the same 32 bytes included (the low two bits are padding).
  for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_') {
    if (c !== last) assert.equal(s.authenticate(made.token.slice(0, -1) + c), null, `last character ${last} -> ${c}`)
  }
  // The same id with another cluster's hash key: a token minted elsewhere.
  const foreign = newToken(tokenHashKey(otherSecret))
  assert.equal(authenticateToken(tokenHashKey(secret), () => ({ id: foreign.id, principal: 'mallory', hash: foreign.hash, createdMs: 0 }), foreign.token), null)
  for (const junk of ['', 'Bearer x', made.token + 'x', made.token.replace('rill_', 'rilL_'), 'rill_0123456789abcdef_' + 'A'.repeat(42)]) assert.equal(s.authenticate(junk), null, junk)
  assert.equal(await s.revokeToken(made.id), true)
  assert.equal(s.authenticate(made.token), null, 'revoked')
  assert.equal(await s.revokeToken(made.id), false, 'revoking again: nothing to revoke')
})

test('authorization: nothing by default, what ACLs allow, everything for super-users', async () => {
  const { security: s } = security({ superUsers: ['root'] })
  const orders = { type: 'topic' as const, name: 'orders' }
  assert.equal(s.allows('alice', 'produce', orders), false)
  await s.addAcl({ principal: 'alice', resourceType: 'topic', resourceName: 'ord', patternType: 'prefixed', operation: 'produce' })
  assert.equal(s.allows('alice', 'produce', orders), true)
  assert.equal(s.allows('alice', 'consume', orders), false)
  assert.equal(s.allows('bob', 'produce', orders), false)
  assert.equal(s.allows('root', 'alter', { type: 'cluster', name: 'cluster' }), true)
  assert.equal(await s.removeAcl({ principal: 'alice', resourceType: 'topic', resourceName: 'ord', patternType: 'prefixed', operation: 'produce' }), true)
  assert.equal(s.allows('alice', 'produce', orders), false, 'the index follows the metadata')
})
