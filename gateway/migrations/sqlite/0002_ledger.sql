-- Portcullis state store, version 2: the publish ledger. One row per upload, written as
-- `pending` before the upload's last bytes are released to the backend and then finished as
-- `committed` or `failed` once the backend has answered. The ledger is durable: rows are never
-- purged. Accepted provenance is stored with the upload, byte for byte as uploaded, so that it
-- can be served later. All times are Unix seconds.

CREATE TABLE IF NOT EXISTS ledger (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    registry          TEXT    NOT NULL,
    -- Normalised project name.
    project           TEXT    NOT NULL,
    version           TEXT    NOT NULL,
    filename          TEXT    NOT NULL,
    -- Hex SHA-256 of the uploaded file.
    sha256            TEXT    NOT NULL,
    size              INTEGER NOT NULL CHECK (size >= 0),
    -- How the upload authenticated: 'upload_token', 'legacy' or 'none'.
    credential        TEXT    NOT NULL,
    -- Trusted publisher id, when the upload came through trusted publishing.
    publisher         TEXT,
    -- Provenance signer identity (certificate SAN) and source repository URI.
    signer            TEXT,
    source_repository TEXT,
    -- 'pep740' or 'npm-sigstore'; set exactly when `provenance` is.
    provenance_kind   TEXT,
    -- The accepted provenance document(s), byte for byte as uploaded.
    provenance        BLOB,
    request_id        TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    state             TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'committed', 'failed')),
    -- When the row left `pending`; NULL exactly while it is pending.
    finished_at       INTEGER,
    -- Why it was finished that way (for example the backend's status).
    detail            TEXT    NOT NULL DEFAULT '',
    CHECK ((provenance IS NULL) = (provenance_kind IS NULL)),
    CHECK ((state = 'pending') = (finished_at IS NULL))
) STRICT;

CREATE INDEX IF NOT EXISTS ledger_file ON ledger (registry, project, version, filename);

CREATE INDEX IF NOT EXISTS ledger_state_created_at ON ledger (state, created_at);
