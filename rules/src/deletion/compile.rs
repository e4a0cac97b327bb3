//! Validation of the deletion keys as written ([`super::raw`]) into the compiled policy of one
//! registry: every key checked and named in errors, rules inheriting the registry's
//! `[deletion]` values, which inherit the built-in defaults.

use std::collections::HashSet;
use std::sync::Arc;

use globset::GlobSet;

use super::raw::{RawDeletionRule, RawDeletionSettings};
use super::{
    DeletionMode, NameReservation, DEFAULT_MAX_DEPENDENTS, DEFAULT_MAX_OWNERS, DEFAULT_MAX_WEEKLY_DOWNLOADS,
    DEFAULT_RULE, DEFAULT_WINDOW_SECS,
};
use crate::compile::{check_id, compile_names, error, RulesError};
use crate::decide::RuleId;
use crate::name::{ProjectName, Protocol};
use crate::publishers::foreign;

/// How a version whose publish time is unknown is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnknownAge {
    OutsideWindow,
    Refuse,
}

/// How unknown downloads, dependents or owners count after the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum UnknownFacts {
    Refuse,
    Ignore,
}

/// The settings of a compiled deletion rule (or of the registry's defaults).
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    pub(super) mode: DeletionMode,
    pub(super) window: u64,
    pub(super) max_weekly_downloads: u64,
    pub(super) max_dependents: u64,
    pub(super) max_owners: u64,
    pub(super) unknown_age: UnknownAge,
    pub(super) unknown_facts: UnknownFacts,
    pub(super) reserve: NameReservation,
    pub(super) shadow: bool,
}

/// The built-in defaults, which `[deletion]` overlays.
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
    pub(super) id: RuleId,
    pub(super) names: GlobSet,
    pub(super) settings: Settings,
    pub(super) message: Option<Arc<str>>,
}

/// Compiled deletion policy of one registry.
#[derive(Debug)]
pub(crate) struct DeletionPolicy {
    pub(super) rules: Vec<DeletionRule>,
    pub(super) default: DeletionRule,
}

impl DeletionPolicy {
    /// The policy of a registry whose rules say nothing about deletion: the built-in defaults.
    pub(crate) fn defaults() -> Self {
        DeletionPolicy {
            rules: Vec::new(),
            default: default_rule(BUILT_IN),
        }
    }

    /// The first rule whose names match `project`, else the registry's defaults.
    pub(super) fn rule_for(&self, project: &ProjectName) -> &DeletionRule {
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

impl DeletionMode {
    /// The mode written as `text` in a rules file, if it names one.
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
