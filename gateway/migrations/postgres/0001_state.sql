-- Portcullis state store on PostgreSQL, version 1: the whole schema of the SQLite store's
-- migrations 1 to 4 (replay records, revocations, the publish ledger, tombstones, downloads,
-- dependencies, the audit log). All times are Unix seconds. Applied once, inside a
-- transaction and under sqlx's advisory lock (replicas starting together wait for each other),
-- by the embedded migrator (recorded in `_sqlx_migrations`); never edit an applied migration,
-- add a new numbered file instead.

CREATE TABLE IF NOT EXISTS jti_claims (
    issuer     TEXT   NOT NULL,
    jti        TEXT   NOT NULL,
    keep_until BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);

CREATE INDEX IF NOT EXISTS jti_claims_keep_until ON jti_claims (keep_until);

-- A token is revoked while `now <= revoked_until`.
CREATE TABLE IF NOT EXISTS revoked_tokens (
    token_id      TEXT   NOT NULL PRIMARY KEY,
    revoked_until BIGINT NOT NULL,
    reason        TEXT   NOT NULL
);

CREATE INDEX IF NOT EXISTS revoked_tokens_revoked_until ON revoked_tokens (revoked_until);

-- One row per upload: pending before the last bytes go to the backend, then committed or
-- failed exactly once. Never purged.
CREATE TABLE IF NOT EXISTS ledger (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registry          TEXT   NOT NULL,
    project           TEXT   NOT NULL,
    version           TEXT   NOT NULL,
    filename          TEXT   NOT NULL,
    sha256            TEXT   NOT NULL,
    size              BIGINT NOT NULL CHECK (size >= 0),
    credential        TEXT   NOT NULL,
    publisher         TEXT,
    signer            TEXT,
    source_repository TEXT,
    provenance_kind   TEXT,
    provenance        BYTEA,
    request_id        TEXT   NOT NULL,
    created_at        BIGINT NOT NULL,
    state             TEXT   NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'committed', 'failed')),
    finished_at       BIGINT,
    detail            TEXT   NOT NULL DEFAULT '',
    CHECK ((provenance IS NULL) = (provenance_kind IS NULL)),
    CHECK ((state = 'pending') = (finished_at IS NULL))
);

CREATE INDEX IF NOT EXISTS ledger_file ON ledger (registry, project, version, filename);
CREATE INDEX IF NOT EXISTS ledger_state_created_at ON ledger (state, created_at);
CREATE INDEX IF NOT EXISTS ledger_committed_provenance ON ledger (registry, project)
    WHERE state = 'committed' AND provenance IS NOT NULL;
CREATE INDEX IF NOT EXISTS ledger_committed_sources ON ledger (registry, project, source_repository, created_at, id)
    WHERE state = 'committed' AND source_repository IS NOT NULL;
CREATE INDEX IF NOT EXISTS ledger_committed_versions ON ledger (registry, project, version, created_at)
    WHERE state = 'committed';

CREATE TABLE IF NOT EXISTS tombstones (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    registry   TEXT   NOT NULL,
    project    TEXT   NOT NULL,
    kind       TEXT   NOT NULL CHECK (kind IN ('project', 'version', 'file')),
    version    TEXT,
    filename   TEXT,
    deleted_at BIGINT NOT NULL,
    request_id TEXT   NOT NULL,
    actor      TEXT   NOT NULL,
    reason     TEXT   NOT NULL DEFAULT '',
    CHECK ((kind = 'project') = (version IS NULL)),
    CHECK ((kind = 'file') = (filename IS NOT NULL))
);

CREATE INDEX IF NOT EXISTS tombstones_project ON tombstones (registry, project);

CREATE TABLE IF NOT EXISTS downloads (
    registry TEXT   NOT NULL,
    project  TEXT   NOT NULL,
    version  TEXT   NOT NULL,
    day      BIGINT NOT NULL,
    count    BIGINT NOT NULL CHECK (count >= 0),
    PRIMARY KEY (registry, project, version, day)
);

CREATE TABLE IF NOT EXISTS dependencies (
    ledger_id  BIGINT NOT NULL REFERENCES ledger (id),
    depends_on TEXT   NOT NULL,
    PRIMARY KEY (ledger_id, depends_on)
);

CREATE INDEX IF NOT EXISTS dependencies_target ON dependencies (depends_on);

CREATE TABLE IF NOT EXISTS audit (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at             BIGINT NOT NULL,
    request_id     TEXT   NOT NULL,
    registry       TEXT   NOT NULL,
    project        TEXT   NOT NULL,
    actor          TEXT   NOT NULL,
    action         TEXT   NOT NULL,
    target         TEXT   NOT NULL,
    outcome        TEXT   NOT NULL,
    rule           TEXT   NOT NULL,
    rules_revision TEXT   NOT NULL,
    code           TEXT   NOT NULL DEFAULT '',
    reason         TEXT   NOT NULL DEFAULT '',
    line           TEXT   NOT NULL
);

CREATE INDEX IF NOT EXISTS audit_project ON audit (registry, project, id);
