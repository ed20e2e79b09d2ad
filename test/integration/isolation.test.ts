/**
 * Tenant isolation, proven against Postgres with the service's own role (quint_app): for every
 * tenant table, org A cannot read, insert into, update or delete org B's rows; a partition named
 * directly is unreachable; with no org set every table is empty (no error); concurrent tenant
 * transactions on a small pool never see each other's context.
 */
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { hashToken } from '../../src/auth/opaque/format.ts'
import { createOrg, type CreatedOrg } from '../../src/features/orgs/service.ts'
import { assertSafeRole, UnsafeRoleError } from '../../src/infra/database.ts'
import { createPool, pgErrorCode, queryOrg, withOrg, withSettings, type Tx } from '../../src/infra/db.ts'
import { testDatabase, type TestDatabase } from '../helpers/db.ts'
import { HOOK_TIMEOUT_MS } from '../helpers/db.ts'

/** One row per tenant table for the given org; `org` is bound as a value so tests can lie about it. */
const FIXTURES: Record<string, (tx: Tx, org: string) => Promise<unknown>> = {
  'public.api_tokens': (tx, org) => tx`
    insert into api_tokens (org_id, kind, name, token_prefix, token_hash)
    values (${org}, 'service', 'fixture', 'qt_sk_', ${hashToken(crypto.randomUUID())})`,
  'public.members': (tx, org) =>
    tx`insert into members (org_id, email, role) values (${org}, ${`${crypto.randomUUID()}@example.com`}, 'viewer')`,
  'public.audit_log': (tx, org) => tx`insert into audit_log (org_id, actor_type, action) values (${org}, 'system', 'fixture')`,
  'public.machines': (tx, org) => tx`insert into machines (org_id, client_machine_id) values (${org}, ${crypto.randomUUID()})`,
  'public.agents': (tx, org) => tx`insert into agents (org_id, agent_key) values (${org}, ${crypto.randomUUID()})`,
  'public.sessions': (tx, org) => tx`insert into sessions (org_id, session_key) values (${org}, ${crypto.randomUUID()})`,
  'public.actions': (tx, org) => tx`
    insert into actions (org_id, event_key, event_id, occurred_at) values (${org}, ${crypto.randomUUID()}, 'e', now())`,
  'public.event_keys': (tx, org) => tx`
    insert into event_keys (org_id, event_key, action_id, action_created_at)
    values (${org}, ${crypto.randomUUID()}, gen_random_uuid(), now())`,
  'public.alert_rules': (tx, org) => tx`
    insert into alert_rules (org_id, name, severity, condition) values (${org}, 'r', 'high', '{}')`,
  'public.alerts': (tx, org) => tx`
    insert into alerts (org_id, rule_key, event_key, severity, title)
    values (${org}, 'builtin:fixture', ${crypto.randomUUID()}, 'high', 't')`,
  'public.enforcement_policies': (tx, org) => tx`insert into enforcement_policies (org_id, name) values (${org}, 'p')`,
  'public.signed_audit_entries': (tx, org) => tx`
    insert into signed_audit_entries (org_id, key_fingerprint, nonce, signature, chain_verified, entry)
    values (${org}, ${'f'.repeat(64)}, ${crypto.randomUUID()}, ${'a'.repeat(128)}, true, '{}')`,
  'public.active_policy_config': (tx, org) =>
    tx`insert into active_policy_config (org_id, name, version, config_json) values (${org}, 'p', 1, '{}') on conflict do nothing`,
  'public.policy_versions': (tx, org) =>
    tx`insert into policy_versions (org_id, policy_id, version, snapshot) values (${org}, ${crypto.randomUUID()}, 1, null)`,
  'public.threat_signatures': (tx, org) => tx`
    insert into threat_signatures (org_id, signature_key, name, severity, shape, max_jsd)
    values (${org}, ${crypto.randomUUID().slice(0, 12)}, 'n', 'high', '{}', 0.3)`,
  'public.session_flows': (tx, org) =>
    tx`insert into session_flows (org_id, session_key, flow) values (${org}, ${crypto.randomUUID()}, '{}')`,
  'public.fleet_cursors': (tx, org) => tx`insert into fleet_cursors (org_id, seq) values (${org}, 1) on conflict do nothing`,
  'public.fleet_events': (tx, org) =>
    tx`insert into fleet_events (org_id, seq, kind) values (${org}, ${Math.floor(Math.random() * 1e9)}, 'domains')`,
  'public.live_cursors': (tx, org) => tx`insert into live_cursors (org_id, seq) values (${org}, 1) on conflict do nothing`,
  'public.live_log': (tx, org) =>
    tx`insert into live_log (org_id, seq, kind, ids)
       values (${org}, ${Math.floor(Math.random() * 1e9)}, 'event', array[gen_random_uuid()])`,
  'public.webhooks': (tx, org) => tx`
    insert into webhooks (org_id, url, secret_ciphertext) values (${org}, 'https://hooks.example/x', '\\x00')`,
  // The webhook belongs to the transaction's org, the delivery to `org`: a cross-org attempt must be
  // refused by webhook_deliveries' own policy, not by the webhooks insert.
  'public.webhook_deliveries': async (tx, org) => {
    const [w] = await tx<{ id: string }[]>`
      insert into webhooks (org_id, url, secret_ciphertext)
      values (app_current_org(), 'https://hooks.example/y', '\\x00') returning id`
    return tx`
      insert into webhook_deliveries (org_id, webhook_id, message_id, event_type, payload)
      values (${org}, ${w!.id}, ${crypto.randomUUID()}, 'alert.created', '{}')`
  },
  'public.webhook_dispatch': (tx, org) => tx`insert into webhook_dispatch (org_id, due_at) values (${org}, now())`,
  'public.bus_batches': (tx, org) => tx`
    insert into bus_batches (org_id, kind, payload) values (${org}, 'events', '{}')`,
  // The batch belongs to the transaction's org, the pending row to `org` (see webhook_deliveries).
  'public.bus_pending': async (tx, org) => {
    const [bt] = await tx<{ id: string }[]>`
      insert into bus_batches (org_id, kind, payload) values (app_current_org(), 'events', '{}') returning id`
    return tx`insert into bus_pending (org_id, consumer, batch_id) values (${org}, 'pipeline', ${bt!.id})`
  },
  'public.session_event_keys': (tx, org) => tx`
    insert into session_event_keys (org_id, event_key) values (${org}, ${crypto.randomUUID()})`,
  'public.alert_session_state': (tx, org) => tx`
    insert into alert_session_state (org_id, session_key) values (${org}, ${crypto.randomUUID()})`,
  'public.org_ingest_stats': (tx, org) => tx`
    insert into org_ingest_stats (org_id, day) values (${org}, current_date - ${Math.floor(Math.random() * 100000)}::int)`,
  'public.event_hourly': (tx, org) => tx`
    insert into event_hourly (org_id, hour, decision, blocked, band, n)
    values (${org}, date_trunc('hour', now()) - make_interval(hours => ${Math.floor(Math.random() * 100000)}), '', false, 'none', 1)`,
  'public.event_hourly_top': (tx, org) => tx`
    insert into event_hourly_top (org_id, hour, dim, key, n) values (${org}, date_trunc('hour', now()), 'tool', ${crypto.randomUUID()}, 1)`,
  'public.ingest_stats': (tx, org) => tx`
    insert into ingest_stats (org_id, day, shard) values (${org}, current_date - ${Math.floor(Math.random() * 100000)}::int, 0)`,
  // The machine belongs to the transaction's org, the inventory row to `org` (see webhook_deliveries).
  'public.bus_dead_letters': (tx, org) => tx`
    insert into bus_dead_letters (org_id, consumer, source, message_id, kind, payload, attempts, error_class, error_message, first_failed_at, last_failed_at)
    values (${org}, 'pipeline', 'local', ${crypto.randomUUID()}, 'events', '{}', 1, 'Error', 'fixture', now(), now())`,
  'public.idempotency_keys': (tx, org) => tx`
    insert into idempotency_keys (org_id, credential, key, method, path, fingerprint, claim, expires_at)
    values (${org}, 'fixture', ${crypto.randomUUID()}, 'POST', '/v1/x', ${Buffer.alloc(32)}, gen_random_uuid(), now() + interval '1 day')`,
  'public.machine_processes': async (tx, org) => {
    const [m] = await tx<{ id: string }[]>`
      insert into machines (org_id, client_machine_id) values (app_current_org(), ${crypto.randomUUID()}) returning id`
    return tx`
      insert into machine_processes (org_id, machine_id, platform, pid, state) values (${org}, ${m!.id}, 'claude-code', 1, 'running')`
  },
  'public.machine_graphs': async (tx, org) => {
    const [m] = await tx<{ id: string }[]>`
      insert into machines (org_id, client_machine_id) values (app_current_org(), ${crypto.randomUUID()}) returning id`
    return tx`insert into machine_graphs (org_id, machine_id, graph_id) values (${org}, ${m!.id}, 'g-1')`
  },
  'auth.signing_keys': (tx, org) => tx`
    insert into auth.signing_keys (org_id, kid, status, public_jwk, public_pem, private_key_ciphertext)
    values (${org}, ${crypto.randomUUID().replace(/-/g, '')}, 'retired', '{}', 'pem', '\\x00')`,
  'auth.issued_tokens': (tx, org) => tx`
    insert into auth.issued_tokens (org_id, jti, token_type, kid, claims, expires_at)
    values (${org}, gen_random_uuid(), 'app', 'kid', '{}', now() + interval '1 hour')`,
  'auth.revocation_log': (tx, org) => tx`
    insert into auth.revocation_log (org_id, jti, token_type) values (${org}, gen_random_uuid(), 'app')`,
  // The override token belongs to the transaction's org, the decision to `org` (see webhook_deliveries).
  'auth.override_decisions': async (tx, org) => {
    const [o] = await tx<{ jti: string }[]>`
      insert into auth.issued_tokens (org_id, jti, token_type, kid, claims, expires_at)
      values (app_current_org(), gen_random_uuid(), 'override', 'kid', '{}', now() + interval '5 minutes') returning jti`
    return tx`
      insert into auth.override_decisions (org_id, event_id, override_jti, decision, cosignature, decided_by)
      values (${org}, 'evt-fixture', ${o!.jti}, 'approve', ${'0'.repeat(64)}, 'fixture')`
  },
}
const TABLES = Object.keys(FIXTURES)

