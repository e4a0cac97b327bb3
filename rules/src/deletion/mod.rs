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

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use globset::GlobSet;
use serde::Deserialize;

use crate::compile::{check_id, compile_names, error, CompiledRules, RulesError};
use crate::decide::RuleId;
use crate::name::{ProjectName, Protocol};
use crate::publishers::foreign;

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
    /// Stable lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteAction::DeleteVersion => "delete_version",
            DeleteAction::DeleteFile => "delete_file",
            DeleteAction::DeleteProject => "delete_project",
            DeleteAction::Yank => "yank",
            DeleteAction::Unyank => "unyank",
        }
    }

    /// Whether the action removes content (the three `Delete*` actions), as opposed to yanks.
    pub fn is_deletion(self) -> bool {
        matches!(
            self,
            DeleteAction::DeleteVersion | DeleteAction::DeleteFile | DeleteAction::DeleteProject
        )
    }
}

impl fmt::Display for DeleteAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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

impl DeletionMode {
    /// Stable lower-case name, as written in rules files.
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionMode::Policy => "policy",
            DeletionMode::Allow => "allow",
            DeletionMode::YankOnly => "yank_only",
            DeletionMode::Never => "never",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            DeletionMode::Policy,
            DeletionMode::Allow,
            DeletionMode::YankOnly,
            DeletionMode::Never,
        ]
        .into_iter()
        .find(|m| m.as_str() == text)
    }
}

impl fmt::Display for DeletionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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

/// Whether a tombstone made at `deleted_at` (unix seconds) still blocks the name at `now`
/// under `reservation`. A tombstone dated in the future blocks.
pub fn name_still_reserved(reservation: NameReservation, deleted_at: i64, now: i64) -> bool {
    match reservation {
        NameReservation::Forever => true,
        NameReservation::For(secs) => i128::from(now) < i128::from(deleted_at) + i128::from(secs),
    }
}

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

/// Facts about one deletion or yank request, established by the gateway.
#[derive(Debug, Clone, Copy)]
pub struct DeletionFacts<'a> {
    /// The registry's configured name.
    pub registry: &'a str,
    /// The project targeted, normalised.
    pub project: &'a ProjectName,
    /// What the request does.
    pub action: DeleteAction,
    /// Version targeted (None for DeleteProject).
    pub version: Option<&'a str>,
    /// Seconds since the version was published; for DeleteProject, since the OLDEST version
    /// was published. None = unknown.
    pub age_seconds: Option<u64>,
    /// Downloads in the last 7 days (of the version; for DeleteProject of all versions).
    /// None = unknown.
    pub weekly_downloads: Option<u64>,
    /// Number of other projects depending on this project. None = unknown.
    pub dependents: Option<u64>,
    /// Number of owners/maintainers. None = unknown.
    pub owners: Option<u64>,
    /// Whether the version is the project's last remaining one (deleting it deletes the
    /// project). None = unknown, judged as not the last.
    pub is_last_version: Option<bool>,
    /// Set only when the gateway has authenticated an admin credential: the mandatory reason
    /// the admin gave.
    pub admin_override: Option<&'a str>,
}

/// Why a deletion was (or would have been) refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeletionRefusal {
    /// The mode is `never`: no deletion, yank or un-yank.
    Never,
    /// The mode is `yank_only`: no deletion.
    YankOnly,
    /// Outside the self-service window and a usage bound is not met.
    OutsideWindow,
    /// A fact the policy needs is unknown and the rules refuse in that case.
    UnknownFacts,
}

impl DeletionRefusal {
    /// The stable code the gateway reports.
    pub fn code(&self) -> &'static str {
        match self {
            DeletionRefusal::Never => "deletion_never",
            DeletionRefusal::YankOnly => "deletion_yank_only",
            DeletionRefusal::OutsideWindow => "deletion_refused",
            DeletionRefusal::UnknownFacts => "deletion_unknown_facts",
        }
    }
}

impl fmt::Display for DeletionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// What the deletion policy decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeletionOutcome {
    /// The request passes the policy.
    Allowed,
    /// An administrator overrode the policy; the request passes.
    Overridden {
        /// The reason the administrator gave.
        reason: String,
        /// The refusal the policy alone would have made, if any.
        would_refuse: Option<(DeletionRefusal, String)>,
    },
    /// The request is refused.
    Refused {
        /// Why, as a stable kind.
        code: DeletionRefusal,
        /// A message the requester can act on.
        message: String,
    },
    /// Shadow mode: the request passes and the refusal enforcement would have made is recorded.
    Shadowed {
        /// The refusal enforcement would have made.
        would_refuse: (DeletionRefusal, String),
    },
}

/// A deletion decision with the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionDecision {
    /// The matching `deletion_rules` id, or [`DEFAULT_RULE`] for the registry's `[deletion]`
    /// settings or the built-in defaults.
    pub rule: RuleId,
    /// That rule's mode.
    pub mode: DeletionMode,
    /// What was decided.
    pub outcome: DeletionOutcome,
    /// For actions that remove the project (DeleteProject, or deleting its last version): how
    /// long the name stays reserved; None when the action does not delete the project.
    pub reserve_name: Option<NameReservation>,
    /// Short human lines on the facts the decision used, e.g. `age 80h > window 72h`.
    pub facts_used: Vec<String>,
}

impl DeletionDecision {
    /// The decision on deleting what is left of a version whose deletion was decided and
    /// carried out before (npm's tarball `DELETE` after the version's unpublish): allowed, by
    /// the rule [`CLEANUP_RULE`].
    pub fn cleanup() -> Self {
        DeletionDecision {
            rule: RuleId::new(CLEANUP_RULE),
            mode: DeletionMode::Policy,
            outcome: DeletionOutcome::Allowed,
            reserve_name: None,
            facts_used: vec!["the version's deletion was decided and carried out before".to_owned()],
        }
    }

    /// Whether the request may proceed: allowed, overridden or shadowed.
    pub fn lets_through(&self) -> bool {
        matches!(
            self.outcome,
            DeletionOutcome::Allowed | DeletionOutcome::Overridden { .. } | DeletionOutcome::Shadowed { .. }
        )
    }

    /// The refusal made, or the one the policy alone would have made under an override or in
    /// shadow mode.
    pub fn refusal(&self) -> Option<(DeletionRefusal, &str)> {
        match &self.outcome {
            DeletionOutcome::Refused { code, message } => Some((*code, message)),
            DeletionOutcome::Overridden {
                would_refuse: Some((code, message)),
                ..
            }
            | DeletionOutcome::Shadowed {
                would_refuse: (code, message),
            } => Some((*code, message)),
            _ => None,
        }
    }
}

/// How a version whose publish time is unknown is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnknownAge {
    OutsideWindow,
    Refuse,
}

/// How unknown downloads, dependents or owners count after the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnknownFacts {
    Refuse,
    Ignore,
}

/// The settings of a compiled deletion rule (or of the registry's defaults).
#[derive(Debug, Clone, Copy)]
struct Settings {
    mode: DeletionMode,
    window: u64,
    max_weekly_downloads: u64,
    max_dependents: u64,
    max_owners: u64,
    unknown_age: UnknownAge,
    unknown_facts: UnknownFacts,
    reserve: NameReservation,
    shadow: bool,
}

