-- People of an org (issue 10): who may sign in through the org's identity provider, and with
-- which role. An invitation is a `pending` row naming an email; the first sign-in of an identity
-- whose provider vouches for that email (email_verified) binds the row to that identity
-- (issuer and subject) and makes it `active`. From then on the identity, not the email, is what
-- signs in: an address reassigned at the provider does not inherit the membership.
CREATE TABLE members (
  org_id      uuid NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
  id          uuid NOT NULL DEFAULT gen_random_uuid(),
  email       text NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 320),
  role        text NOT NULL CHECK (role IN ('owner', 'admin', 'analyst', 'viewer')),
  status      text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'active')),
  idp_issuer  text,
  idp_subject text,
  -- Who invited or last changed the member (a member id or a credential id, as in audit_log).
  invited_by  text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  joined_at   timestamptz,
  PRIMARY KEY (org_id, id),
  UNIQUE (org_id, email),
  CHECK ((idp_issuer IS NULL) = (idp_subject IS NULL)),
  CHECK ((status = 'active') = (idp_subject IS NOT NULL))
);
CREATE UNIQUE INDEX members_org_identity ON members (org_id, idp_issuer, idp_subject) WHERE idp_subject IS NOT NULL;
-- Sign-in looks an identity up before its org is known.
CREATE INDEX members_identity ON members (idp_issuer, idp_subject) WHERE idp_subject IS NOT NULL;
CREATE INDEX members_pending_email ON members (email) WHERE status = 'pending';
SELECT quint_enable_tenant_rls('members');

-- Signing in: the caller names the identity its provider vouched for (issuer, subject, and the
-- email when verified) and sees that identity's memberships and the invitations to that email,
-- nothing else; changing a row still needs the org (tenant_isolation). Naming an identity
-- requires a token the provider signed for it.
CREATE POLICY member_lookup ON members FOR SELECT USING (
  (idp_subject = NULLIF(current_setting('app.lookup_idp_subject', true), '')
   AND idp_issuer = NULLIF(current_setting('app.lookup_idp_issuer', true), ''))
  OR (status = 'pending' AND email = NULLIF(current_setting('app.lookup_verified_email', true), ''))
);
GRANT SELECT, INSERT, DELETE, UPDATE (role, status, idp_issuer, idp_subject, joined_at, invited_by) ON members TO quint_app;

-- A personal token (qt_pk_) belongs to a member and dies with the membership.
ALTER TABLE api_tokens ADD COLUMN member_id uuid;