let db: TestDatabase
let a: CreatedOrg
let b: CreatedOrg

/** Counts every row of a table bypassing RLS (owner is a superuser on the test servers). */
async function ownerCount(table: string, org: string): Promise<number> {
  const [row] = await db.owner.unsafe(`select count(*)::int as n from ${table} where org_id = $1`, [org])
  return row!.n as number
}

/** Runs `fn` as org A and returns the SQLSTATE it failed with, or null when it succeeded. */
async function asA<T>(fn: (tx: Tx) => Promise<T>): Promise<{ code: string | null; value?: T }> {
  try {
    return { code: null, value: await withOrg(db.app, a.org_id, fn) }
  } catch (err) {
    const code = pgErrorCode(err)
    if (!code) throw err
    return { code }
  }
}

beforeAll(async () => {
  db = await testDatabase()
  a = await createOrg(db.app, 'org A', 'cli')
  b = await createOrg(db.app, 'org B', 'cli')
  for (const org of [a, b]) {
    await withOrg(db.app, org.org_id, async (tx) => {
      for (const insert of Object.values(FIXTURES)) await insert(tx, org.org_id)
    })
  }
}, HOOK_TIMEOUT_MS)

afterAll(async () => {
  await db.drop()
}, HOOK_TIMEOUT_MS)

