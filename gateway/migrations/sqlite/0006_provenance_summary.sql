-- Portcullis state store, version 6: each project's provenance summary, kept as uploads commit.
-- "No downgrade" and repository pinning read it on every upload: how many committed uploads
-- of the project carried provenance, and each source repository their provenance named with
-- the first committed upload that named it. Counting those from the ledger read one index
-- entry per earlier upload, so a project's every upload cost more the longer its history;
-- here the summary is one row per project and one per repository, whatever the history.
--
-- A trigger keeps it: a ledger row's move to 'committed' is the one way an upload commits
-- (rows are inserted 'pending', committed rows never change again and are never deleted), so
-- the summary holds exactly what the committed rows say, in the transaction that commits them.

CREATE TABLE IF NOT EXISTS provenance_uploads (
    registry TEXT    NOT NULL,
    project  TEXT    NOT NULL,
    -- Committed uploads of the project that carried provenance.
    uploads  INTEGER NOT NULL CHECK (uploads > 0),
    PRIMARY KEY (registry, project)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS provenance_sources (
    registry          TEXT    NOT NULL,
    project           TEXT    NOT NULL,
    source_repository TEXT    NOT NULL,
    -- The first committed upload that named it (the ledger's order: created_at, then id).
    first_created_at  INTEGER NOT NULL,
    first_ledger_id   INTEGER NOT NULL,
    PRIMARY KEY (registry, project, source_repository)
) STRICT, WITHOUT ROWID;

INSERT INTO provenance_uploads (registry, project, uploads)
    SELECT registry, project, COUNT(*) FROM ledger
     WHERE state = 'committed' AND provenance IS NOT NULL
     GROUP BY registry, project;

INSERT INTO provenance_sources (registry, project, source_repository, first_created_at, first_ledger_id)
    SELECT registry, project, source_repository, created_at, id FROM (
        SELECT registry, project, source_repository, created_at, id,
               ROW_NUMBER() OVER (PARTITION BY registry, project, source_repository ORDER BY created_at, id) AS n
          FROM ledger WHERE state = 'committed' AND source_repository IS NOT NULL
    ) WHERE n = 1;

CREATE TRIGGER IF NOT EXISTS ledger_commit_summarises_provenance
AFTER UPDATE OF state ON ledger
WHEN NEW.state = 'committed' AND OLD.state <> 'committed'
BEGIN
    INSERT INTO provenance_uploads (registry, project, uploads)
        SELECT NEW.registry, NEW.project, 1 WHERE NEW.provenance IS NOT NULL
        ON CONFLICT (registry, project) DO UPDATE SET uploads = uploads + 1;
    INSERT INTO provenance_sources (registry, project, source_repository, first_created_at, first_ledger_id)
        SELECT NEW.registry, NEW.project, NEW.source_repository, NEW.created_at, NEW.id
         WHERE NEW.source_repository IS NOT NULL
        ON CONFLICT (registry, project, source_repository) DO UPDATE
           SET first_created_at = excluded.first_created_at, first_ledger_id = excluded.first_ledger_id
         WHERE (excluded.first_created_at, excluded.first_ledger_id) < (first_created_at, first_ledger_id);
END;

-- The partial indexes the summary was counted through (0004) have no reader left; each cost
-- every commit an index write.
DROP INDEX IF EXISTS ledger_committed_provenance;
DROP INDEX IF EXISTS ledger_committed_sources;
