/**
 * @module console/ui/pages/signatures-draft
 * A threat signature as its editor holds it, and the bodies made from it: create, change (only
 * the fields that changed; kind and value are fixed once created), and the simulation's draft.
 * The kinds and how a daemon matches each are docs/threat-signatures.md's; flow shapes are
 * docs/flow-shapes.md's.
 */
import type { Body, Ok } from '../api/client.ts'
import { scopeBody, type FieldErrors, type ScopeDraft } from './policies-draft.ts'

export type Signature = Ok<'/v1/threat-signatures/{id}', 'get'>
export type CreateSignature = Body<'/v1/threat-signatures', 'post'>
export type UpdateSignature = Body<'/v1/threat-signatures/{id}', 'patch'>
export type SignatureKind = CreateSignature['kind']
export type SignatureAction = CreateSignature['action']
export type Severity = CreateSignature['severity']
type DraftSignature = NonNullable<Body<'/v1/policies/simulate', 'post'>['signature']>

/** What each kind is, and how a daemon matches it, in one line. */
export const KINDS: Record<SignatureKind, string> = {
  domain: 'A host name: HTTP traffic to it through the daemon’s proxy (not its subdomains).',
  url: 'A URL without a path or query: its host, as a domain.',
  command: 'Text a tool call’s arguments contain (any tool), e.g. curl -d @~/.aws.',
  file_path: 'A path a tool call’s arguments contain, e.g. ~/.aws/credentials (a * only at an end).',
  mcp_tool: 'An MCP tool, by its exact name, e.g. mcp__evil__exfiltrate.',
  prompt_injection: 'Text an injected prompt carries in a tool call’s arguments.',
  flow_shape: 'What a session does: a distribution of capability transitions, matched on the server (alerts only).',
}
export const ACTIONS: readonly SignatureAction[] = ['block', 'require_approval', 'flag', 'alert']
export const SEVERITY_LIST: readonly Severity[] = ['critical', 'high', 'medium', 'low']

export interface SignatureDraft {
  name: string
  description: string
  kind: SignatureKind
  value: string
  action: SignatureAction
  severity: Severity
  scope: ScopeDraft
  /** `datetime-local` text; empty: never. */
  expires_at: string
  /** Flow shapes: one `from>to weight` per line. */
  shape: string
  max_jsd: string
  agent_types: string
  min_transitions: string
}

export const emptySignature = (): SignatureDraft => ({
  name: '',
  description: '',
  kind: 'domain',
  value: '',
  action: 'block',
  severity: 'high',
  scope: { all: true, machine_ids: [], tags: '' },
  expires_at: '',
  shape: '',
  max_jsd: '0.3',
  agent_types: '',
  min_transitions: '',
})

const localOf = (iso: string | null): string => {
  if (!iso) return ''
  const d = new Date(iso)
  return new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16)
}
const isoOf = (local: string): string | null => (local ? new Date(local).toISOString() : null)

export function fromSignature(s: Signature): SignatureDraft {
  return {
    name: s.name,
    description: s.description ?? '',
    kind: s.kind as SignatureKind,
    value: s.value ?? '',
    action: s.action as SignatureAction,
    severity: s.severity,
    scope: { all: s.scope.all, machine_ids: [...s.scope.machine_ids], tags: s.scope.tags.join(', ') },
    expires_at: localOf(s.expires_at),
    shape: Object.entries(s.flow_shape?.shape ?? {})
      .map(([k, v]) => `${k} ${v}`)
      .join('\n'),
    max_jsd: String(s.flow_shape?.max_jsd ?? ''),
    agent_types: (s.flow_shape?.agent_types ?? []).join(', '),
    min_transitions: String(s.flow_shape?.min_transitions ?? ''),
  }
}

/** `read>send 0.8` lines → `{"read>send": 0.8}`; a line that does not parse is kept as NaN for the hint. */
function shapeOf(text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const line of text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)) {
    const [key, weight] = line.split(/\s+/)
    out[key!] = weight === undefined ? NaN : Number(weight)
  }
  return out
}

