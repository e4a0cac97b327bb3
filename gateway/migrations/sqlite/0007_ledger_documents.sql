-- Portcullis state store, version 7: an upload's provenance document in a table of its own.
-- A ledger row is written twice, pending and then finished, and SQLite rewrites a changed
-- row whole, overflow pages included: an attestation of 9 KB or an npm provenance bundle was
-- written into the log again at every finish, though it never changes. Kept here, it is
-- written once, when the upload begins (in the same transaction as its ledger row).
--
-- From this version the ledger row's `provenance` holds an empty blob when the document is
-- here (it still says whether the upload carried provenance, as its CHECK with
-- `provenance_kind` requires); rows written before keep their document in place. Readers
-- take the document from here when there is one, else from the row.

CREATE TABLE IF NOT EXISTS ledger_documents (
    ledger_id INTEGER PRIMARY KEY REFERENCES ledger (id),
    -- The accepted provenance document(s), byte for byte as uploaded.
    document  BLOB    NOT NULL
) STRICT;
