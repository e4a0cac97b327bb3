-- Lookups made for every upload stay proportional to what they return, not to how many files
-- the project has ever had: partial indexes over the committed rows each query reads
-- (a popular project accumulates thousands of ledger rows; without these, the provenance
-- summary behind "no downgrade" and repository pinning read every one of them on every upload).

CREATE INDEX IF NOT EXISTS ledger_committed_provenance ON ledger (registry, project)
    WHERE state = 'committed' AND provenance IS NOT NULL;

CREATE INDEX IF NOT EXISTS ledger_committed_sources ON ledger (registry, project, source_repository, created_at, id)
    WHERE state = 'committed' AND source_repository IS NOT NULL;

CREATE INDEX IF NOT EXISTS ledger_committed_versions ON ledger (registry, project, version, created_at)
    WHERE state = 'committed';
