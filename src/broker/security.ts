/**
 * Who a request is and what it may do, from the controller's metadata:
 * bearer tokens (tokens.ts) and ACLs (src/controller/acl.ts), plus the
 * broker's own settings (`--auth`, `--super-users`).
 *
 *   authenticate(token) ──▶ principal | null        (keyed hash, constant-time compare)
 *   allows(principal, op, resource) ──▶ super-user? ──▶ ACLs of that principal (indexed per metadata version)
 *   createToken / revokeToken / addAcl / removeAcl ──▶ controller leader (proposed here or forwarded),
 *        then waits (bounded) until this broker's own metadata shows the change
 *
 * A change made through one broker is usable through it as soon as the call
 * returns: a token just created authenticates, an ACL just added allows.
 */
import { ErrorCode, RillError, type Runtime } from '../base/index.ts'
import type { AclEntry, Command, ControllerState, Operation, Resource, TokenInfo } from '../controller/index.ts'
import { aclAllows, parseAcl, principal as checkPrincipal, tokenId as checkTokenId } from '../controller/index.ts'
import { CommandType } from '../controller/types.ts'
import { controllerWaitMsMax } from './controller-client.ts'
import type { ControllerCall } from './peer-calls.ts'
import { authenticateToken, newToken, tokenHashKey } from './tokens.ts'

/** Whether requests must authenticate: `none` (default; every request is anonymous and allowed) or `required`. */
export type AuthMode = 'none' | 'required'
export const authModes: readonly AuthMode[] = ['none', 'required']

/** The controller commands of security (forwarded to the controller leader as one kind of call). */
export type SecurityCommand = Extract<Command, { type: 'CreateToken' | 'RevokeToken' | 'AddAcl' | 'RemoveAcl' }>

export interface SecurityController {
  readonly state: ControllerState
  isLeader(): boolean
  propose(cmd: Command): Promise<void>
  forward(call: ControllerCall): Promise<void>
}

export interface SecurityOptions {
  readonly secret: Uint8Array
  readonly superUsers: readonly string[]
  readonly runtime: Runtime
  readonly controller: SecurityController
  readonly isStopped: () => boolean
}

/** A token as listed: never its hash. */
export interface TokenListing {
  readonly id: string
  readonly principal: string
  readonly createdMs: number
}

export class Security {
  readonly superUsers: ReadonlySet<string>
  readonly #key: Uint8Array
  readonly #options: SecurityOptions
  /** ACLs by principal, for the metadata they were read from. */
  #index: { state: ControllerState; version: number; byPrincipal: Map<string, AclEntry[]> } | null = null

  constructor(options: SecurityOptions) {
    this.#options = options
    this.#key = tokenHashKey(options.secret)
    this.superUsers = new Set(options.superUsers)
  }

  /** The principal a bearer token authenticates, or null. */
  authenticate(token: string): string | null {
    const state = this.#options.controller.state
    return authenticateToken(this.#key, (id) => state.token(id), token)
  }

  /** True if `principal` may do `operation` on `resource`: a super-user may do everything; others what an ACL allows. */
  allows(principal: string, operation: Operation, resource: Resource): boolean {
    if (this.superUsers.has(principal)) return true
    return aclAllows(this.#aclsOf(principal), principal, operation, resource)
  }

  #aclsOf(principal: string): readonly AclEntry[] {
    const state = this.#options.controller.state
    if (this.#index === null || this.#index.state !== state || this.#index.version !== state.version) {
      const byPrincipal = new Map<string, AclEntry[]>()
      for (const acl of state.acls()) {
        const list = byPrincipal.get(acl.principal)
        if (list === undefined) byPrincipal.set(acl.principal, [acl])
        else list.push(acl)
      }
      this.#index = { state, version: state.version, byPrincipal }
    }
    return this.#index.byPrincipal.get(principal) ?? []
  }

  /** Issues a token for `principal`: the answer is the only place the token ever appears. */
  async createToken(principal: string): Promise<TokenListing & { token: string }> {
    const name = checkPrincipal(principal)
    const made = newToken(this.#key)
    const createdMs = this.#options.runtime.wallMs()
    await this.#run({ type: CommandType.CreateToken, id: made.id, principal: name, hash: made.hash, createdMs }, (s) => s.token(made.id) !== undefined)
    return { id: made.id, principal: name, createdMs, token: made.token }
  }

  /** Revokes token `id`; false if there is none. */
  async revokeToken(id: string): Promise<boolean> {
    const checked = checkTokenId(id)
    if (this.#options.controller.state.token(checked) === undefined) return false
    await this.#run({ type: CommandType.RevokeToken, id: checked }, (s) => s.token(checked) === undefined)
    return true
  }

  /** Tokens (id, principal, createdMs), optionally of one principal. */
  tokens(principal?: string): TokenListing[] {
    return this.#options.controller.state
      .tokens()
      .filter((t: TokenInfo) => principal === undefined || t.principal === principal)
      .map((t) => ({ id: t.id, principal: t.principal, createdMs: t.createdMs }))
  }

  /** Adds an allow rule (a repeat changes nothing). */
  async addAcl(acl: AclEntry): Promise<AclEntry> {
    const checked = parseAcl(acl)
    await this.#run({ type: CommandType.AddAcl, acl: checked }, (s) => hasAcl(s, checked))
    return checked
  }

  /** Removes an allow rule; false if there was none. */
  async removeAcl(acl: AclEntry): Promise<boolean> {
    const checked = parseAcl(acl)
    if (!hasAcl(this.#options.controller.state, checked)) return false
    await this.#run({ type: CommandType.RemoveAcl, acl: checked }, (s) => !hasAcl(s, checked))
    return true
  }

  /** ACLs, optionally of one principal. */
  acls(principal?: string): readonly AclEntry[] {
    const all = this.#options.controller.state.acls()
    return principal === undefined ? all : all.filter((a) => a.principal === principal)
  }

  /** Controller leader: proposes a forwarded security command (checked again here: it crossed the network). */
  async runForwarded(cmd: SecurityCommand): Promise<void> {
    await this.#run(cmd, () => true)
  }

  /** Proposes `cmd` (here if this broker leads the controller, else forwarded), then waits until this broker's metadata satisfies `done`. */
  async #run(cmd: SecurityCommand, done: (state: ControllerState) => boolean): Promise<void> {
    const controller = this.#options.controller
    if (controller.isLeader()) {
      await controller.propose(cmd)
      return
    }
    await controller.forward({ kind: 'security', command: cmd })
    const runtime = this.#options.runtime
    const end = runtime.nowMs() + controllerWaitMsMax
    while (!done(controller.state)) {
      if (runtime.nowMs() >= end || this.#options.isStopped()) {
        throw new RillError(ErrorCode.TIMEOUT, `the change was made but this broker's metadata does not show it yet (${controllerWaitMsMax} ms); retry the read`)
      }
      await runtime.sleep(10)
    }
  }
}

function hasAcl(state: ControllerState, acl: AclEntry): boolean {
  return state.acls().some((a) => a.principal === acl.principal && a.resourceType === acl.resourceType && a.resourceName === acl.resourceName && a.patternType === acl.patternType && a.operation === acl.operation)
}
