/**
 * @module features/signatures/compile
 * Active threat signatures as the rules of one managed policy in the SPEC §11.1 format the public
 * daemon already enforces (issue 11): a detection on one machine becomes every daemon's block at
 * its next policy fetch, with no change to the daemon. How each indicator is matched follows
 * SPEC §11.2:
 *
 * - `domain` → tool `http:{domain}:*` (the daemon names HTTP traffic `http:{domain}:{verb}.{slug}`);
 * - `url` → its host, the same way (the daemon matches HTTP by name, and its name has no path);
 * - `command`, `file_path`, `prompt_injection` → any tool whose raw arguments JSON contains the
 *   value (a condition; written as it appears inside that JSON, escapes included; a `*` in it is
 *   dropped by the daemon, so `~/.aws/*` means "contains `~/.aws/`");
 * - `mcp_tool` → that tool name, exactly (case-insensitive, as every daemon glob).
 *
 * Action `alert` is served as `flag` (the daemon records it on the event). Flow shapes are matched
 * on the server, not compiled. Pure.
 */
import { createHash } from 'node:crypto'

export interface CompiledSignature {
  id: string
  kind: string
  value: string | null
  action: string
  created_at: Date
  updated_at: Date
}

export interface DaemonRule {
  tool: string
  agent: string
  action: 'block' | 'flag' | 'require_approval'
  conditions: string[]
}

/** Above any policy an org can write (their priorities are within ±1,000,000): signatures decide first. */
export const MANAGED_PRIORITY = 1_000_001
const ACTION_ORDER: Record<string, number> = { block: 0, require_approval: 1, flag: 2, alert: 2 }

/** Written as it appears inside the arguments JSON the daemon searches. */
const inJson = (v: string) => JSON.stringify(v).slice(1, -1)

export function compileRule(s: Pick<CompiledSignature, 'kind' | 'value' | 'action'>): DaemonRule | null {
  const action = s.action === 'alert' ? 'flag' : (s.action as DaemonRule['action'])
  const v = s.value
  if (v === null) return null
  switch (s.kind) {
    case 'domain':
      return { tool: `http:${v.toLowerCase()}:*`, agent: '*', action, conditions: [] }
    case 'url':
      return { tool: `http:${new URL(v).hostname.toLowerCase()}:*`, agent: '*', action, conditions: [] }
    case 'command':
    case 'file_path':
    case 'prompt_injection':
      return { tool: '*', agent: '*', action, conditions: [inJson(v)] }
    case 'mcp_tool':
      return { tool: v, agent: '*', action, conditions: [] }
    default:
      return null
  }
}

/** The managed policy's stable id for an org (a name-based UUID: the same org, the same id). */
export function managedPolicyId(orgId: string): string {
  const h = createHash('sha256').update(`quint-cloud:managed-signatures:${orgId}`).digest('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`
}

/**
 * The managed policy for these signatures (already those active and in scope), or null when none
 * compiles. Blocks first, then approvals, then flags; oldest first within each; its times are the
 * signatures', so the same set always gives the same bytes.
 */
export function managedPolicy(orgId: string, signatures: readonly CompiledSignature[]) {
  const sorted = [...signatures].sort(
    (a, b) =>
      (ACTION_ORDER[a.action] ?? 9) - (ACTION_ORDER[b.action] ?? 9) ||
      a.created_at.getTime() - b.created_at.getTime() ||
      a.id.localeCompare(b.id),
  )
  const rules = sorted.map(compileRule).filter((r): r is DaemonRule => r !== null)
  if (rules.length === 0) return null
  const times = signatures.map((s) => s.updated_at.getTime())
  return {
    id: managedPolicyId(orgId),
    org_id: orgId,
    name: 'Threat signatures (managed by quint-cloud)',
    description: `${rules.length} active threat signature${rules.length === 1 ? '' : 's'} (GET /v1/threat-signatures)`,
    enabled: true,
    priority: MANAGED_PRIORITY,
    rules,
    created_at: new Date(Math.min(...signatures.map((s) => s.created_at.getTime()))).toISOString(),
    updated_at: new Date(Math.max(...times)).toISOString(),
  }
}
