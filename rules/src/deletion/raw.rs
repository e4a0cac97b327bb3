//! The deletion keys of a rules file as written: `[registries.<name>.deletion]` and
//! `[[registries.<name>.deletion_rules]]`, deserialized but not yet validated.

use serde::Deserialize;

/// The registry-wide `[registries.<name>.deletion]` table as written. Every key is optional;
/// unset keys take the built-in defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeletionSettings {
    /// `policy`, `allow`, `yank_only` or `never`.
    pub mode: Option<String>,
    /// Self-service deletion window after publish, a duration such as `"72h"`.
    pub window: Option<String>,
    /// After the window, deletion needs fewer downloads than this in the last 7 days.
    pub max_weekly_downloads: Option<u64>,
    /// After the window, deletion needs at most this many dependents.
    pub max_dependents: Option<u64>,
    /// After the window, deletion needs at most this many owners.
    pub max_owners: Option<u64>,
    /// `outside_window` or `refuse`: how a version of unknown age is treated.
    pub unknown_age: Option<String>,
    /// `refuse` or `ignore`: how unknown downloads, dependents or owners count.
    pub unknown_facts: Option<String>,
    /// `"forever"` or a duration: how long a deleted project's name stays reserved.
    pub reserve_deleted_names: Option<String>,
    /// Record refusals instead of enforcing them.
    pub shadow: Option<bool>,
}

/// One `[[registries.<name>.deletion_rules]]` entry as written; unset keys inherit the
/// registry's `[deletion]` values.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeletionRule {
    /// Stable identifier, unique among the registry's rules and publishers.
    pub id: String,
    /// Glob patterns (`*`, `?`, `[abc]`) over normalised project names.
    pub names: Vec<String>,
    /// `policy`, `allow`, `yank_only` or `never`.
    pub mode: Option<String>,
    /// Self-service deletion window after publish, a duration such as `"72h"`.
    pub window: Option<String>,
    /// After the window, deletion needs fewer downloads than this in the last 7 days.
    pub max_weekly_downloads: Option<u64>,
    /// After the window, deletion needs at most this many dependents.
    pub max_dependents: Option<u64>,
    /// After the window, deletion needs at most this many owners.
    pub max_owners: Option<u64>,
    /// `outside_window` or `refuse`: how a version of unknown age is treated.
    pub unknown_age: Option<String>,
    /// `refuse` or `ignore`: how unknown downloads, dependents or owners count.
    pub unknown_facts: Option<String>,
    /// `"forever"` or a duration: how long a deleted project's name stays reserved.
    pub reserve_deleted_names: Option<String>,
    /// Record refusals instead of enforcing them.
    pub shadow: Option<bool>,
    /// Extra text appended to this rule's refusals.
    pub message: Option<String>,
}
