-- Instances without Redis poll for JWT revocations committed since their last look
-- (src/features/auth-tokens/revocation-poll.ts): revoked rows by time.
CREATE INDEX issued_tokens_revoked_at ON auth.issued_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
