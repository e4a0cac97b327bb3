//! Deletion policy: whether a version, a file or a whole project may be deleted, yanked or
//! un-yanked, after OpenSSF's "Crafting a Package Deletion Policy" and npm's unpublish policy.
//!
//! The gateway establishes what is known about the target (its age, recent downloads,
//! dependents, owners, whether it is the last version) and hands it over as
//! [`DeletionFacts`]; this module decides ([`CompiledRules::decide_deletion`]) and says how
//! long a deleted project's name stays reserved ([`CompiledRules::name_reservation`],
//! [`name_still_reserved`]). Time comes in as facts: nothing here reads the clock.
//!
//! ```toml
//! [registries.npm.deletion]          # registry-wide defaults; all keys optional
//! mode = "policy"                    # policy | allow | yank_only | never (default policy)
//! window = "72h"                     # self-service deletion within this long after publish
//! max_weekly_downloads = 300         # after the window: fewer downloads than this in 7 days
//! max_dependents = 0                 # after the window: at most this many dependents
//! max_owners = 1                     # after the window: at most this many owners
//! unknown_age = "outside_window"     # outside_window | refuse: a version of unknown age
//! unknown_facts = "refuse"           # refuse | ignore: unknown downloads, dependents, owners
//! reserve_deleted_names = "forever"  # "forever" or a duration such as "30d"
//! shadow = false                     # record refusals instead of enforcing them
//!
//! [[registries.npm.deletion_rules]]  # in order, the first whose names match decides
//! id = "core-packages"               # unique among the registry's rules and publishers
//! names = ["core-*", "@acme/*"]
//! mode = "never"                     # any key above; unset keys inherit [deletion]'s
//! message = "core packages are never deleted; deprecate instead"   # appended to refusals
//! ```
//!
//! Durations are written as numbers with units, largest first: `"90s"`, `"30m"`, `"72h"`,
//! `"7d"`, `"1h30m"` ([`crate::duration`]).
//!
//! Modes: `policy` allows a deletion within the window after publish, and after it only when
//! the version (or project) is little used: fewer weekly downloads than
//! `max_weekly_downloads`, at most `max_dependents` dependents and `max_owners` owners. Yank
//! and un-yank are always allowed. `allow` lets every deletion through; `yank_only` refuses
//! every deletion but allows yank and un-yank; `never` refuses deletions, yank and un-yank
//! alike. Deleting a project's last remaining version is judged as deleting the project. An
//! authenticated administrator's override passes in every mode, recording what the policy
//! alone would have said; shadow mode lets refusals through and records them.
//!
//! [`CompiledRules::decide_deletion`]: crate::CompiledRules::decide_deletion
//! [`CompiledRules::name_reservation`]: crate::CompiledRules::name_reservation

mod compile;
mod decide;
mod raw;
mod words;

#[cfg(test)]
mod tests;

pub(crate) use self::compile::{compile_deletion, DeletionPolicy};
pub use self::decide::{name_still_reserved, DeletionDecision, DeletionFacts, DeletionOutcome, DeletionRefusal};
pub use self::raw::{RawDeletionRule, RawDeletionSettings};

/// The rule id reported when no deletion rule matched and the registry's `[deletion]` settings
/// (or the built-in defaults) decided. Reserved: no rule may use it.
pub const DEFAULT_RULE: &str = "deletion.default";

/// The rule id of [`DeletionDecision::cleanup`].
pub const CLEANUP_RULE: &str = "deletion.cleanup";

/// Built-in self-service window: 72 hours, as npm's unpublish policy.
pub const DEFAULT_WINDOW_SECS: u64 = 72 * HOUR;

/// Built-in bound on downloads in the last 7 days after the window (exclusive).
pub const DEFAULT_MAX_WEEKLY_DOWNLOADS: u64 = 300;

/// Built-in bound on dependents after the window (inclusive).
pub const DEFAULT_MAX_DEPENDENTS: u64 = 0;

/// Built-in bound on owners after the window (inclusive).
pub const DEFAULT_MAX_OWNERS: u64 = 1;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;
const DAY: u64 = 24 * HOUR;

/// What a deletion request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeleteAction {
    /// Delete one version (npm unpublish of a version, PyPI release removal).
    DeleteVersion,
    /// Delete one file of a version (a PyPI distribution file).
    DeleteFile,
    /// Delete the whole project with every version.
    DeleteProject,
    /// Yank a version: it stays downloadable by exact pin but is no longer chosen.
    Yank,
    /// Lift a yank.
    Unyank,
}

impl DeleteAction {
    /// Whether the action removes content (the three `Delete*` actions), as opposed to yanks.
    pub fn is_deletion(self) -> bool {
        matches!(
            self,
            DeleteAction::DeleteVersion | DeleteAction::DeleteFile | DeleteAction::DeleteProject
        )
    }
}

/// How a project's deletions are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeletionMode {
    /// The npm-like criteria: a window after publish, then usage bounds.
    Policy,
    /// Every deletion and yank passes (still audited by the gateway).
    Allow,
    /// Every deletion is refused; yank and un-yank pass.
    YankOnly,
    /// Deletions, yank and un-yank are all refused: the project is immutable.
    Never,
}

/// How long a deleted project's name stays reserved against new uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameReservation {
    /// The name can never be taken again.
    Forever,
    /// The name is reserved for this many seconds after the deletion.
    For(u64),
}

impl NameReservation {
    /// Parses `"forever"` or a duration such as `"30d"` ([`crate::duration`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "forever" {
            return Ok(NameReservation::Forever);
        }
        crate::duration::parse_seconds(text)
            .map(NameReservation::For)
            .map_err(|reason| format!("must be \"forever\" or a duration: {reason}"))
    }
}