const BUILT_IN: Settings = Settings {
    mode: DeletionMode::Policy,
    window: DEFAULT_WINDOW_SECS,
    max_weekly_downloads: DEFAULT_MAX_WEEKLY_DOWNLOADS,
    max_dependents: DEFAULT_MAX_DEPENDENTS,
    max_owners: DEFAULT_MAX_OWNERS,
    unknown_age: UnknownAge::OutsideWindow,
    unknown_facts: UnknownFacts::Refuse,
    reserve: NameReservation::Forever,
    shadow: false,
};

/// A compiled deletion rule (also the registry's defaults, with no names).
#[derive(Debug)]
pub(crate) struct DeletionRule {
    id: RuleId,
    names: GlobSet,
    settings: Settings,
    message: Option<Arc<str>>,
}

/// Compiled deletion policy of one registry.
#[derive(Debug)]
pub(crate) struct DeletionPolicy {
    rules: Vec<DeletionRule>,
    default: DeletionRule,
}

impl DeletionPolicy {
    /// The policy of a registry whose rules say nothing about deletion: the built-in defaults.
    pub(crate) fn defaults() -> Self {
        DeletionPolicy {
            rules: Vec::new(),
            default: default_rule(BUILT_IN),
        }
    }

    fn rule_for(&self, project: &ProjectName) -> &DeletionRule {
        self.rules
            .iter()
            .find(|r| r.names.is_match(project.as_str()))
            .unwrap_or(&self.default)
    }
}

fn default_rule(settings: Settings) -> DeletionRule {
    DeletionRule {
        id: RuleId::new(DEFAULT_RULE),
        names: GlobSet::empty(),
        settings,
        message: None,
    }
}

/// The setting keys shared by `[deletion]` and `deletion_rules` entries.
struct Keys<'a> {
    mode: Option<&'a str>,
    window: Option<&'a str>,
    max_weekly_downloads: Option<u64>,
    max_dependents: Option<u64>,
    max_owners: Option<u64>,
    unknown_age: Option<&'a str>,
    unknown_facts: Option<&'a str>,
    reserve_deleted_names: Option<&'a str>,
    shadow: Option<bool>,
}

impl RawDeletionSettings {
    fn keys(&self) -> Keys<'_> {
        Keys {
            mode: self.mode.as_deref(),
            window: self.window.as_deref(),
            max_weekly_downloads: self.max_weekly_downloads,
            max_dependents: self.max_dependents,
            max_owners: self.max_owners,
            unknown_age: self.unknown_age.as_deref(),
            unknown_facts: self.unknown_facts.as_deref(),
            reserve_deleted_names: self.reserve_deleted_names.as_deref(),
            shadow: self.shadow,
        }
    }
}

impl RawDeletionRule {
    fn keys(&self) -> Keys<'_> {
        Keys {
            mode: self.mode.as_deref(),
            window: self.window.as_deref(),
            max_weekly_downloads: self.max_weekly_downloads,
            max_dependents: self.max_dependents,
            max_owners: self.max_owners,
            unknown_age: self.unknown_age.as_deref(),
            unknown_facts: self.unknown_facts.as_deref(),
            reserve_deleted_names: self.reserve_deleted_names.as_deref(),
            shadow: self.shadow,
        }
    }
}

/// `base` with the keys set in `keys` (at `field`) validated and applied.
fn overlay(source: &str, field: &str, base: Settings, keys: Keys<'_>) -> Result<Settings, RulesError> {
    let mut settings = base;
    if let Some(mode) = keys.mode {
        settings.mode = DeletionMode::parse(mode).ok_or_else(|| {
            error(
                source,
                format!("{field}.mode"),
                format!(
                    "unknown mode {:?} (use policy, allow, yank_only or never)",
                    foreign(mode)
                ),
            )
        })?;
    }
    if let Some(window) = keys.window {
        settings.window = crate::duration::parse_seconds(window)
            .map_err(|reason| error(source, format!("{field}.window"), reason))?;
    }
    if let Some(max) = keys.max_weekly_downloads {
        settings.max_weekly_downloads = max;
    }
    if let Some(max) = keys.max_dependents {
        settings.max_dependents = max;
    }
    if let Some(max) = keys.max_owners {
        settings.max_owners = max;
    }
    if let Some(unknown_age) = keys.unknown_age {
        settings.unknown_age = match unknown_age {
            "outside_window" => UnknownAge::OutsideWindow,
            "refuse" => UnknownAge::Refuse,
            other => {
                return Err(error(
                    source,
                    format!("{field}.unknown_age"),
                    format!("unknown value {:?} (use outside_window or refuse)", foreign(other)),
                ))
            }
        };
    }
    if let Some(unknown_facts) = keys.unknown_facts {
        settings.unknown_facts = match unknown_facts {
            "refuse" => UnknownFacts::Refuse,
            "ignore" => UnknownFacts::Ignore,
            other => {
                return Err(error(
                    source,
                    format!("{field}.unknown_facts"),
                    format!("unknown value {:?} (use refuse or ignore)", foreign(other)),
                ))
            }
        };
    }
    if let Some(reserve) = keys.reserve_deleted_names {
        settings.reserve = NameReservation::parse(reserve)
            .map_err(|reason| error(source, format!("{field}.reserve_deleted_names"), reason))?;
    }
    if let Some(shadow) = keys.shadow {
        settings.shadow = shadow;
    }
    Ok(settings)
}

/// Validates and compiles a registry's deletion settings and rules (at `field`, the registry's
/// path); `seen` holds the ids of its other rules and publishers, which deletion rule ids must
/// not repeat.
pub(crate) fn compile_deletion(
    source: &str,
    field: &str,
    protocol: Protocol,
    settings: RawDeletionSettings,
    raw_rules: Vec<RawDeletionRule>,
    seen: &mut HashSet<String>,
) -> Result<DeletionPolicy, RulesError> {
    let defaults = overlay(source, &format!("{field}.deletion"), BUILT_IN, settings.keys())?;
    let mut rules = Vec::with_capacity(raw_rules.len());
    for (index, rule) in raw_rules.into_iter().enumerate() {
        let rule_field = format!("{field}.deletion_rules[{index}]");
        check_id(source, &rule_field, &rule.id)?;
        if !seen.insert(rule.id.clone()) {
            return Err(error(
                source,
                format!("{rule_field}.id"),
                format!("duplicate rule id {:?}", rule.id),
            ));
        }
        let names = compile_names(source, &rule_field, protocol, &rule.names)?;
        let settings = overlay(source, &rule_field, defaults, rule.keys())?;
        rules.push(DeletionRule {
            id: RuleId::new(&rule.id),
            names,
            settings,
            message: rule.message.map(Arc::from),
        });
    }
    Ok(DeletionPolicy {
        rules,
        default: default_rule(defaults),
    })
}

impl CompiledRules {
    /// Decides a deletion, yank or un-yank. The first deletion rule whose names match the
    /// project decides, else the registry's `[deletion]` settings, else the built-in defaults.
    /// The policy's own verdict comes first (see the [module documentation](crate::deletion));
    /// then an administrator's override lets the request through whatever it was, recording
    /// it; then shadow mode turns a refusal into [`DeletionOutcome::Shadowed`].
    pub fn decide_deletion(&self, facts: &DeletionFacts<'_>) -> DeletionDecision {
        let policy = self.policy(facts.registry);
        let rule = policy.deletion.rule_for(facts.project);
        let removes_project = match facts.action {
            DeleteAction::DeleteProject => true,
            DeleteAction::DeleteVersion | DeleteAction::DeleteFile => facts.is_last_version == Some(true),
            DeleteAction::Yank | DeleteAction::Unyank => false,
        };
        let mut facts_used = Vec::new();
        let request = Request {
            facts,
            protocol: policy.protocol,
            removes_project,
            rule,
        };
        let refusal = request.judge(&mut facts_used);
        let outcome = match (facts.admin_override, refusal) {
            (Some(reason), would_refuse) => {
                facts_used.push("admin override".to_owned());
                DeletionOutcome::Overridden {
                    reason: reason.to_owned(),
                    would_refuse,
                }
            }
            (None, Some(would_refuse)) if rule.settings.shadow => {
                facts_used.push("shadow: refusal recorded, not enforced".to_owned());
                DeletionOutcome::Shadowed { would_refuse }
            }
            (None, Some((code, message))) => DeletionOutcome::Refused { code, message },
            (None, None) => DeletionOutcome::Allowed,
        };
        DeletionDecision {
            rule: rule.id.clone(),
            mode: rule.settings.mode,
            outcome,
            reserve_name: removes_project.then_some(rule.settings.reserve),
            facts_used,
        }
    }

