/**
 * @module features/signatures/distil
 * Detections distilled into the fleet's prevention (issue 11; docs/threat-signatures.md): when
 * the alerts consumer raises an alert of the credential or exfiltration kind, the concrete
 * indicator behind it becomes a threat signature, in the same transaction as the alert.
 *
 * - `builtin:outbound_after_credential_read` (critical): the destination host the session
 *   connected to after reading a credential → a `domain` signature, `block`, **active at once**:
 *   every daemon blocks that host from its next policy fetch.
 * - `builtin:credential_read` (high): the credential file read → a `file_path` signature,
 *   `block`, **proposed**: enforced once an admin accepts it (`PATCH … {"status": "active"}`),
 *   since blocking a path every developer may need is not a call to make alone.
 *
 * - `signature:<shape>` (a flow shape matched, docs/flow-shapes.md): from the event that completed
 *   the shape, its destination host when it sent data out (`domain`), else its exact command line
 *   when it ran, deleted or sent something (`command`); `block`. A shape completed by anything
 *   else (Reconnaissance ends on a listing) names no indicator and distils nothing.
 *
 * Enforced at once is only a destination host of a critical detection, and never one of the
 * shared services every developer needs (a hostile or unlucky session must not be able to block
 * github.com for the fleet); commands, paths and everything less critical are proposed. Values
 * pass the create route's own checks; redacted text and credentials in URLs are never distilled.
 *
 * One signature per org and indicator (a second detection of the same host adds nothing); each
 * names the alert it came from and is audited as made by the system. A host that is an IP
 * address, or loopback, is not distilled (the daemon names HTTP by host name).
 */
import { createHash } from 'node:crypto'
import type { Tx } from '../../infra/db.ts'
import { recordAudit } from '../audit/repo.ts'
import { indicator } from './definition.ts'
import { SHAPE_RULE_PREFIX } from './flow-match.ts'
import type { InsertedAlert } from '../webhooks/queue.ts'
import { announceSignature, insertSignature, signatureView } from './repo.ts'

const HOST = /^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+([a-z]{2,63}|xn--[a-z0-9-]{1,59})$/
const LOCAL = /(^|\.)(localhost|local|internal)$/

/** The destination host in an outbound detail: an `http:{host}:…` action, or the first http(s) URL. */
export function destinationHost(detail: string): string | null {
  const action = /^http:([^:\s]+):/.exec(detail)
  const url = action ? null : /https?:\/\/([^/\s:'"?#@]+)/i.exec(detail)
  const host = (action?.[1] ?? url?.[1] ?? '').toLowerCase()
  return HOST.test(host) && !LOCAL.test(host) ? host : null
}

interface Distilled {
  kind: 'domain' | 'file_path' | 'command'
  value: string
  status: 'active' | 'proposed'
  name: string
  severity: string
}

/**
 * Hosts every developer needs (source forges, package registries, model providers): a detection
 * on one machine never blocks them fleet-wide on its own, however critical; it is proposed.
 */
const SHARED_SERVICES = [
  'github.com',
  'githubusercontent.com',
  'gitlab.com',
  'bitbucket.org',
  'npmjs.org',
  'npmjs.com',
  'yarnpkg.com',
  'pypi.org',
  'pythonhosted.org',
  'crates.io',
  'golang.org',
  'rubygems.org',
  'maven.org',
  'docker.io',
  'docker.com',
  'ghcr.io',
  'anthropic.com',
  'openai.com',
  'googleapis.com',
]
const shared = (host: string) => SHARED_SERVICES.some((d) => host === d || host.endsWith(`.${d}`))

/**
 * The value as a signature of `kind` would hold it, or null: what the create route would refuse,
 * what went through redaction (it would never match, and it marks where a secret was), and
 * credentials written into a URL are never distilled.
 */
function checked(kind: Distilled['kind'], raw: string): string | null {
  if (raw.includes('[REDACTED') || /:\/\/[^/\s@]*@/.test(raw)) return null
  try {
    return indicator(kind, raw)
  } catch {
    return null
  }
}

/**
 * The rule (docs/threat-signatures.md "Distilled from detections"): enforced at once only a
 * destination host of a critical detection that is not a shared service; everything else
 * (commands and paths, whatever the severity) is proposed for an admin to accept.
 */
function distilled(kind: Distilled['kind'], raw: string, alert: InsertedAlert, name: (v: string) => string): Distilled | null {
  const value = checked(kind, raw)
  if (value === null) return null
  const enforced = kind === 'domain' && alert.severity === 'critical' && !shared(value)
  return { kind, value, status: enforced ? 'active' : 'proposed', name: name(value), severity: alert.severity }
}

function indicatorOf(alert: InsertedAlert): Distilled | null {
  const context = (alert.context ?? {}) as { detail?: unknown; capability?: unknown; shape_name?: unknown }
  const detail = typeof context.detail === 'string' ? context.detail : null
  if (detail === null) return null
  if (alert.rule_key.startsWith(SHAPE_RULE_PREFIX)) {
    const shape = String(context.shape_name ?? alert.rule_key)
    const host = context.capability === 'send' ? destinationHost(detail) : null
    if (host) return distilled('domain', host, alert, (v) => `${shape}: host ${v}`)
    if (!['execute', 'delete', 'send'].includes(String(context.capability))) return null
    return distilled('command', detail.trim(), alert, (v) => `${shape}: ${v}`)
  }
  if (alert.rule_key === 'builtin:outbound_after_credential_read') {
    const host = destinationHost(detail)
    return host ? distilled('domain', host, alert, (v) => `Exfiltration host ${v}`) : null
  }
  if (alert.rule_key === 'builtin:credential_read') {
    return distilled('file_path', detail, alert, (v) => `Credential read ${v}`)
  }
  return null
}

/** Distils the alerts just inserted (runs in the alerts consumer's transaction). */
export async function distilAlerts(tx: Tx, alerts: readonly InsertedAlert[]): Promise<number> {
  let made = 0
  for (const alert of alerts) {
    const found = indicatorOf(alert)
    if (!found) continue
    const row = await insertSignature(
      tx,
      `${found.kind}:${createHash('sha256').update(found.value).digest('hex').slice(0, 40)}`,
      found.kind,
      { value: found.value },
      {
        name: found.name.slice(0, 200),
        description: `Distilled from alert ${alert.id} (${alert.rule_key}).`,
        action: 'block',
        severity: found.severity,
        status: found.status,
        machineIds: [],
        tags: [],
        expiresAt: null,
      },
      null,
      { source: 'distilled', sourceAlertId: alert.id },
    )
    if (!row) continue
    made++
    await announceSignature(tx, row)
    await recordAudit(tx, {
      actorType: 'system',
      action: 'threat_signature.distil',
      targetType: 'threat_signature',
      targetId: row.id,
      details: { alert_id: alert.id, before: null, after: signatureView(row) },
    })
  }
  return made
}