describe('catalog', () => {
  test('every table with an org_id column (any schema) is covered here, has RLS enabled and forced, and exactly the tenant policy', async () => {
    const rows = await db.owner<{ name: string; rls: boolean; forced: boolean }[]>`
      select n.nspname || '.' || c.relname as name, c.relrowsecurity as rls, c.relforcerowsecurity as forced
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where c.relkind in ('r', 'p') and not c.relispartition
         and n.nspname not in ('pg_catalog', 'information_schema') and n.nspname not like 'pg_toast%'
         and exists (select 1 from pg_attribute at where at.attrelid = c.oid and at.attname = 'org_id' and not at.attisdropped)
       order by 1`
    expect(rows.map((r) => r.name).sort()).toEqual([...TABLES].sort())
    const policies = await db.owner<
      { name: string; policy: string; cmd: string; permissive: string; qual: string; check: string | null }[]
    >`
      select schemaname || '.' || tablename as name, policyname as policy, cmd, permissive,
             qual, with_check as check
        from pg_policies order by 1, 2`
    for (const r of rows) {
      expect({ table: r.name, rls: r.rls, forced: r.forced }).toEqual({ table: r.name, rls: true, forced: true })
      const mine = policies.filter((p) => p.name === r.name)
      const expected = [
        {
          name: r.name,
          policy: 'tenant_isolation',
          cmd: 'ALL',
          permissive: 'PERMISSIVE',
          qual: '(org_id = app_current_org())',
          check: '(org_id = app_current_org())',
        },
        ...(r.name === 'public.api_tokens'
          ? [
              {
                name: r.name,
                policy: 'token_lookup',
                cmd: 'SELECT',
                permissive: 'PERMISSIVE',
                qual: '(token_hash = app_lookup_token_hash())',
                check: null,
              },
            ]
          : []),
        // Sign-in names an identity before its org is known (sql/0022_members.sql).
        ...(r.name === 'public.members'
          ? [
              {
                name: r.name,
                policy: 'member_lookup',
                cmd: 'SELECT',
                permissive: 'PERMISSIVE',
                qual: "(((idp_subject = NULLIF(current_setting('app.lookup_idp_subject'::text, true), ''::text)) AND (idp_issuer = NULLIF(current_setting('app.lookup_idp_issuer'::text, true), ''::text))) OR ((status = 'pending'::text) AND (email = NULLIF(current_setting('app.lookup_verified_email'::text, true), ''::text))))",
                check: null,
              },
            ]
          : []),
        ...(r.name === 'public.webhook_dispatch'
          ? [
              {
                name: r.name,
                policy: 'webhook_discovery',
                cmd: 'SELECT',
                permissive: 'PERMISSIVE',
                qual: "(NULLIF(current_setting('app.webhook_dispatcher'::text, true), ''::text) = 'on'::text)",
                check: null,
              },
            ]
          : []),
        // Filling the JWT revocation filter reads revoked rows of every org (sql/0012_auth_tokens.sql).
        ...(r.name === 'auth.issued_tokens'
          ? [
              {
                name: r.name,
                policy: 'revocation_filter_read',
                cmd: 'SELECT',
                permissive: 'PERMISSIVE',
                qual: "((revoked_at IS NOT NULL) AND (current_setting('app.revocation_filter_read'::text, true) = 'on'::text))",
                check: null,
              },
            ]
          : []),
        // Operators list every org's dead letters (CLI, the waiting gauge): sql/0015_dead_letters.sql.
        ...(r.name === 'public.bus_dead_letters'
          ? [
              {
                name: r.name,
                policy: 'dead_letter_discovery',
                cmd: 'SELECT',
                permissive: 'PERMISSIVE',
                qual: "(NULLIF(current_setting('app.dead_letter_discovery'::text, true), ''::text) = 'on'::text)",
                check: null,
              },
            ]
          : []),
        ...(r.name === 'public.bus_pending'
          ? [
              {
                name: r.name,
                policy: 'bus_discovery',
                cmd: 'SELECT',
                permissive: 'PERMISSIVE',
                qual: "(consumer = NULLIF(current_setting('app.bus_consumer'::text, true), ''::text))",
                check: null,
              },
            ]
          : []),
      ]
      expect(mine).toEqual(expected.sort((x, y) => x.policy.localeCompare(y.policy)))
    }
    const [org] = await db.owner<{ rls: boolean; forced: boolean }[]>`
      select relrowsecurity as rls, relforcerowsecurity as forced from pg_class where oid = 'public.organizations'::regclass`
    expect(org).toEqual({ rls: true, forced: true })
  })

  test('the runtime role is not superuser, not BYPASSRLS and owns nothing; an unsafe role is refused', async () => {
    const [role] = await db.app<{ user: string; superuser: boolean; bypass: boolean }[]>`
      select current_user as user, rolsuper as superuser, rolbypassrls as bypass from pg_roles where rolname = current_user`
    expect(role).toEqual({ user: 'quint_app', superuser: false, bypass: false })
    const [owned] = await db.owner<{ n: number }[]>`
      select count(*)::int as n from pg_class where relowner = (select oid from pg_roles where rolname = 'quint_app')`
    expect(owned!.n).toBe(0)
    await assertSafeRole(db.app)
    // The owner connection of the test server is a superuser: start-up must refuse it.
    expect(assertSafeRole(db.owner)).rejects.toBeInstanceOf(UnsafeRoleError)
  })

  test('a runtime role that is a member of the tables owner is refused', async () => {
    const role = `quint_t_member_${crypto.randomUUID().slice(0, 8)}`
    const [owner] = await db.owner<{ owner: string }[]>`
      select pg_get_userbyid(relowner) as owner from pg_class where oid = 'public.sessions'::regclass`
    await db.owner.unsafe(`create role ${role} login password 'member-pw' nosuperuser nobypassrls`)
    await db.owner.unsafe(`grant ${owner!.owner} to ${role}`)
    const target =
      'url' in db.appTarget
        ? (() => {
            const u = new URL(db.appTarget.url)
            u.username = role
            u.password = 'member-pw'
            return { url: u.toString() }
          })()
        : { ...db.appTarget, user: role, password: 'member-pw' }
    const member = createPool(target, { max: 1 })
    try {
      await expect(assertSafeRole(member)).rejects.toThrow('member of the owner')
    } finally {
      await member.end()
      await db.owner.unsafe(`drop role ${role}`)
    }
  })

  test('every unique key on a tenant table includes org_id (token_hash is the documented exception)', async () => {
    const rows = await db.owner<{ index: string; columns: string[] }[]>`
      select i.indexrelid::regclass::text as index,
             array(select a.attname::text from unnest(i.indkey) k join pg_attribute a
                    on a.attrelid = i.indrelid and a.attnum = k) as columns
        from pg_index i join pg_class c on c.oid = i.indrelid join pg_namespace n on n.oid = c.relnamespace
       where i.indisunique and n.nspname in ('public', 'auth') and not c.relispartition
         and exists (select 1 from pg_attribute at where at.attrelid = c.oid and at.attname = 'org_id')`
    expect(rows.length).toBeGreaterThan(10)
    const offenders = rows.filter((r) => !r.columns.includes('org_id')).map((r) => r.index)
    expect(offenders).toEqual(['api_tokens_token_hash_key'])
  })
})

