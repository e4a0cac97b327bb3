-- Portcullis state store (PostgreSQL), version 3 (SQLite version 6): each project's provenance
-- summary, kept as uploads commit. "No downgrade" and repository pinning read it on every
-- upload: how many committed uploads of the project carried provenance, and each source
-- repository their provenance named with the first committed upload that named it. Counting
-- those from the ledger read one index entry per earlier upload, so a project's every upload
-- cost more the longer its history; here the summary is one row per project and one per
-- repository, whatever the history.
--
-- A trigger keeps it: a ledger row's move to 'committed' is the one way an upload commits
-- (rows are inserted 'pending', committed rows never change again and are never deleted), so
-- the summary holds exactly what the committed rows say, in the transaction that commits them.
-- Replicas committing uploads of one project at once take turns on its summary row for the
-- rest of their (short) commit transactions.

CREATE TABLE IF NOT EXISTS provenance_uploads (
    registry TEXT   NOT NULL,
    project  TEXT   NOT NULL,
    -- Committed uploads of the project that carried provenance.
    uploads  BIGINT NOT NULL CHECK (uploads > 0),
    PRIMARY KEY (registry, project)
);

CREATE TABLE IF NOT EXISTS provenance_sources (
    registry          TEXT   NOT NULL,
    project           TEXT   NOT NULL,
    source_repository TEXT   NOT NULL,
    -- The first committed upload that named it (the ledger's order: created_at, then id).
    first_created_at  BIGINT NOT NULL,
    first_ledger_id   BIGINT NOT NULL,
    PRIMARY KEY (registry, project, source_repository)
);

INSERT INTO provenance_uploads (registry, project, uploads)
    SELECT registry, project, COUNT(*) FROM ledger
     WHERE state = 'committed' AND provenance IS NOT NULL
     GROUP BY registry, project
    ON CONFLICT DO NOTHING;

INSERT INTO provenance_sources (registry, project, source_repository, first_created_at, first_ledger_id)
    SELECT DISTINCT ON (registry, project, source_repository) registry, project, source_repository, created_at, id
      FROM ledger WHERE state = 'committed' AND source_repository IS NOT NULL
     ORDER BY registry, project, source_repository, created_at, id
    ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION ledger_commit_summarises_provenance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.provenance IS NOT NULL THEN
        INSERT INTO provenance_uploads (registry, project, uploads)
            VALUES (NEW.registry, NEW.project, 1)
            ON CONFLICT (registry, project) DO UPDATE SET uploads = provenance_uploads.uploads + 1;
    END IF;
    IF NEW.source_repository IS NOT NULL THEN
        INSERT INTO provenance_sources (registry, project, source_repository, first_created_at, first_ledger_id)
            VALUES (NEW.registry, NEW.project, NEW.source_repository, NEW.created_at, NEW.id)
            ON CONFLICT (registry, project, source_repository) DO UPDATE
               SET first_created_at = EXCLUDED.first_created_at, first_ledger_id = EXCLUDED.first_ledger_id
             WHERE (EXCLUDED.first_created_at, EXCLUDED.first_ledger_id)
                 < (provenance_sources.first_created_at, provenance_sources.first_ledger_id);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS ledger_commit_summarises_provenance ON ledger;
CREATE TRIGGER ledger_commit_summarises_provenance
    AFTER UPDATE OF state ON ledger
    FOR EACH ROW
    WHEN (NEW.state = 'committed' AND OLD.state <> 'committed')
    EXECUTE FUNCTION ledger_commit_summarises_provenance();

-- The partial indexes the summary was counted through (version 1) have no reader left; each
-- cost every commit an index write.
DROP INDEX IF EXISTS ledger_committed_provenance;
DROP INDEX IF EXISTS ledger_committed_sources;