    /// How long deleted names of `project` on `registry` stay reserved (for the upload path's
    /// tombstone check), from the deletion rule that matches it.
    pub fn name_reservation(&self, registry: &str, project: &ProjectName) -> NameReservation {
        self.policy(registry).deletion.rule_for(project).settings.reserve
    }
}

/// One request being judged, with what its messages need.
struct Request<'r, 'a> {
    facts: &'r DeletionFacts<'a>,
    protocol: Option<Protocol>,
    removes_project: bool,
    rule: &'r DeletionRule,
}

impl Request<'_, '_> {
    /// What the policy alone says: None when it allows, else the refusal. Appends the facts it
    /// looked at to `used`.
    fn judge(&self, used: &mut Vec<String>) -> Option<(DeletionRefusal, String)> {
        let settings = &self.rule.settings;
        let action = self.facts.action;
        if self.removes_project && action != DeleteAction::DeleteProject {
            used.push("last remaining version: judged as a project deletion".to_owned());
        }
        match settings.mode {
            DeletionMode::Never => {
                used.push("mode never: no deletion, yank or unyank".to_owned());
                let reason = format!(
                    "{} {} is immutable on this registry: it cannot be deleted, yanked or un-yanked",
                    self.project_word(),
                    self.facts.project
                );
                Some((DeletionRefusal::Never, self.refusal(&reason)))
            }
            DeletionMode::YankOnly if action.is_deletion() => {
                used.push("mode yank_only: no deletion".to_owned());
                let reason = format!(
                    "{} {} can be yanked but not deleted on this registry",
                    self.project_word(),
                    self.facts.project
                );
                Some((DeletionRefusal::YankOnly, self.refusal(&reason)))
            }
            DeletionMode::YankOnly => {
                used.push("mode yank_only: yank and unyank allowed".to_owned());
                None
            }
            DeletionMode::Allow => {
                used.push("mode allow".to_owned());
                None
            }
            DeletionMode::Policy if !action.is_deletion() => {
                used.push("mode policy: yank and unyank allowed".to_owned());
                None
            }
            DeletionMode::Policy => self.judge_policy(used),
        }
    }

    /// The npm-like criteria for a deletion: the window, then the usage bounds.
    fn judge_policy(&self, used: &mut Vec<String>) -> Option<(DeletionRefusal, String)> {
        let settings = &self.rule.settings;
        let facts = self.facts;
        let window = settings.window;
        let (whose, what) = if facts.action == DeleteAction::DeleteProject {
            ("its oldest version", "its oldest version")
        } else {
            ("it", "the version")
        };
        let age_clause = match facts.age_seconds {
            Some(age) if age < window => {
                used.push(format!("age {} < window {}", short(age), short(window)));
                return None;
            }
            Some(age) => {
                let op = if age > window { ">" } else { "=" };
                used.push(format!("age {} {op} window {}", short(age), short(window)));
                format!(
                    "{whose} was published {} ago (self-service deletion is allowed within {})",
                    human_age(age),
                    human_exact(window)
                )
            }
            None if settings.unknown_age == UnknownAge::Refuse => {
                used.push("age unknown (unknown_age = refuse)".to_owned());
                let reason = format!(
                    "the publish time of {what} is unknown, so it cannot be shown to be within the self-service window of {}",
                    human_exact(window)
                );
                return Some((DeletionRefusal::UnknownFacts, self.refusal(&reason)));
            }
            None => {
                used.push("age unknown: treated as outside the window".to_owned());
                format!(
                    "the publish time of {what} is unknown, so it counts as outside the self-service window of {}",
                    human_exact(window)
                )
            }
        };

        let mut failures: Vec<String> = Vec::new();
        let mut unknown: Vec<&str> = Vec::new();
        let ignore = settings.unknown_facts == UnknownFacts::Ignore;
        let ignored = if ignore { " (ignored)" } else { "" };

        let max = settings.max_weekly_downloads;
        match facts.weekly_downloads {
            Some(n) if n < max => used.push(format!("weekly downloads {n} < {max}")),
            Some(n) => {
                used.push(format!("weekly downloads {n} >= {max}"));
                let required = if max == 0 {
                    "no deletion is allowed after the window".to_owned()
                } else {
                    format!("fewer than {max} are required")
                };
                failures.push(format!(
                    "had {} in the last 7 days ({required})",
                    plural(n, "download", "downloads")
                ));
            }
            None => {
                used.push(format!("weekly downloads unknown{ignored}"));
                unknown.push("downloads in the last 7 days");
            }
        }
        let bounds = [
            (
                facts.dependents,
                settings.max_dependents,
                "number of dependents",
                ("dependent", "dependents"),
            ),
            (
                facts.owners,
                settings.max_owners,
                "number of owners",
                ("owner", "owners"),
            ),
        ];
        for (value, max, label, (one, many)) in bounds {
            match value {
                Some(n) if n <= max => used.push(format!("{label} {n} <= {max}")),
                Some(n) => {
                    used.push(format!("{label} {n} > {max}"));
                    let allowed = match max {
                        0 => format!("no {many} are allowed"),
                        1 => "at most 1 is allowed".to_owned(),
                        _ => format!("at most {max} are allowed"),
                    };
                    failures.push(format!("has {} ({allowed})", plural(n, one, many)));
                }
                None => {
                    used.push(format!("{label} unknown{ignored}"));
                    unknown.push(label);
                }
            }
        }

        if !failures.is_empty() {
            let mut clauses = vec![age_clause];
            clauses.extend(failures);
            let reason = join_and(&clauses);
            return Some((DeletionRefusal::OutsideWindow, self.refusal(&reason)));
        }
        if !unknown.is_empty() && !ignore {
            let verb = if unknown.len() == 1 { "is" } else { "are" };
            let reason = format!(
                "{age_clause}, and its {} {verb} unknown, so the deletion policy cannot be checked",
                join_and(&unknown)
            );
            return Some((DeletionRefusal::UnknownFacts, self.refusal(&reason)));
        }
        None
    }

    /// `"<subject> is not allowed: <reason>; <alternative>"`, with the rule's message appended.
    fn refusal(&self, reason: &str) -> String {
        let mut message = format!("{} is not allowed: {reason}; {}", self.subject(), self.alternative());
        if let Some(extra) = &self.rule.message {
            message.push_str(". ");
            message.push_str(extra);
        }
        message
    }