describe.each(TABLES)('%s', (table) => {
  test('org A reads only its own rows', async () => {
    const rows = await withOrg(db.app, a.org_id, (tx) => tx.unsafe(`select org_id from ${table}`))
    expect(rows.length).toBeGreaterThan(0)
    expect(new Set(rows.map((r) => r.org_id))).toEqual(new Set([a.org_id]))
    const [other] = await withOrg(db.app, a.org_id, (tx) =>
      tx.unsafe(`select count(*)::int as n from ${table} where org_id = $1`, [b.org_id]),
    )
    expect(other!.n).toBe(0)
  })

  test('org A cannot insert a row into org B', async () => {
    const before = await ownerCount(table, b.org_id)
    const result = await asA((tx) => FIXTURES[table]!(tx, b.org_id))
    expect(result.code).toBe('42501') // RLS WITH CHECK violation or missing privilege
    expect(await ownerCount(table, b.org_id)).toBe(before)
  })

  test("org A cannot update org B's rows, nor move its own rows to org B", async () => {
    const before = await ownerCount(table, b.org_id)
    const other = await asA((tx) => tx.unsafe(`update ${table} set org_id = org_id where org_id = $1`, [b.org_id]))
    // Either refused outright (no UPDATE privilege on org_id) or it matched nothing.
    expect(other.code === '42501' || other.value?.count === 0).toBe(true)
    const move = await asA((tx) => tx.unsafe(`update ${table} set org_id = $1`, [b.org_id]))
    expect(move.code).toBe('42501')
    expect(await ownerCount(table, b.org_id)).toBe(before)
  })

  test("org A cannot delete org B's rows", async () => {
    const before = await ownerCount(table, b.org_id)
    const result = await asA((tx) => tx.unsafe(`delete from ${table} where org_id = $1`, [b.org_id]))
    expect(result.code === '42501' || result.value?.count === 0).toBe(true)
    expect(before).toBeGreaterThan(0)
    expect(await ownerCount(table, b.org_id)).toBe(before)
  })

  test('with no org set, the table is empty and the query does not fail', async () => {
    const [row] = await db.app.unsafe(`select count(*)::int as n from ${table}`)
    expect(row!.n).toBe(0)
    // A pooled connection that once had the setting reports '' rather than NULL: still nothing.
    const [again] = await withSettings(db.app, { 'app.current_org_id': '' }, (tx) =>
      tx.unsafe(`select count(*)::int as n from ${table}`),
    )
    expect(again!.n).toBe(0)
  })
})

