-- Portcullis state store, version 1: replay protection for OIDC token ids (jti) and upload
-- token revocations. All times are Unix seconds. Applied once, inside a transaction, by the
-- embedded migrator (recorded in `_sqlx_migrations`); never edit an applied migration, add a
-- new numbered file instead.

-- One row per (issuer, jti) that has been used. Kept until `keep_until`, then purged.
CREATE TABLE IF NOT EXISTS jti_claims (
    issuer     TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    keep_until INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
) STRICT, WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS jti_claims_keep_until ON jti_claims (keep_until);

-- Revoked upload token ids. A token is revoked while `now <= revoked_until`.
CREATE TABLE IF NOT EXISTS revoked_tokens (
    token_id      TEXT    NOT NULL PRIMARY KEY,
    revoked_until INTEGER NOT NULL,
    reason        TEXT    NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS revoked_tokens_revoked_until ON revoked_tokens (revoked_until);
