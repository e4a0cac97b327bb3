-- Portcullis state store, version 3: what the deletion rules need and what they leave behind.
-- All times are Unix seconds. Nothing here is purged: tombstones and the audit log are
-- durable; download counts older than the policy's week are simply no longer summed.

-- Deleted projects, versions and files. A version or file tombstone stops the same
-- name@version (or file name) from ever being uploaded again; a project tombstone reserves
-- the name for as long as the rules say.
CREATE TABLE IF NOT EXISTS tombstones (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    registry   TEXT    NOT NULL,
    -- Normalised project name.
    project    TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('project', 'version', 'file')),
    version    TEXT,
    filename   TEXT,
    deleted_at INTEGER NOT NULL,
    request_id TEXT    NOT NULL,
    -- Who deleted: the publisher, token id or credential kind; never a secret.
    actor      TEXT    NOT NULL,
    -- The admin's reason for an override; empty otherwise.
    reason     TEXT    NOT NULL DEFAULT '',
    CHECK ((kind = 'project') = (version IS NULL)),
    CHECK ((kind = 'file') = (filename IS NOT NULL))
) STRICT;

CREATE INDEX IF NOT EXISTS tombstones_project ON tombstones (registry, project);

-- File downloads counted by the gateway, per version and UTC day (Unix seconds / 86400).
CREATE TABLE IF NOT EXISTS downloads (
    registry TEXT    NOT NULL,
    project  TEXT    NOT NULL,
    version  TEXT    NOT NULL,
    day      INTEGER NOT NULL,
    count    INTEGER NOT NULL CHECK (count >= 0),
    PRIMARY KEY (registry, project, version, day)
) STRICT;

-- The projects an upload depends on (npm `dependencies`, PyPI `requires_dist`), for counting
-- a project's dependents among the uploads the gateway committed.
CREATE TABLE IF NOT EXISTS dependencies (
    ledger_id  INTEGER NOT NULL REFERENCES ledger (id),
    depends_on TEXT    NOT NULL,
    PRIMARY KEY (ledger_id, depends_on)
) STRICT;

CREATE INDEX IF NOT EXISTS dependencies_target ON dependencies (depends_on);

-- Every decision on a delete-like request and every upload decision.
CREATE TABLE IF NOT EXISTS audit (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             INTEGER NOT NULL,
    request_id     TEXT    NOT NULL,
    registry       TEXT    NOT NULL,
    project        TEXT    NOT NULL,
    actor          TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    target         TEXT    NOT NULL,
    outcome        TEXT    NOT NULL,
    rule           TEXT    NOT NULL,
    rules_revision TEXT    NOT NULL,
    code           TEXT    NOT NULL DEFAULT '',
    reason         TEXT    NOT NULL DEFAULT '',
    -- The whole record as the JSON line the audit file got.
    line           TEXT    NOT NULL
) STRICT;

CREATE INDEX IF NOT EXISTS audit_project ON audit (registry, project, id);