    /// What the request does, e.g. `unpublishing acme@1.0.0`.
    fn subject(&self) -> String {
        let facts = self.facts;
        let project = facts.project;
        let target = match (facts.version, self.protocol) {
            (Some(version), Some(Protocol::Npm)) => format!("{project}@{}", foreign(version)),
            (Some(version), _) => format!("{project} {}", foreign(version)),
            (None, _) => project.to_string(),
        };
        let npm = self.protocol == Some(Protocol::Npm);
        let mut subject = match facts.action {
            DeleteAction::DeleteVersion if npm => format!("unpublishing {target}"),
            DeleteAction::DeleteVersion if self.protocol == Some(Protocol::Pypi) => {
                format!("deleting release {target}")
            }
            DeleteAction::DeleteVersion => format!("deleting version {target}"),
            DeleteAction::DeleteFile => format!("deleting a file of {target}"),
            DeleteAction::DeleteProject if npm => format!("unpublishing {target}"),
            DeleteAction::DeleteProject => format!("deleting {} {target}", self.project_word()),
            DeleteAction::Yank => format!("yanking {target}"),
            DeleteAction::Unyank => format!("un-yanking {target}"),
        };
        if self.removes_project && facts.action != DeleteAction::DeleteProject {
            subject.push_str(&format!(
                " (the last remaining version, so the whole {})",
                self.project_word()
            ));
        }
        subject
    }

    /// `package` on npm, `project` elsewhere.
    fn project_word(&self) -> &'static str {
        if self.protocol == Some(Protocol::Npm) {
            "package"
        } else {
            "project"
        }
    }

    /// What the requester can do instead.
    fn alternative(&self) -> &'static str {
        let action = self.facts.action;
        let never = self.rule.settings.mode == DeletionMode::Never;
        match self.protocol {
            _ if !action.is_deletion() => "ask an administrator",
            Some(Protocol::Npm) => "deprecate it instead (npm deprecate), or ask an administrator",
            _ if never => "ask an administrator",
            Some(Protocol::Pypi) if action == DeleteAction::DeleteProject || self.removes_project => {
                "yank its releases instead, or ask an administrator"
            }
            Some(Protocol::Pypi) => "yank it instead, or ask an administrator",
            None => "deprecate or yank it instead, or ask an administrator",
        }
    }
}

/// `"a"`, `"a and b"`, `"a, b and c"`.
fn join_and<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [only] => only.as_ref().to_owned(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", init.join(", "), last.as_ref())
        }
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A configured duration in words, exactly: days from a week on when whole, else hours,
/// minutes or seconds.
fn human_exact(secs: u64) -> String {
    if secs >= 7 * DAY && secs.is_multiple_of(DAY) {
        plural(secs / DAY, "day", "days")
    } else if secs >= HOUR && secs.is_multiple_of(HOUR) {
        plural(secs / HOUR, "hour", "hours")
    } else if secs >= MINUTE && secs.is_multiple_of(MINUTE) {
        plural(secs / MINUTE, "minute", "minutes")
    } else {
        plural(secs, "second", "seconds")
    }
}

/// An age in words, rounded down to a readable unit.
fn human_age(secs: u64) -> String {
    if secs >= 7 * DAY {
        plural(secs / DAY, "day", "days")
    } else if secs >= 2 * HOUR {
        plural(secs / HOUR, "hour", "hours")
    } else if secs >= 2 * MINUTE {
        plural(secs / MINUTE, "minute", "minutes")
    } else {
        plural(secs, "second", "seconds")
    }
}

