//! Row decoding, written once for both stores. SQLite and PostgreSQL rows decode the store's
//! column types the same way (INTEGER/BIGINT as `i64`, TEXT as `String`, BLOB/BYTEA as
//! `Vec<u8>`), so each record's decoder is one generic function over [`StoreRow`] and the two
//! stores differ only in their SQL. `sqlx::FromRow` would need sqlx's proc-macro crate for four
//! structs whose columns need checks a derive cannot express (non-negative sizes, the state and
//! tombstone-kind words), so the decoders are plain functions. SQLite rows are rusqlite's (the
//! store runs its statements in the caller's thread, `sqlite/connection.rs`), PostgreSQL rows
//! sqlx's.

use sqlx::postgres::PgRow;
use sqlx::Row;

use super::{
    AuditRecord, LedgerEntry, LedgerRecord, LedgerState, ProjectProvenance, StateError, StoredProvenance, Tombstone,
    TombstoneKind,
};

/// Why a column did not decode, from either driver.
pub(crate) type ColumnError = Box<dyn std::error::Error + Send + Sync>;

/// The column reads the decoders need, for either store's rows.
pub(crate) trait StoreRow {
    /// An INTEGER / BIGINT column.
    fn int(&self, column: &str) -> Result<i64, ColumnError>;
    /// A nullable INTEGER / BIGINT column.
    fn optional_int(&self, column: &str) -> Result<Option<i64>, ColumnError>;
    /// A TEXT column.
    fn text(&self, column: &str) -> Result<String, ColumnError>;
    /// A nullable TEXT column.
    fn optional_text(&self, column: &str) -> Result<Option<String>, ColumnError>;
    /// A nullable BLOB / BYTEA column.
    fn optional_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, ColumnError>;
}

macro_rules! store_row {
    ($row:ty, $get:ident) => {
        impl StoreRow for $row {
            fn int(&self, column: &str) -> Result<i64, ColumnError> {
                Ok(self.$get(column)?)
            }
            fn optional_int(&self, column: &str) -> Result<Option<i64>, ColumnError> {
                Ok(self.$get(column)?)
            }
            fn text(&self, column: &str) -> Result<String, ColumnError> {
                Ok(self.$get(column)?)
            }
            fn optional_text(&self, column: &str) -> Result<Option<String>, ColumnError> {
                Ok(self.$get(column)?)
            }
            fn optional_bytes(&self, column: &str) -> Result<Option<Vec<u8>>, ColumnError> {
                Ok(self.$get(column)?)
            }
        }
    };
}