const list = (s: string) => s.split(/[\s,]+/).filter(Boolean)

function flowFields(d: SignatureDraft) {
  return {
    shape: shapeOf(d.shape),
    max_jsd: Number(d.max_jsd),
    ...(list(d.agent_types).length ? { agent_types: list(d.agent_types) } : {}),
    ...(d.min_transitions.trim() ? { min_transitions: Number(d.min_transitions) } : {}),
  }
}

export function toCreate(d: SignatureDraft): CreateSignature {
  return {
    name: d.name.trim(),
    kind: d.kind,
    ...(d.kind === 'flow_shape' ? flowFields(d) : { value: d.value }),
    action: d.kind === 'flow_shape' ? 'alert' : d.action,
    severity: d.severity,
    description: d.description.trim() ? d.description : null,
    scope: scopeBody(d.scope),
    expires_at: isoOf(d.expires_at),
  }
}

/** What changed against the stored signature (a PATCH of nothing is refused). */
export function toUpdate(d: SignatureDraft, s: Signature): UpdateSignature {
  const c = toCreate(d)
  const before = toCreate(fromSignature(s))
  const out: UpdateSignature = {}
  if (c.name !== before.name) out.name = c.name
  if ((c.description ?? null) !== (before.description ?? null)) out.description = c.description ?? null
  if (c.action !== before.action) out.action = c.action
  if (c.severity !== before.severity) out.severity = c.severity
  if (JSON.stringify(c.scope) !== JSON.stringify(before.scope)) out.scope = c.scope!
  if (c.expires_at !== before.expires_at) out.expires_at = c.expires_at ?? null
  return out
}

export function toSimulated(d: SignatureDraft): DraftSignature {
  const c = toCreate(d)
  return {
    kind: c.kind,
    action: c.action,
    scope: c.scope!,
    ...(c.kind === 'flow_shape' ? flowFields(d) : { value: c.value! }),
  }
}

export function checkSignature(d: SignatureDraft, creating: boolean): FieldErrors {
  const e: FieldErrors = {}
  const add = (p: string, m: string) => (e[p] ??= []).push(m)
  if (!d.name.trim()) add('/name', 'required: what it is, as people will read it')
  if (creating && d.kind !== 'flow_shape') {
    if (!d.value) add('/value', 'required: the indicator')
    else if (d.value.length > 512) add('/value', 'at most 512 characters')
    else if (d.value.trim() !== d.value) add('/value', 'no white space at either end: it would be matched as written')
  }
  if (creating && d.kind === 'flow_shape') {
    const shape = Object.entries(shapeOf(d.shape))
    if (shape.length === 0) add('/shape', 'required: at least one line “from>to weight”')
    for (const [k, w] of shape) {
      if (!k.includes('>')) add('/shape', `${k}: write a transition as from>to, e.g. read>send`)
      if (!Number.isFinite(w) || w < 0) add('/shape', `${k}: give a weight, a number ≥ 0`)
    }
    const jsd = Number(d.max_jsd)
    if (!(jsd > 0 && jsd <= 0.5)) add('/max_jsd', 'a number above 0 and at most 0.5')
  }
  if (d.expires_at && new Date(d.expires_at).getTime() <= Date.now())
    add('/expires_at', 'in the past: it would never be enforced')
  if (!d.scope.all && d.scope.machine_ids.length === 0 && list(d.scope.tags).length === 0) {
    add('/scope', 'choose at least one machine or tag, or every machine')
  }
  return e
}

export const SIGNATURE_FIELDS = [
  '/name',
  '/description',
  '/kind',
  '/value',
  '/action',
  '/severity',
  '/scope',
  '/scope/machine_ids',
  '/scope/tags',
  '/expires_at',
  '/status',
  '/shape',
  '/max_jsd',
  '/agent_types',
  '/min_transitions',
]