/// A duration in the rules' own notation, e.g. `80h`, `1h30m`, `45s`.
fn short(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (value, unit) in [(secs / HOUR, "h"), (secs % HOUR / MINUTE, "m"), (secs % MINUTE, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::{compile, KnownRegistry, RuleSource};
    use crate::schema::RawRules;

    const H: u64 = HOUR;

    /// Compiles `text` with registries `npm` and `open` (npm) and `pypi` (PyPI).
    fn rules(text: &str) -> Result<CompiledRules, RulesError> {
        let known = [
            KnownRegistry {
                name: "npm".into(),
                protocol: Protocol::Npm,
            },
            KnownRegistry {
                name: "open".into(),
                protocol: Protocol::Npm,
            },
            KnownRegistry {
                name: "pypi".into(),
                protocol: Protocol::Pypi,
            },
        ];
        compile(
            &[RuleSource {
                name: "r.toml".into(),
                text: text.into(),
            }],
            &known,
        )
    }

    fn compiled(text: &str) -> CompiledRules {
        rules(text).expect("compiles")
    }

    /// One request, with owned-free defaults: an npm version 80 hours old, unused, one owner.
    #[derive(Clone, Copy)]
    struct Ask {
        registry: &'static str,
        project: &'static str,
        action: DeleteAction,
        version: Option<&'static str>,
        age: Option<u64>,
        downloads: Option<u64>,
        dependents: Option<u64>,
        owners: Option<u64>,
        last: Option<bool>,
        admin: Option<&'static str>,
    }

    impl Ask {
        fn npm(project: &'static str) -> Self {
            Ask {
                registry: "npm",
                project,
                action: DeleteAction::DeleteVersion,
                version: Some("1.0.0"),
                age: Some(80 * H),
                downloads: Some(0),
                dependents: Some(0),
                owners: Some(1),
                last: Some(false),
                admin: None,
            }
        }

        fn decide(&self, rules: &CompiledRules) -> DeletionDecision {
            let protocol = if self.registry == "pypi" {
                Protocol::Pypi
            } else {
                Protocol::Npm
            };
            let project = ProjectName::parse(protocol, self.project).expect("valid name");
            rules.decide_deletion(&DeletionFacts {
                registry: self.registry,
                project: &project,
                action: self.action,
                version: self.version,
                age_seconds: self.age,
                weekly_downloads: self.downloads,
                dependents: self.dependents,
                owners: self.owners,
                is_last_version: self.last,
                admin_override: self.admin,
            })
        }
    }

    /// The refusal code and message, asserting the outcome is `Refused`.
    fn refused(decision: &DeletionDecision) -> (DeletionRefusal, &str) {
        match &decision.outcome {
            DeletionOutcome::Refused { code, message } => (*code, message),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn allowed(decision: &DeletionDecision) {
        assert_eq!(decision.outcome, DeletionOutcome::Allowed, "{decision:?}");
        assert!(decision.lets_through());
        assert_eq!(decision.refusal(), None);
    }

    #[test]
    fn built_in_defaults_apply_without_any_rules() {
        let rules = compiled("");
        let ask = Ask {
            registry: "open",
            ..Ask::npm("acme")
        };
        // Inside the window, anything goes.
        let d = Ask {
            age: Some(10 * H),
            downloads: Some(1_000_000),
            dependents: Some(50),
            owners: Some(9),
            ..ask
        }
        .decide(&rules);
        allowed(&d);
        assert_eq!(
            (d.rule.as_str(), d.mode, d.reserve_name),
            (DEFAULT_RULE, DeletionMode::Policy, None)
        );
        assert_eq!(d.facts_used, ["age 10h < window 72h"]);
        // After it, an unused version with one owner.
        let d = ask.decide(&rules);
        allowed(&d);
        assert_eq!(
            d.facts_used,
            [
                "age 80h > window 72h",
                "weekly downloads 0 < 300",
                "number of dependents 0 <= 0",
                "number of owners 1 <= 1"
            ]
        );
        // Exactly at the window's end counts as outside it.
        let d = Ask {
            age: Some(72 * H),
            downloads: Some(300),
            ..ask
        }
        .decide(&rules);
        assert_eq!(refused(&d).0, DeletionRefusal::OutsideWindow);
        assert_eq!(d.facts_used[0], "age 72h = window 72h");
        // Downloads: fewer than 300.
        let d = Ask {
            downloads: Some(300),
            ..ask
        }
        .decide(&rules);
        let (code, message) = refused(&d);
        assert_eq!(code.code(), "deletion_refused");
        assert_eq!(
            message,
            "unpublishing acme@1.0.0 is not allowed: it was published 80 hours ago (self-service deletion is allowed within 72 hours) and had 300 downloads in the last 7 days (fewer than 300 are required); deprecate it instead (npm deprecate), or ask an administrator"
        );
        assert!(d.facts_used.contains(&"weekly downloads 300 >= 300".to_owned()));
        assert!(!d.lets_through());
        allowed(
            &Ask {
                downloads: Some(299),
                ..ask
            }
            .decide(&rules),
        );
        // Dependents: none.
        let d = Ask {
            dependents: Some(1),
            ..ask
        }
        .decide(&rules);
        assert!(
            refused(&d)
                .1
                .contains("and has 1 dependent (no dependents are allowed)"),
            "{d:?}"
        );
        // Owners: one.
        let d = Ask { owners: Some(2), ..ask }.decide(&rules);
        assert!(refused(&d).1.contains("has 2 owners (at most 1 is allowed)"), "{d:?}");
        // Every failure is listed.
        let d = Ask {
            age: Some(30 * DAY),
            downloads: Some(301),
            dependents: Some(3),
            owners: Some(2),
            ..ask
        }
        .decide(&rules);
        assert!(
            refused(&d).1.contains(
                "it was published 30 days ago (self-service deletion is allowed within 72 hours), had 301 downloads in the last 7 days (fewer than 300 are required), has 3 dependents (no dependents are allowed) and has 2 owners (at most 1 is allowed); "
            ),
            "{d:?}"
        );
        // A registry the configuration does not know gets the same defaults.
        let d = Ask {
            registry: "elsewhere",
            downloads: Some(5000),
            ..ask
        }
        .decide(&rules);
        let (code, message) = refused(&d);
        assert_eq!(code, DeletionRefusal::OutsideWindow);
        assert!(
            message.starts_with("deleting version acme 1.0.0 is not allowed: "),
            "{message}"
        );
        assert!(
            message.ends_with("; deprecate or yank it instead, or ask an administrator"),
            "{message}"
        );
    }

    #[test]
    fn pypi_refusals_point_to_yanking() {
        let rules = compiled("");
        let ask = Ask {
            registry: "pypi",
            downloads: Some(312),
            ..Ask::npm("Acme_Widgets")
        };
        let d = ask.decide(&rules);
        assert_eq!(
            refused(&d).1,
            "deleting release acme-widgets 1.0.0 is not allowed: it was published 80 hours ago (self-service deletion is allowed within 72 hours) and had 312 downloads in the last 7 days (fewer than 300 are required); yank it instead, or ask an administrator"
        );
        let d = Ask {
            action: DeleteAction::DeleteFile,
            ..ask
        }
        .decide(&rules);
        assert!(
            refused(&d)
                .1
                .starts_with("deleting a file of acme-widgets 1.0.0 is not allowed"),
            "{d:?}"
        );
        let d = Ask {
            action: DeleteAction::DeleteProject,
            version: None,
            ..ask
        }
        .decide(&rules);
        assert_eq!(
            refused(&d).1,
            "deleting project acme-widgets is not allowed: its oldest version was published 80 hours ago (self-service deletion is allowed within 72 hours) and had 312 downloads in the last 7 days (fewer than 300 are required); yank its releases instead, or ask an administrator"
        );
    }

    #[test]
    fn unknown_age_counts_as_outside_the_window_or_refuses() {
        let ask = Ask {
            age: None,
            ..Ask::npm("acme")
        };
        let lenient = compiled("");
        let d = ask.decide(&lenient);
        allowed(&d);
        assert_eq!(d.facts_used[0], "age unknown: treated as outside the window");
        let d = Ask {
            downloads: Some(400),
            ..ask
        }
        .decide(&lenient);
        assert!(
            refused(&d).1.contains(
                "the publish time of the version is unknown, so it counts as outside the self-service window of 72 hours and had 400 downloads"
            ),
            "{d:?}"
        );

        let strict = compiled("[registries.npm.deletion]\nunknown_age = \"refuse\"\n");
        let d = ask.decide(&strict);
        let (code, message) = refused(&d);
        assert_eq!(code, DeletionRefusal::UnknownFacts);
        assert_eq!(code.code(), "deletion_unknown_facts");
        assert_eq!(
            message,
            "unpublishing acme@1.0.0 is not allowed: the publish time of the version is unknown, so it cannot be shown to be within the self-service window of 72 hours; deprecate it instead (npm deprecate), or ask an administrator"
        );
        assert_eq!(d.facts_used, ["age unknown (unknown_age = refuse)"]);
        // A known age still decides.
        allowed(&Ask { age: Some(H), ..ask }.decide(&strict));
    }

    #[test]
    fn unknown_usage_facts_refuse_or_are_ignored() {
        let ask = Ask {
            downloads: None,
            dependents: None,
            ..Ask::npm("acme")
        };
        let strict = compiled("");
        let d = ask.decide(&strict);
        let (code, message) = refused(&d);
        assert_eq!(code, DeletionRefusal::UnknownFacts);
        assert!(
            message.contains(
                "it was published 80 hours ago (self-service deletion is allowed within 72 hours), and its downloads in the last 7 days and number of dependents are unknown, so the deletion policy cannot be checked; "
            ),
            "{message}"
        );
        assert!(d.facts_used.contains(&"weekly downloads unknown".to_owned()));
        assert!(d.facts_used.contains(&"number of dependents unknown".to_owned()));
        // Only unknown downloads.
        let d = Ask {
            dependents: Some(0),
            ..ask
        }
        .decide(&strict);
        assert!(refused(&d).1.contains("its downloads in the last 7 days is unknown"));
        // A known failing bound is the stronger refusal.
        let d = Ask { owners: Some(3), ..ask }.decide(&strict);
        assert_eq!(refused(&d).0, DeletionRefusal::OutsideWindow);
        // Inside the window, unknown usage does not matter.
        allowed(&Ask { age: Some(H), ..ask }.decide(&strict));

        let lenient = compiled("[registries.npm.deletion]\nunknown_facts = \"ignore\"\n");
        let d = ask.decide(&lenient);
        allowed(&d);
        assert!(d.facts_used.contains(&"weekly downloads unknown (ignored)".to_owned()));
        let d = Ask { owners: Some(3), ..ask }.decide(&lenient);
        assert_eq!(refused(&d).0, DeletionRefusal::OutsideWindow);
    }

    #[test]
    fn the_last_version_is_judged_as_the_project() {
        let rules = compiled("[registries.npm.deletion]\nreserve_deleted_names = \"30d\"\n");
        let last = Ask {
            last: Some(true),
            ..Ask::npm("acme")
        };
        let d = last.decide(&rules);
        allowed(&d);
        assert_eq!(d.reserve_name, Some(NameReservation::For(30 * DAY)));
        assert_eq!(d.facts_used[0], "last remaining version: judged as a project deletion");
        let d = Ask {
            downloads: Some(1000),
            ..last
        }
        .decide(&rules);
        assert!(
            refused(&d).1.starts_with(
                "unpublishing acme@1.0.0 (the last remaining version, so the whole package) is not allowed: "
            ),
            "{d:?}"
        );
        assert_eq!(d.reserve_name, Some(NameReservation::For(30 * DAY)));
        // Not the last, or not known to be: a version deletion, no reservation.
        for last in [Some(false), None] {
            let d = Ask {
                last,
                ..Ask::npm("acme")
            }
            .decide(&rules);
            assert_eq!(d.reserve_name, None);
        }
        // Yanks never reserve the name.
        let d = Ask {
            action: DeleteAction::Yank,
            ..last
        }
        .decide(&rules);
        assert_eq!(d.reserve_name, None);
    }

    #[test]
    fn project_deletions_reserve_the_name() {
        let project = Ask {
            action: DeleteAction::DeleteProject,
            version: None,
            ..Ask::npm("acme")
        };
        let defaults = compiled("");
        let d = project.decide(&defaults);
        allowed(&d);
        assert_eq!(d.reserve_name, Some(NameReservation::Forever));
        let name = ProjectName::parse(Protocol::Npm, "acme").expect("valid");
        assert_eq!(defaults.name_reservation("npm", &name), NameReservation::Forever);
        assert_eq!(defaults.name_reservation("elsewhere", &name), NameReservation::Forever);
        // Refused or not, the reservation is what would apply.
        let d = Ask {
            dependents: Some(4),
            ..project
        }
        .decide(&defaults);
        assert!(refused(&d)
            .1
            .starts_with("unpublishing acme is not allowed: its oldest version was published"));
        assert_eq!(d.reserve_name, Some(NameReservation::Forever));

        let configured = compiled(
            "[registries.npm.deletion]\nreserve_deleted_names = \"7d\"\n\
             [[registries.npm.deletion_rules]]\nid = \"scratch\"\nnames = [\"scratch-*\"]\nreserve_deleted_names = \"1h30m\"\n",
        );
        let d = project.decide(&configured);
        assert_eq!(d.reserve_name, Some(NameReservation::For(7 * DAY)));
        assert_eq!(configured.name_reservation("npm", &name), NameReservation::For(7 * DAY));
        let scratch = ProjectName::parse(Protocol::Npm, "scratch-pad").expect("valid");
        assert_eq!(
            configured.name_reservation("npm", &scratch),
            NameReservation::For(90 * MINUTE)
        );
        let d = Ask {
            project: "scratch-pad",
            ..project
        }
        .decide(&configured);
        assert_eq!(
            (d.rule.as_str(), d.reserve_name),
            ("scratch", Some(NameReservation::For(5400)))
        );
        // Other registries keep theirs.
        assert_eq!(configured.name_reservation("open", &name), NameReservation::Forever);
    }

    #[test]
    fn never_mode_refuses_deletions_and_yanks() {
        let rules =
            compiled("[registries.npm.deletion]\nmode = \"never\"\n[registries.pypi.deletion]\nmode = \"never\"\n");
        for action in [
            DeleteAction::DeleteVersion,
            DeleteAction::DeleteFile,
            DeleteAction::DeleteProject,
            DeleteAction::Yank,
            DeleteAction::Unyank,
        ] {
            let d = Ask {
                action,
                age: Some(0),
                ..Ask::npm("acme")
            }
            .decide(&rules);
            assert_eq!(d.mode, DeletionMode::Never);
            let (code, message) = refused(&d);
            assert_eq!(code.code(), "deletion_never", "{action}");
            assert!(
                message.contains("package acme is immutable on this registry"),
                "{message}"
            );
        }
        let d = Ask {
            action: DeleteAction::Yank,
            ..Ask::npm("acme")
        }
        .decide(&rules);
        assert_eq!(
            refused(&d).1,
            "yanking acme@1.0.0 is not allowed: package acme is immutable on this registry: it cannot be deleted, yanked or un-yanked; ask an administrator"
        );
        assert!(refused(&Ask::npm("acme").decide(&rules))
            .1
            .ends_with("; deprecate it instead (npm deprecate), or ask an administrator"));
        // On PyPI yanking is refused too, so it is not offered.
        let d = Ask {
            registry: "pypi",
            ..Ask::npm("acme")
        }
        .decide(&rules);
        assert!(refused(&d).1.ends_with("un-yanked; ask an administrator"), "{d:?}");
    }

    #[test]
    fn yank_only_mode_allows_yanks_and_refuses_deletions() {
        let rules = compiled("[registries.pypi.deletion]\nmode = \"yank_only\"\n");
        let ask = Ask {
            registry: "pypi",
            age: Some(60),
            ..Ask::npm("acme")
        };
        for action in [DeleteAction::Yank, DeleteAction::Unyank] {
            allowed(&Ask { action, ..ask }.decide(&rules));
        }
        for action in [
            DeleteAction::DeleteVersion,
            DeleteAction::DeleteFile,
            DeleteAction::DeleteProject,
        ] {
            let d = Ask { action, ..ask }.decide(&rules);
            let (code, message) = refused(&d);
            assert_eq!((code, code.code()), (DeletionRefusal::YankOnly, "deletion_yank_only"));
            assert!(
                message.contains("project acme can be yanked but not deleted on this registry; yank"),
                "{message}"
            );
        }
    }

    #[test]
    fn allow_mode_lets_everything_through() {
        let rules = compiled("[registries.npm.deletion]\nmode = \"allow\"\n");
        for action in [
            DeleteAction::DeleteVersion,
            DeleteAction::DeleteProject,
            DeleteAction::Yank,
            DeleteAction::Unyank,
        ] {
            let d = Ask {
                action,
                age: None,
                downloads: Some(1 << 40),
                dependents: None,
                owners: Some(40),
                ..Ask::npm("acme")
            }
            .decide(&rules);
            allowed(&d);
            assert_eq!(d.mode, DeletionMode::Allow);
            assert_eq!(d.facts_used, ["mode allow"]);
        }
        // Policy mode allows yanks whatever the facts.
        let d = Ask {
            action: DeleteAction::Yank,
            age: None,
            downloads: None,
            ..Ask::npm("acme")
        }
        .decide(&compiled(""));
        allowed(&d);
    }

    #[test]
    fn an_admin_override_passes_and_records_what_the_policy_said() {
        let rules = compiled(
            "[[registries.npm.deletion_rules]]\nid = \"core\"\nnames = [\"core-*\"]\nmode = \"never\"\nmessage = \"core packages are never deleted\"\n",
        );
        let reason = "legal takedown LEGAL-123";
        let d = Ask {
            downloads: Some(5000),
            admin: Some(reason),
            ..Ask::npm("acme")
        }
        .decide(&rules);
        assert!(d.lets_through());
        match &d.outcome {
            DeletionOutcome::Overridden {
                reason: given,
                would_refuse: Some((DeletionRefusal::OutsideWindow, message)),
            } => {
                assert_eq!(given, reason);
                assert!(message.contains("had 5000 downloads"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.refusal().map(|r| r.0), Some(DeletionRefusal::OutsideWindow));
        assert_eq!(d.facts_used.last().map(String::as_str), Some("admin override"));
        // In never mode too, yanks included.
        for action in [DeleteAction::DeleteProject, DeleteAction::Yank] {
            let d = Ask {
                project: "core-lib",
                action,
                admin: Some(reason),
                ..Ask::npm("acme")
            }
            .decide(&rules);
            assert_eq!((d.rule.as_str(), d.mode), ("core", DeletionMode::Never));
            match &d.outcome {
                DeletionOutcome::Overridden {
                    would_refuse: Some((DeletionRefusal::Never, message)),
                    ..
                } => assert!(message.ends_with(". core packages are never deleted"), "{message}"),
                other => panic!("{other:?}"),
            }
        }
        // An override of something the policy allows records no refusal.
        let d = Ask {
            admin: Some(reason),
            ..Ask::npm("acme")
        }
        .decide(&rules);
        assert_eq!(
            d.outcome,
            DeletionOutcome::Overridden {
                reason: reason.to_owned(),
                would_refuse: None
            }
        );
        assert_eq!(d.refusal(), None);
    }

    #[test]
    fn shadow_records_refusals_and_leaves_allowed_requests_alone() {
        let rules = compiled("[registries.npm.deletion]\nshadow = true\n");
        let d = Ask {
            owners: Some(5),
            ..Ask::npm("acme")
        }
        .decide(&rules);
        assert!(d.lets_through());
        match &d.outcome {
            DeletionOutcome::Shadowed {
                would_refuse: (DeletionRefusal::OutsideWindow, message),
            } => assert!(message.contains("has 5 owners"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.refusal().map(|r| r.0), Some(DeletionRefusal::OutsideWindow));
        allowed(&Ask::npm("acme").decide(&rules));
        // An override beats shadow.
        let d = Ask {
            owners: Some(5),
            admin: Some("ok"),
            ..Ask::npm("acme")
        }
        .decide(&rules);
        assert!(matches!(d.outcome, DeletionOutcome::Overridden { .. }), "{d:?}");
        // A rule may turn shadow off again.
        let rules = compiled(
            "[registries.npm.deletion]\nshadow = true\n[[registries.npm.deletion_rules]]\nid = \"enforced\"\nnames = [\"acme\"]\nshadow = false\n",
        );
        let d = Ask {
            owners: Some(5),
            ..Ask::npm("acme")
        }
        .decide(&rules);
        assert_eq!(refused(&d).0, DeletionRefusal::OutsideWindow);
    }

    #[test]
    fn the_first_matching_rule_decides_and_inherits_the_registry_settings() {
        let rules = compiled(
            r#"
[registries.npm.deletion]
window = "24h"
max_weekly_downloads = 1000
max_owners = 3
reserve_deleted_names = "90d"

[[registries.npm.deletion_rules]]
id = "core-packages"
names = ["core-*", "@acme/*"]
mode = "never"
message = "core packages are never deleted; deprecate instead"

[[registries.npm.deletion_rules]]
id = "sandbox"
names = ["sandbox-*", "core-sandbox"]
mode = "allow"

[[registries.npm.deletion_rules]]
id = "popular"
names = ["*"]
max_weekly_downloads = 10
"#,
        );
        let d = Ask::npm("core-sandbox").decide(&rules);
        assert_eq!(d.rule.as_str(), "core-packages");
        assert_eq!(
            refused(&d).1,
            "unpublishing core-sandbox@1.0.0 is not allowed: package core-sandbox is immutable on this registry: it cannot be deleted, yanked or un-yanked; deprecate it instead (npm deprecate), or ask an administrator. core packages are never deleted; deprecate instead"
        );
        assert_eq!(Ask::npm("@acme/widget").decide(&rules).rule.as_str(), "core-packages");
        let d = Ask::npm("sandbox-1").decide(&rules);
        assert_eq!((d.rule.as_str(), d.mode), ("sandbox", DeletionMode::Allow));
        // "popular" sets only its download bound: window 24h, 3 owners and 90 days inherited.
        let ask = Ask {
            age: Some(30 * H),
            downloads: Some(9),
            owners: Some(3),
            ..Ask::npm("left-pad")
        };
        let d = ask.decide(&rules);
        allowed(&d);
        assert_eq!(d.rule.as_str(), "popular");
        assert_eq!(d.facts_used[0], "age 30h > window 24h");
        let d = Ask {
            downloads: Some(10),
            ..ask
        }
        .decide(&rules);
        assert!(refused(&d).1.contains("(fewer than 10 are required)"), "{d:?}");
        allowed(
            &Ask {
                age: Some(23 * H),
                downloads: Some(10),
                ..ask
            }
            .decide(&rules),
        );
        let name = ProjectName::parse(Protocol::Npm, "left-pad").expect("valid");
        assert_eq!(rules.name_reservation("npm", &name), NameReservation::For(90 * DAY));
        // Without the catch-all the registry settings decide, reported as the default rule.
        let d = Ask {
            registry: "npm",
            ..ask
        }
        .decide(&compiled(
            "[registries.npm.deletion]\nwindow = \"24h\"\nmax_owners = 3\n[[registries.npm.deletion_rules]]\nid = \"sandbox\"\nnames = [\"sandbox-*\"]\nmode = \"allow\"\n",
        ));
        assert_eq!(d.rule.as_str(), DEFAULT_RULE);
        allowed(&d);
    }

    #[test]
    fn pypi_rule_names_are_normalised() {
        let rules = compiled(
            "[[registries.pypi.deletion_rules]]\nid = \"frozen\"\nnames = [\"Acme_Core*\"]\nmode = \"never\"\n",
        );
        let d = Ask {
            registry: "pypi",
            ..Ask::npm("acme.core.utils")
        }
        .decide(&rules);
        assert_eq!((d.rule.as_str(), d.mode), ("frozen", DeletionMode::Never));
    }

    #[test]
    fn invalid_deletion_settings_name_their_field() {
        let rule = |body: &str| format!("[[registries.npm.deletion_rules]]\nid = \"r\"\nnames = [\"x\"]\n{body}\n");
        let cases = [
            (
                "[registries.npm.deletion]\nwindow = \"72 hours\"\n".to_owned(),
                "registries.npm.deletion.window",
                "not a duration",
            ),
            (
                "[registries.npm.deletion]\nwindow = \"\"\n".to_owned(),
                "registries.npm.deletion.window",
                "empty",
            ),
            (
                "[registries.npm.deletion]\nmode = \"sometimes\"\n".to_owned(),
                "registries.npm.deletion.mode",
                "unknown mode \"sometimes\" (use policy, allow, yank_only or never)",
            ),
            (
                "[registries.npm.deletion]\nunknown_age = \"allow\"\n".to_owned(),
                "registries.npm.deletion.unknown_age",
                "use outside_window or refuse",
            ),
            (
                "[registries.npm.deletion]\nunknown_facts = \"allow\"\n".to_owned(),
                "registries.npm.deletion.unknown_facts",
                "use refuse or ignore",
            ),
            (
                "[registries.npm.deletion]\nreserve_deleted_names = \"always\"\n".to_owned(),
                "registries.npm.deletion.reserve_deleted_names",
                "must be \"forever\" or a duration",
            ),
            (
                rule("mode = \"Never\""),
                "registries.npm.deletion_rules[0].mode",
                "unknown mode",
            ),
            (
                rule("window = \"-1h\""),
                "registries.npm.deletion_rules[0].window",
                "negative",
            ),
            (
                rule("reserve_deleted_names = \"1y\""),
                "registries.npm.deletion_rules[0].reserve_deleted_names",
                "unknown unit \"y\"",
            ),
            (
                "[[registries.npm.deletion_rules]]\nid = \"r\"\nnames = []\n".to_owned(),
                "registries.npm.deletion_rules[0].names",
                "at least one name pattern",
            ),
            (
                "[[registries.npm.deletion_rules]]\nid = \"r\"\nnames = [\"a[\"]\n".to_owned(),
                "registries.npm.deletion_rules[0].names[0]",
                "",
            ),
            (
                "[[registries.npm.deletion_rules]]\nid = \"Bad Id\"\nnames = [\"x\"]\n".to_owned(),
                "registries.npm.deletion_rules[0].id",
                "must be 1 to 64 characters",
            ),
            (
                "[[registries.npm.deletion_rules]]\nid = \"deletion.default\"\nnames = [\"x\"]\n".to_owned(),
                "registries.npm.deletion_rules[0].id",
                "is reserved",
            ),
            (
                format!("{}{}", rule(""), rule("")),
                "registries.npm.deletion_rules[1].id",
                "duplicate rule id \"r\"",
            ),
            (
                format!(
                    "[[registries.npm.projects]]\nid = \"r\"\nnames = [\"x\"]\naction = \"allow\"\n{}",
                    rule("")
                ),
                "registries.npm.deletion_rules[0].id",
                "duplicate rule id \"r\"",
            ),
            (
                format!(
                    "[[registries.npm.provenance_rules]]\nid = \"r\"\nnames = [\"x\"]\nmode = \"audit\"\n{}",
                    rule("")
                ),
                "registries.npm.deletion_rules[0].id",
                "duplicate rule id \"r\"",
            ),
        ];
        for (text, field, reason) in cases {
            let err = rules(&text).expect_err(field);
            assert_eq!(err.field, field, "{err}");
            assert_eq!(err.source_name, "r.toml");
            assert!(err.reason.contains(reason), "{err}");
        }
        // Unknown keys are refused by the parser, which names them with their line.
        for text in [
            "[registries.npm.deletion]\ngrace = \"1h\"\n".to_owned(),
            rule("grace = \"1h\""),
            "[registries.npm.deletion]\nmessage = \"no\"\n".to_owned(),
        ] {
            let err = rules(&text).expect_err("unknown field");
            assert!(err.field.starts_with("line "), "{err}");
            assert!(err.reason.contains("unknown field"), "{err}");
        }
        // A project rule may not take the reserved id either.
        let err =
            rules("[[registries.npm.projects]]\nid = \"deletion.default\"\nnames = [\"x\"]\naction = \"allow\"\n")
                .expect_err("reserved");
        assert_eq!(err.field, "registries.npm.projects[0].id");
    }

    #[test]
    fn the_raw_schema_round_trips() {
        let text = r#"
[registries.npm.deletion]
mode = "policy"
window = "72h"
max_weekly_downloads = 300
max_dependents = 0
max_owners = 1
unknown_age = "outside_window"
unknown_facts = "refuse"
reserve_deleted_names = "forever"
shadow = false

[[registries.npm.deletion_rules]]
id = "core-packages"
names = ["core-*", "@acme/*"]
mode = "never"
message = "core packages are never deleted; deprecate instead"
"#;
        let raw: RawRules = toml::from_str(text).expect("parses");
        let npm = &raw.registries["npm"];
        assert_eq!(npm.deletion.window.as_deref(), Some("72h"));
        assert_eq!(npm.deletion.max_weekly_downloads, Some(300));
        assert_eq!(npm.deletion.shadow, Some(false));
        let rule = &npm.deletion_rules[0];
        assert_eq!(
            (
                rule.id.as_str(),
                rule.names.len(),
                rule.mode.as_deref(),
                rule.window.as_deref()
            ),
            ("core-packages", 2, Some("never"), None)
        );
        assert!(compiled(text).policy("npm").deletion.rules.len() == 1);
        // A negative bound is refused by the parser.
        assert!(rules("[registries.npm.deletion]\nmax_owners = -1\n").is_err());
    }

    #[test]
    fn reserved_names_expire_unless_forever() {
        let deleted_at = 1_700_000_000;
        assert!(name_still_reserved(NameReservation::Forever, deleted_at, deleted_at));
        assert!(name_still_reserved(NameReservation::Forever, deleted_at, i64::MAX));
        assert!(name_still_reserved(NameReservation::Forever, i64::MIN, i64::MAX));
        let day = NameReservation::For(DAY);
        assert!(name_still_reserved(day, deleted_at, deleted_at));
        assert!(name_still_reserved(day, deleted_at, deleted_at + 86_399));
        assert!(!name_still_reserved(day, deleted_at, deleted_at + 86_400));
        // A tombstone from the future (clock skew) still blocks.
        assert!(name_still_reserved(day, deleted_at, deleted_at - 10));
        assert!(!name_still_reserved(NameReservation::For(0), deleted_at, deleted_at));
        // No overflow at the edges.
        assert!(name_still_reserved(NameReservation::For(u64::MAX), i64::MAX, i64::MAX));
        assert!(!name_still_reserved(NameReservation::For(1), i64::MIN, i64::MAX));
        assert_eq!(NameReservation::parse("forever"), Ok(NameReservation::Forever));
        assert_eq!(NameReservation::parse("2d"), Ok(NameReservation::For(2 * DAY)));
        assert!(NameReservation::parse("Forever").is_err());
    }

    #[test]
    fn durations_read_back_in_words() {
        assert_eq!(short(80 * H), "80h");
        assert_eq!(short(90 * MINUTE + 5), "1h30m5s");
        assert_eq!(short(45), "45s");
        assert_eq!(short(0), "0s");
        assert_eq!(human_exact(72 * H), "72 hours");
        assert_eq!(human_exact(H), "1 hour");
        assert_eq!(human_exact(14 * DAY), "14 days");
        assert_eq!(human_exact(90 * MINUTE), "90 minutes");
        assert_eq!(human_exact(61), "61 seconds");
        assert_eq!(human_age(80 * H + 59 * MINUTE), "80 hours");
        assert_eq!(human_age(400 * DAY), "400 days");
        assert_eq!(human_age(5 * MINUTE), "5 minutes");
        assert_eq!(human_age(1), "1 second");
    }

    #[test]
    fn names_and_codes_are_stable() {
        let actions: Vec<&str> = [
            DeleteAction::DeleteVersion,
            DeleteAction::DeleteFile,
            DeleteAction::DeleteProject,
            DeleteAction::Yank,
            DeleteAction::Unyank,
        ]
        .iter()
        .map(|a| a.as_str())
        .collect();
        assert_eq!(
            actions,
            ["delete_version", "delete_file", "delete_project", "yank", "unyank"]
        );
        assert!(DeleteAction::DeleteFile.is_deletion());
        assert!(!DeleteAction::Unyank.is_deletion());
        let codes: Vec<&str> = [
            DeletionRefusal::Never,
            DeletionRefusal::YankOnly,
            DeletionRefusal::OutsideWindow,
            DeletionRefusal::UnknownFacts,
        ]
        .iter()
        .map(DeletionRefusal::code)
        .collect();
        assert_eq!(
            codes,
            [
                "deletion_never",
                "deletion_yank_only",
                "deletion_refused",
                "deletion_unknown_facts"
            ]
        );
        let modes: Vec<String> = [
            DeletionMode::Policy,
            DeletionMode::Allow,
            DeletionMode::YankOnly,
            DeletionMode::Never,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(modes, ["policy", "allow", "yank_only", "never"]);
    }

    #[test]
    fn foreign_versions_are_clipped_in_messages() {
        let long = format!("1.0.0\n{}", "x".repeat(5000));
        let project = ProjectName::parse(Protocol::Npm, "acme").expect("valid");
        let d = compiled("").decide_deletion(&DeletionFacts {
            registry: "npm",
            project: &project,
            action: DeleteAction::DeleteVersion,
            version: Some(&long),
            age_seconds: Some(100 * H),
            weekly_downloads: Some(1000),
            dependents: Some(0),
            owners: Some(1),
            is_last_version: Some(false),
            admin_override: None,
        });
        let message = refused(&d).1;
        assert!(message.chars().count() < 600, "{}", message.chars().count());
        assert!(!message.contains('\n'));
    }
}