describe('organizations', () => {
  test('an org sees only itself, cannot create rows for another id, update or delete another org', async () => {
    const rows = await withOrg(db.app, a.org_id, (tx) => tx<{ id: string }[]>`select id from organizations`)
    expect(rows.map((r) => r.id)).toEqual([a.org_id])
    const insert = await asA((tx) => tx`insert into organizations (id, name) values (${crypto.randomUUID()}, 'x')`)
    expect(insert.code).toBe('42501')
    const update = await asA((tx) => tx`update organizations set name = 'pwned' where id = ${b.org_id}`)
    expect(update.value?.count).toBe(0)
    const del = await asA((tx) => tx`delete from organizations where id = ${b.org_id}`)
    expect(del.code).toBe('42501') // quint_app has no DELETE on organizations
    const [name] = await db.owner<{ name: string }[]>`select name from organizations where id = ${b.org_id}`
    expect(name!.name).toBe('org B')
    const [none] = await db.app<{ n: number }[]>`select count(*)::int as n from organizations`
    expect(none!.n).toBe(0)
  })
})

describe('partitions', () => {
  test('a partition named directly is unreachable for the runtime role', async () => {
    const parts = await db.owner<{ name: string; rls: boolean; forced: boolean }[]>`
      select c.relname as name, c.relrowsecurity as rls, c.relforcerowsecurity as forced
        from pg_inherits i join pg_class c on c.oid = i.inhrelid
       where i.inhparent = 'public.actions'::regclass order by 1`
    // Current month plus PARTITION_MONTHS_AHEAD (2 in tests).
    expect(parts.length).toBe(3)
    for (const p of parts) {
      expect(p.rls && p.forced).toBe(true)
      const read = await asA((tx) => tx.unsafe(`select count(*) from ${p.name}`))
      expect(read.code).toBe('42501')
      const write = await asA((tx) =>
        tx.unsafe(`insert into ${p.name} (org_id, event_key, event_id, occurred_at) values ($1, 'x', 'x', now())`, [a.org_id]),
      )
      expect(write.code).toBe('42501')
      const [plain] = await db.app.unsafe(`select has_table_privilege('${p.name}', 'select') as ok`)
      expect(plain!.ok).toBe(false)
    }
  })

  test('rows written through the parent land in the current month partition', async () => {
    const [row] = await db.owner<{ part: string }[]>`
      select tableoid::regclass::text as part from actions where org_id = ${a.org_id} limit 1`
    const now = new Date()
    const month = `${now.getUTCFullYear()}${String(now.getUTCMonth() + 1).padStart(2, '0')}`
    expect(row!.part).toBe(`actions_${month}`)
  })
})

