-- Portcullis state store, version 5: the TUF feed's outbox. Every upload the backend committed
-- and every file deletion it performed, for a registry fed to a Repository Service for TUF, is
-- queued here in the same transaction that records it, and sent from here in id order by the
-- one replica that holds the registry's lease. Rows are finished once ('done' or 'failed') and
-- kept as the record of what was sent. All times are Unix seconds.

CREATE TABLE IF NOT EXISTS tuf_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    registry        TEXT    NOT NULL,
    -- 'add': a committed file (the ledger row); 'delete': a deleted file (the ledger row that
    -- added it); 'index': a PyPI project's index page, as the backend serves it when sent.
    action          TEXT    NOT NULL CHECK (action IN ('add', 'delete', 'index')),
    ledger_id       INTEGER REFERENCES ledger (id),
    -- Normalised project name.
    project         TEXT    NOT NULL,
    -- The request that committed or deleted it.
    request_id      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'submitted', 'done', 'failed')),
    -- The RSTUF task that carries it, while submitted (and after, for the record).
    task_id         TEXT,
    -- How many times RSTUF reported it failed.
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- Not sent again before this time (backoff).
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT    NOT NULL DEFAULT '',
    -- When it became 'done' or 'failed'; NULL exactly while open.
    finished_at     INTEGER,
    CHECK ((action = 'index') = (ledger_id IS NULL)),
    CHECK ((state IN ('done', 'failed')) = (finished_at IS NOT NULL))
) STRICT;

-- A file is added once and deleted once, whatever retries and reconciliations do.
CREATE UNIQUE INDEX IF NOT EXISTS tuf_outbox_file ON tuf_outbox (action, ledger_id) WHERE ledger_id IS NOT NULL;

CREATE INDEX IF NOT EXISTS tuf_outbox_open ON tuf_outbox (registry, id) WHERE state IN ('queued', 'submitted');

CREATE INDEX IF NOT EXISTS tuf_outbox_failed ON tuf_outbox (registry, id) WHERE state = 'failed';

CREATE INDEX IF NOT EXISTS tuf_outbox_request ON tuf_outbox (request_id);

-- Which replica sends a registry's events: the one whose lease has not run out.
CREATE TABLE IF NOT EXISTS tuf_feed_leases (
    registry TEXT    PRIMARY KEY,
    owner    TEXT    NOT NULL,
    until    INTEGER NOT NULL
) STRICT;
