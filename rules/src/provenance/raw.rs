//! The provenance keys of a rules file as written (`provenance`, `provenance_shadow`,
//! `provenance_predicates` and `[[registries.<name>.provenance_rules]]`), deserialized but not
//! yet validated.

use serde::Deserialize;

/// A provenance mode as written in a rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawProvenanceMode {
    /// Uploads without attestations are refused.
    Required,
    /// Uploads without attestations pass; present attestations must pass.
    Optional,
    /// Nothing is refused; what would be is recorded.
    Audit,
}

/// One provenance rule as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvenanceRule {
    /// Stable identifier, unique among the registry's project rules, publishers and provenance
    /// rules.
    pub id: String,
    /// Glob patterns (`*`, `?`, `[abc]`) over normalised project names.
    pub names: Vec<String>,
    /// The mode for matching projects.
    pub mode: RawProvenanceMode,
    /// Record refusals instead of enforcing them; unset means the registry's `provenance_shadow`.
    pub shadow: Option<bool>,
    /// Accepted in-toto predicate types; unset means the registry's.
    pub predicates: Option<Vec<String>>,
    /// Accepted values of the signing certificate's Build Trigger; unset means any but
    /// `pull_request_target`, which is never accepted.
    pub build_triggers: Option<Vec<String>>,
    /// Accept provenance from another source repository than the project's earlier uploads
    /// (default false: a change of source repository is refused).
    #[serde(default)]
    pub allow_repository_change: bool,
    /// Accept uploads without provenance after uploads with it (default false: no downgrade).
    #[serde(default)]
    pub allow_downgrade: bool,
}

/// The provenance keys of one registry's raw rules.
pub(crate) struct RawProvenanceSettings {
    pub(crate) mode: Option<RawProvenanceMode>,
    pub(crate) shadow: Option<bool>,
    pub(crate) predicates: Option<Vec<String>>,
    pub(crate) rules: Vec<RawProvenanceRule>,
}
