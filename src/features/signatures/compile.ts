/**
 * @module features/signatures/compile
 * Active threat signatures as the rules of one managed policy in the SPEC §11.1 format the public
 * daemon already enforces (issue 11): a detection on one machine becomes every daemon's block at
 * its next policy fetch, with no change to the daemon. How each indicator is matched follows
 * SPEC §11.2:
 *
 * - `domain` → tool `http:{domain}:*` (the daemon names HTTP traffic `http:{domain}:{verb}.{slug}`);
 * - `url` → its host, the same way (the daemon matches HTTP by name, and its name has no path:
 *   so only a URL with no path is accepted);
 * - `command`, `file_path`, `prompt_injection` → any tool whose raw arguments JSON contains the
 *   value (a condition; written as it appears inside that JSON, escapes included, as JavaScript
 *   and as Go write it; a `*` at an end is dropped by the daemon, so `~/.aws/*` means "contains
 *   `~/.aws/`");
 * - `mcp_tool` → that tool name, exactly (case-insensitive, as every daemon glob).
 *
 * Action `alert` is served as `flag` (the daemon records it on the event). Blocks are one managed
 * policy above every policy of the org, flags and approvals another below them all. Flow shapes
 * are matched on the server, not compiled. Pure.
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

/**
 * Blocks go above any policy an org can write (their priorities are within ±1,000,000), so a
 * signature's block always applies; flags and approvals go below them all, so that they can never
 * be the first match that keeps an org's own block from applying (the daemon's first match wins).
 */
export const BLOCK_PRIORITY = 1_000_001
export const WATCH_PRIORITY = -1_000_001

/**
 * Written as it appears inside the arguments JSON the daemon searches: as JavaScript writes JSON,
 * and, when different, as Go does (it escapes `<`, `>` and `&`); either one matching suffices.
 */
function inJson(v: string): string[] {
  const js = JSON.stringify(v).slice(1, -1)
  const go = js.replace(/[<>&]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`)
  return go === js ? [js] : [js, go]
}

export function compileRule(s: Pick<CompiledSignature, 'kind' | 'value' | 'action'>): DaemonRule | null {
  const action = s.action === 'alert' ? 'flag' : (s.action as DaemonRule['action'])
  const v = s.value
  if (v === null) return null
  switch (s.kind) {
    case 'domain':
    case 'url':
      return { tool: `http:${hostOf(s)}:*`, agent: '*', action, conditions: [] }
    case 'command':
    case 'file_path':
    case 'prompt_injection':
      return { tool: '*', agent: '*', action, conditions: inJson(v) }
    case 'mcp_tool':
      return { tool: v, agent: '*', action, conditions: [] }
    default:
      return null
  }
}

/** The host a domain or URL signature names (the daemon must route it through its proxy to see it). */
export function hostOf(s: Pick<CompiledSignature, 'kind' | 'value'>): string | null {
  if (s.value === null) return null
  if (s.kind === 'domain') return s.value.toLowerCase()
  if (s.kind === 'url') return new URL(s.value).hostname.toLowerCase()
  return null
}

/** A managed policy's stable id for an org (a name-based UUID: the same org and part, the same id). */
export function managedPolicyId(orgId: string, part: 'block' | 'watch' = 'block'): string {
  const h = createHash('sha256').update(`quint-cloud:managed-signatures:${part}:${orgId}`).digest('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`
}

/**
 * The managed policies for these signatures (already those active and in scope): the blocks, and
 * the flags and approvals, each only when it has a rule. Oldest first within each; their times
 * are the signatures', so the same set always gives the same bytes.
 */
export function managedPolicies(orgId: string, signatures: readonly CompiledSignature[]) {
  const sorted = [...signatures].sort((a, b) => a.created_at.getTime() - b.created_at.getTime() || a.id.localeCompare(b.id))
  const part = (which: 'block' | 'watch', of: CompiledSignature[]) => {
    const rules = of.map(compileRule).filter((r): r is DaemonRule => r !== null)
    if (rules.length === 0) return []
    return [
      {
        id: managedPolicyId(orgId, which),
        org_id: orgId,
        name:
          which === 'block'
            ? 'Threat signatures: block (managed by quint-cloud)'
            : 'Threat signatures: flag and approve (managed by quint-cloud)',
        description: `${rules.length} active threat signature${rules.length === 1 ? '' : 's'} (GET /v1/threat-signatures)`,
        enabled: true,
        priority: which === 'block' ? BLOCK_PRIORITY : WATCH_PRIORITY,
        rules,
        created_at: new Date(Math.min(...of.map((s) => s.created_at.getTime()))).toISOString(),
        updated_at: new Date(Math.max(...of.map((s) => s.updated_at.getTime()))).toISOString(),
      },
    ]
  }
  return {
    above: part(
      'block',
      sorted.filter((s) => s.action === 'block'),
    ),
    below: part(
      'watch',
      sorted.filter((s) => s.action !== 'block'),
    ),
  }
}
