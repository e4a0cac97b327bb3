//! The deletion decision: which rule applies to a request, what the policy alone says about
//! it, then an administrator's override and shadow mode; and whether a deleted name is still
//! reserved.

use super::compile::{DeletionRule, UnknownAge, UnknownFacts};
use super::words::{human_age, human_exact, join_and, plural, short};
use super::{DeleteAction, DeletionMode, NameReservation, CLEANUP_RULE};
use crate::compile::CompiledRules;
use crate::decide::RuleId;
use crate::name::{ProjectName, Protocol};

/// Whether a tombstone made at `deleted_at` (unix seconds) still blocks the name at `now`
/// under `reservation`. A tombstone dated in the future blocks.
pub fn name_still_reserved(reservation: NameReservation, deleted_at: i64, now: i64) -> bool {
    match reservation {
        NameReservation::Forever => true,
        NameReservation::For(secs) => i128::from(now) < i128::from(deleted_at) + i128::from(secs),
    }
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
    /// The matching `deletion_rules` id, or [`DEFAULT_RULE`](super::DEFAULT_RULE) for the
    /// registry's `[deletion]` settings or the built-in defaults.
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
pub(super) struct Request<'r, 'a> {
    pub(super) facts: &'r DeletionFacts<'a>,
    pub(super) protocol: Option<Protocol>,
    pub(super) removes_project: bool,
    pub(super) rule: &'r DeletionRule,
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
}