describe('client-fed keys', () => {
  test('two orgs may use the same session id and event key without colliding', async () => {
    for (const org of [a, b]) {
      await withOrg(db.app, org.org_id, async (tx) => {
        await tx`insert into sessions (org_id, session_key) values (${org.org_id}, 'shared-session')`
        await tx`insert into event_keys (org_id, event_key, action_id, action_created_at)
                 values (${org.org_id}, 'shared-event', gen_random_uuid(), now())`
      })
    }
    const [n] = await db.owner<{ n: number }[]>`select count(*)::int as n from event_keys where event_key = 'shared-event'`
    expect(n!.n).toBe(2)
  })
})

describe('credential lookup policy', () => {
  test('naming a token hash shows exactly that token and allows no writes', async () => {
    const hex = hashToken(a.admin_key).toString('hex')
    const rows = await withSettings(
      db.app,
      { 'app.lookup_token_hash': hex },
      (tx) => tx<{ org_id: string; kind: string }[]>`select org_id, kind from api_tokens`,
    )
    expect([...rows]).toEqual([{ org_id: a.org_id, kind: 'api_key' }])
    const changed = await withSettings(
      db.app,
      { 'app.lookup_token_hash': hex },
      (tx) => tx`update api_tokens set revoked_at = now()`,
    )
    expect(changed.count).toBe(0)
    const other = await withSettings(
      db.app,
      { 'app.lookup_token_hash': hashToken('qk_nothing').toString('hex') },
      (tx) => tx`select 1 from api_tokens`,
    )
    expect(other.length).toBe(0)
  })
})

