-- Portcullis state store (PostgreSQL), version 4 (SQLite version 7): an upload's provenance
-- document in a table of its own, written once when the upload begins (in the statement that
-- inserts its ledger row). SQLite needs this to stop rewriting the document at every finish;
-- PostgreSQL keeps an unchanged large value where it is, but both stores keep one schema so
-- that one set of statements and row decoders serves them.
--
-- From this version the ledger row's `provenance` holds an empty value when the document is
-- here (it still says whether the upload carried provenance, as its CHECK with
-- `provenance_kind` requires); rows written before keep their document in place. Readers
-- take the document from here when there is one, else from the row.

CREATE TABLE IF NOT EXISTS ledger_documents (
    ledger_id BIGINT PRIMARY KEY REFERENCES ledger (id),
    -- The accepted provenance document(s), byte for byte as uploaded.
    document  BYTEA  NOT NULL
);
