//! The delete path: delete-like requests (npm unpublish and deprecate, PyPI release removal)
//! become typed actions ([`portcullis_rules::deletion::DeleteAction`]); the facts the policy
//! needs are gathered here (publish time from the ledger or the backend's document, downloads
//! counted by the gateway, dependents from the ledger, owners from the document); the rules
//! decide; tombstones keep deleted versions and names from coming back; the audit log records
//! every decision.

pub mod audit;
pub mod downloads;
pub mod npm;

use portcullis_rules::deletion::{DeleteAction, DeletionDecision, DeletionOutcome};
use portcullis_rules::ProjectName;

use self::downloads::{DownloadCounter, DAY};
use self::npm::{age, CurrentDocument};
use crate::clock::unix_now;
use crate::state::{StateError, StateStore};

/// Days summed as "the last week" of downloads (today and the six before).
const WEEK_DAYS: i64 = 7;

/// One change a delete-like request asks for, with the rules' decision on it.
#[derive(Debug, Clone)]
pub struct DeletionRecord {
    /// What is asked.
    pub action: DeleteAction,
    /// The version concerned (`None` for the whole project).
    pub version: Option<String>,
    /// The file concerned, for file deletions.
    pub filename: Option<String>,
    /// The decision.
    pub decision: DeletionDecision,
    /// For project deletions: every version the project had, each tombstoned with it.
    pub versions: Vec<String>,
}

impl DeletionRecord {
    /// What the record targets, for logs and the audit log.
    pub fn target(&self, project: &ProjectName) -> String {
        match (&self.filename, &self.version) {
            (Some(file), _) => file.clone(),
            (None, Some(version)) => format!("{}@{version}", project.as_str()),
            (None, None) => project.as_str().to_owned(),
        }
    }

    /// `allow`, `refuse`, `shadow` or `override`.
    pub fn outcome(&self) -> &'static str {
        match self.decision.outcome {
            DeletionOutcome::Allowed => "allow",
            DeletionOutcome::Refused { .. } => "refuse",
            DeletionOutcome::Shadowed { .. } => "shadow",
            DeletionOutcome::Overridden { .. } => "override",
        }
    }
}

/// The facts of one deletion, as the rules take them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gathered {
    /// Seconds since publish (the oldest version's, for a project).
    pub age_seconds: Option<u64>,
    /// Downloads counted in the last 7 days.
    pub weekly_downloads: Option<u64>,
    /// Projects depending on this one, among the uploads the gateway committed.
    pub dependents: Option<u64>,
    /// Owners or maintainers, where the protocol exposes them.
    pub owners: Option<u64>,
    /// Whether the deletion removes the project's last version.
    pub is_last_version: Option<bool>,
}

/// Gathers deletion facts about one project from the state store, the download counter and,
/// for npm, the backend's current document. What holds for the whole project (pending download
/// counts flushed, dependents) is read once, when the source is opened.
pub struct FactSource<'a> {
    store: &'a dyn StateStore,
    document: Option<&'a CurrentDocument>,
    registry: &'a str,
    project: &'a ProjectName,
    dependents: u64,
}

impl<'a> FactSource<'a> {
    /// A source for `project` on `registry`: flushes `counter` (downloads still in memory count
    /// too) and counts the project's dependents.
    pub async fn open(
        store: &'a dyn StateStore,
        counter: &DownloadCounter,
        document: Option<&'a CurrentDocument>,
        registry: &'a str,
        project: &'a ProjectName,
    ) -> Result<FactSource<'a>, StateError> {
        counter.flush(store).await?;
        let dependents = store.dependents(registry, project.as_str()).await?;
        Ok(FactSource {
            store,
            document,
            registry,
            project,
            dependents,
        })
    }

    /// The facts for a deletion of `version` (or, for `None`, of the whole project).
    /// `is_last_version` comes from the caller, who knows what the request removes.
    pub async fn gather(&self, version: Option<&str>, is_last_version: Option<bool>) -> Result<Gathered, StateError> {
        let (registry, name) = (self.registry, self.project.as_str());
        // The ledger knows uploads made through the gateway; the backend's document knows
        // the others (npm's `time` map). Neither: unknown, which the rules handle.
        let from_ledger = self.store.published_at(registry, name, version).await?;
        let from_document = self.document.and_then(|d| match version {
            Some(v) => d.published_at(v),
            None => d.earliest(),
        });
        let published = match (from_ledger, from_document) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let since_day = unix_now().div_euclid(DAY) - (WEEK_DAYS - 1);
        let weekly_downloads = self.store.downloads_since(registry, name, version, since_day).await?;
        Ok(Gathered {
            age_seconds: published.map(age),
            weekly_downloads: Some(weekly_downloads),
            dependents: Some(self.dependents),
            owners: self.document.and_then(|d| d.maintainers),
            is_last_version,
        })
    }
}