describe('bus discovery policy', () => {
  test("a named consumer sees every org's pending ids for itself only, never payloads, and can change nothing", async () => {
    const seen = await withSettings(
      db.app,
      { 'app.bus_consumer': 'pipeline' },
      (tx) => tx<{ org_id: string; consumer: string }[]>`select org_id, consumer from bus_pending`,
    )
    expect(new Set(seen.map((r) => r.org_id))).toEqual(new Set([a.org_id, b.org_id]))
    expect(new Set(seen.map((r) => r.consumer))).toEqual(new Set(['pipeline']))
    const other = await withSettings(db.app, { 'app.bus_consumer': 'alerts' }, (tx) => tx`select 1 from bus_pending`)
    expect(other.length).toBe(0)
    const payloads = await withSettings(db.app, { 'app.bus_consumer': 'pipeline' }, (tx) => tx`select 1 from bus_batches`)
    expect(payloads.length).toBe(0)
    const deleted = await withSettings(db.app, { 'app.bus_consumer': 'pipeline' }, (tx) => tx`delete from bus_pending`)
    expect(deleted.count).toBe(0)
  })
})

describe('queryOrg (one statement, one round trip)', () => {
  test('rejects a non-UUID org id before touching the database', async () => {
    expect(queryOrg(db.app, "x' or true --", (tx) => tx`select 1`)).rejects.toThrow(TypeError)
  })

  test("reads only the org's rows, with the settings applied and gone after", async () => {
    const rows = await queryOrg(
      db.app,
      a.org_id,
      (tx) => tx<{ org_id: string; org: string; mode: string }[]>`
        select org_id, current_setting('app.current_org_id') as org, current_setting('plan_cache_mode') as mode from sessions`,
      { genericPlans: true },
    )
    expect(rows.length).toBeGreaterThan(0)
    expect(new Set(rows.map((r) => r.org_id))).toEqual(new Set([a.org_id]))
    expect(rows[0]).toMatchObject({ org: a.org_id, mode: 'force_generic_plan' })
    // Transaction-local: the connection goes back to the pool without them.
    const after = await db.app.reserve()
    try {
      const [left] = await after<{ org: string | null; mode: string }[]>`
        select current_setting('app.current_org_id', true) as org, current_setting('plan_cache_mode') as mode`
      expect(left!.org ?? '').toBe('')
      expect(left!.mode).toBe('auto')
    } finally {
      after.release()
    }
  })

  test('a failing statement rejects with its own error and leaves the connection clean', async () => {
    const small = await testDatabase({ poolMax: 1 })
    try {
      const org = await createOrg(small.app, 'q1', 'cli')
      await expect(queryOrg(small.app, org.org_id, (tx) => tx`select 1/0`)).rejects.toThrow('division by zero')
      // The one connection is out of the aborted transaction: the next statement runs.
      const [ok] = await queryOrg(small.app, org.org_id, (tx) => tx<{ n: number }[]>`select 1 as n`)
      expect(ok!.n).toBe(1)
      const [state] = await small.app<{ s: string }[]>`select current_setting('app.current_org_id', true) as s`
      expect(state!.s ?? '').toBe('')
    } finally {
      await small.drop()
    }
  })
})