store_row!(rusqlite::Row<'_>, get);
store_row!(PgRow, try_get);

/// A column that does not decode: the file or the database holds what this build never writes.
pub(crate) fn undecodable(what: &str, e: ColumnError) -> StateError {
    StateError::Corrupt(format!("decoding {what}: {e}"))
}

/// `SELECT <every ledger column> FROM ledger`, followed by the given clauses: the columns
/// [`ledger_record`] reads.
macro_rules! select_ledger {
    ($($rest:literal),+) => {
        concat!(
            "SELECT id, registry, project, version, filename, sha256, size, credential, publisher, signer, \
             source_repository, provenance_kind, ",
            $crate::state::rows::stored_document!(),
            " AS provenance, request_id, created_at, state, finished_at, detail ",
            $crate::state::rows::from_ledger!(),
            $($rest),+
        )
    };
}
pub(crate) use select_ledger;

/// `SELECT` of the provenance stored with ledger rows (what [`stored_provenance`] decodes),
/// then `$rest` (the store's `WHERE` and order, in its own parameter syntax).
macro_rules! select_stored_provenance {
    ($($rest:literal),+) => {
        concat!(
            "SELECT provenance_kind, ",
            $crate::state::rows::stored_document!(),
            " AS provenance, publisher, signer, source_repository, created_at ",
            $crate::state::rows::from_ledger!(),
            $($rest),+
        )
    };
}
pub(crate) use select_stored_provenance;

/// A ledger row's provenance document as stored: in `ledger_documents` for rows written since
/// SQLite migration 7 / PostgreSQL migration 4, in the row itself before.
macro_rules! stored_document {
    () => {
        "COALESCE(ledger_documents.document, ledger.provenance)"
    };
}
pub(crate) use stored_document;

/// The `FROM` clause that reaches both places of [`stored_document!`]: the ledger with its
/// rows' documents joined on the row's id. A `WHERE` after it names the row's own `provenance`
/// as `ledger.provenance`.
macro_rules! from_ledger {
    () => {
        "FROM ledger LEFT JOIN ledger_documents ON ledger_documents.ledger_id = ledger.id "
    };
}
pub(crate) use from_ledger;

/// What a ledger row's `provenance` column holds when the document is in `ledger_documents`:
/// an empty value, which still says that the upload carried provenance.
pub(crate) const DOCUMENT_KEPT_APART: &[u8] = b"";

/// Decodes a ledger row selected with [`select_ledger!`].
pub(crate) fn ledger_record(row: &impl StoreRow) -> Result<LedgerRecord, StateError> {
    let what = "a ledger row";
    let e = |e| undecodable(what, e);
    let id = row.int("id").map_err(e)?;
    let size = row.int("size").map_err(e)?;
    let size = u64::try_from(size)
        .map_err(|_| StateError::Corrupt(format!("decoding ledger row {id}: negative size {size}")))?;
    let state = row.text("state").map_err(e)?;
    let state = LedgerState::parse(&state)
        .ok_or_else(|| StateError::Corrupt(format!("decoding ledger row {id}: unknown state {state:?}")))?;
    Ok(LedgerRecord {
        id,
        entry: LedgerEntry {
            registry: row.text("registry").map_err(e)?,
            project: row.text("project").map_err(e)?,
            version: row.text("version").map_err(e)?,
            filename: row.text("filename").map_err(e)?,
            sha256: row.text("sha256").map_err(e)?,
            size,
            credential: row.text("credential").map_err(e)?,
            publisher: row.optional_text("publisher").map_err(e)?,
            signer: row.optional_text("signer").map_err(e)?,
            source_repository: row.optional_text("source_repository").map_err(e)?,
            provenance_kind: row.optional_text("provenance_kind").map_err(e)?,
            provenance: row.optional_bytes("provenance").map_err(e)?,
            request_id: row.text("request_id").map_err(e)?,
            created_at: row.int("created_at").map_err(e)?,
        },
        state,
        finished_at: row.optional_int("finished_at").map_err(e)?,
        detail: row.text("detail").map_err(e)?,
    })
}

/// Decodes the provenance stored with a committed upload (`provenance_kind, provenance,
/// publisher, signer, source_repository, created_at` of a row whose provenance is not NULL).
pub(crate) fn stored_provenance(row: &impl StoreRow) -> Result<StoredProvenance, StateError> {
    let e = |e| undecodable("stored provenance", e);
    Ok(StoredProvenance {
        kind: row.text("provenance_kind").map_err(e)?,
        provenance: row
            .optional_bytes("provenance")
            .map_err(e)?
            .ok_or_else(|| StateError::Corrupt("decoding stored provenance: no provenance".to_owned()))?,
        publisher: row.optional_text("publisher").map_err(e)?,
        signer: row.optional_text("signer").map_err(e)?,
        source_repository: row.optional_text("source_repository").map_err(e)?,
        created_at: row.int("created_at").map_err(e)?,
    })
}

/// Decodes a tombstone row (`registry, project, kind, version, filename, deleted_at, request_id,
/// actor, reason`).
pub(crate) fn tombstone(row: &impl StoreRow) -> Result<Tombstone, StateError> {
    let e = |e| undecodable("a tombstone", e);
    let kind = row.text("kind").map_err(e)?;
    let version = row.optional_text("version").map_err(e)?;
    let filename = row.optional_text("filename").map_err(e)?;
    let kind = match (kind.as_str(), version, filename) {
        ("project", None, None) => TombstoneKind::Project,
        ("version", Some(v), None) => TombstoneKind::Version(v),
        ("file", Some(version), Some(filename)) => TombstoneKind::File { version, filename },
        (other, ..) => {
            return Err(StateError::Corrupt(format!(
                "decoding a tombstone: inconsistent kind {other:?}"
            )))
        }
    };
    Ok(Tombstone {
        registry: row.text("registry").map_err(e)?,
        project: row.text("project").map_err(e)?,
        kind,
        deleted_at: row.int("deleted_at").map_err(e)?,
        request_id: row.text("request_id").map_err(e)?,
        actor: row.text("actor").map_err(e)?,
        reason: row.text("reason").map_err(e)?,
    })
}

/// Decodes an audit row (`at, request_id, registry, project, actor, action, target, outcome,
/// rule, rules_revision, code, reason, line`).
pub(crate) fn audit_record(row: &impl StoreRow) -> Result<AuditRecord, StateError> {
    let e = |e| undecodable("an audit record", e);
    Ok(AuditRecord {
        at: row.int("at").map_err(e)?,
        request_id: row.text("request_id").map_err(e)?,
        registry: row.text("registry").map_err(e)?,
        project: row.text("project").map_err(e)?,
        actor: row.text("actor").map_err(e)?,
        action: row.text("action").map_err(e)?,
        target: row.text("target").map_err(e)?,
        outcome: row.text("outcome").map_err(e)?,
        rule: row.text("rule").map_err(e)?,
        rules_revision: row.text("rules_revision").map_err(e)?,
        code: row.text("code").map_err(e)?,
        reason: row.text("reason").map_err(e)?,
        line: row.text("line").map_err(e)?,
    })
}

/// A project's provenance summary from the rows of the one statement both stores run: the
/// count of uploads with provenance on every row, and each source repository in order (`None`
/// on the only row when there is none).
pub(crate) fn project_provenance(rows: Vec<(i64, Option<String>)>) -> Result<ProjectProvenance, StateError> {
    let count = rows.first().map_or(0, |(count, _)| *count);
    let uploads_with_provenance = u64::try_from(count)
        .map_err(|_| StateError::Corrupt(format!("counting uploads with provenance: negative count {count}")))?;
    Ok(ProjectProvenance {
        uploads_with_provenance,
        source_repositories: rows.into_iter().filter_map(|(_, repo)| repo).collect(),
    })
}
