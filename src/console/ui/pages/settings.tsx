/**
 * @module console/ui/pages/settings
 * The organization's settings (`#/settings?tab=…`): members and roles, tokens, webhooks, data
 * retention and the audit log, one tab each; the tab is in the address so a link opens it.
 * Write controls show only to an identity that may use them (`can()`), and the API's refusal
 * (403) is shown as it came whenever it disagrees.
 */
import { PageHeader } from '../components/common.tsx'
import { href } from '../router.ts'
import type { PageProps } from '../session.ts'
import { AuditTab } from './settings-audit.tsx'
import { MembersTab } from './settings-members.tsx'
import { RetentionTab } from './settings-retention.tsx'
import { TokensTab } from './settings-tokens.tsx'
import { WebhooksTab } from './settings-webhooks.tsx'

const TABS = [
  { id: 'members', label: 'Members', tab: MembersTab },
  { id: 'tokens', label: 'Tokens', tab: TokensTab },
  { id: 'webhooks', label: 'Webhooks', tab: WebhooksTab },
  { id: 'retention', label: 'Retention', tab: RetentionTab },
  { id: 'audit', label: 'Audit log', tab: AuditTab },
] as const

export function Settings({ route }: PageProps) {
  const current = TABS.find((t) => t.id === route.query.get('tab')) ?? TABS[0]
  const Tab = current.tab
  return (
    <section aria-label="Settings">
      <PageHeader title="Settings" />
      {/* Links, not an ARIA tablist: each tab is its own address, and the browser's Back works. */}
      <nav class="tabs" aria-label="Settings sections">
        {TABS.map((t) => (
          <a key={t.id} href={href(['settings'], { tab: t.id })} aria-current={t === current ? 'page' : undefined}>
            {t.label}
          </a>
        ))}
      </nav>
      <Tab route={route} />
    </section>
  )
}