describe('withOrg', () => {
  test('rejects a non-UUID org id before touching the database', async () => {
    expect(withOrg(db.app, "x' or true --", async () => 1)).rejects.toThrow(TypeError)
  })

  test('rolls back when the callback throws', async () => {
    const key = crypto.randomUUID()
    await expect(
      withOrg(db.app, a.org_id, async (tx) => {
        await tx`insert into sessions (org_id, session_key) values (${a.org_id}, ${key})`
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    const [n] = await db.owner<{ n: number }[]>`select count(*)::int as n from sessions where session_key = ${key}`
    expect(n!.n).toBe(0)
  })

  test('reports a transaction the server rolled back even if the callback swallowed the error', async () => {
    await expect(
      withOrg(db.app, a.org_id, async (tx) => {
        await tx`select 1/0`.catch(() => {})
      }),
    ).rejects.toThrow('rolled back')
  })

  test('concurrent tenant transactions on a saturated pool never share a context', async () => {
    const small = await testDatabase({ poolMax: 3 })
    try {
      const orgs = await Promise.all(['c1', 'c2', 'c3', 'c4'].map((n) => createOrg(small.app, n, 'cli')))
      for (const org of orgs) {
        await withOrg(small.app, org.org_id, (tx) => tx`insert into sessions (org_id, session_key) values (${org.org_id}, 'k')`)
      }
      const work: Promise<void>[] = []
      for (let i = 0; i < 400; i++) {
        const org = orgs[i % orgs.length]!
        work.push(
          withOrg(small.app, org.org_id, async (tx) => {
            const [ctx] = await tx<{ org: string }[]>`select current_setting('app.current_org_id') as org`
            const seen = await tx<{ org_id: string }[]>`select org_id from sessions`
            if (i % 7 === 0) await tx`select pg_sleep(0.002)`
            const [again] = await tx<{ org: string }[]>`select current_setting('app.current_org_id') as org`
            expect(ctx!.org).toBe(org.org_id)
            expect(again!.org).toBe(org.org_id)
            expect(seen.map((r) => r.org_id)).toEqual([org.org_id])
          }),
        )
        // Untenanted queries interleaved on the same pool: if one ever ran inside another
        // request's transaction it would see that org's rows.
        if (i % 3 === 0) {
          work.push(
            small.app`select count(*)::int as n from sessions`.then(([r]) => {
              expect(r!.n).toBe(0)
            }),
          )
        }
      }
      await Promise.all(work)
    } finally {
      await small.drop()
    }
  })
})
