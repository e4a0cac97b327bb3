//! Validation of the provenance keys as written ([`super::raw`]) into the compiled policy of
//! one registry: predicate types and build triggers checked, rules inheriting the registry's
//! mode, shadow and predicate types, which default per protocol.

use std::collections::HashSet;
use std::sync::Arc;

use globset::GlobSet;

use super::raw::{RawProvenanceMode, RawProvenanceSettings};
use super::{ProvenanceMode, NEVER_TRIGGER, NPM_DEFAULT_PREDICATES, PYPI_DEFAULT_PREDICATES};
use crate::compile::{check_id, compile_names, error, RulesError};
use crate::decide::RuleId;
use crate::name::{ProjectName, Protocol};

impl From<RawProvenanceMode> for ProvenanceMode {
    fn from(raw: RawProvenanceMode) -> Self {
        match raw {
            RawProvenanceMode::Required => ProvenanceMode::Required,
            RawProvenanceMode::Optional => ProvenanceMode::Optional,
            RawProvenanceMode::Audit => ProvenanceMode::Audit,
        }
    }
}

/// A compiled provenance rule (also the registry's defaults, with no names).
#[derive(Debug)]
pub(crate) struct ProvenanceRule {
    pub(crate) id: RuleId,
    pub(crate) names: GlobSet,
    pub(crate) mode: ProvenanceMode,
    pub(crate) shadow: bool,
    pub(crate) predicates: Arc<[String]>,
    pub(crate) build_triggers: Option<Vec<String>>,
    pub(crate) allow_repository_change: bool,
    pub(crate) allow_downgrade: bool,
}

/// Compiled provenance policy of one registry.
#[derive(Debug)]
pub(crate) struct ProvenancePolicy {
    pub(crate) rules: Vec<ProvenanceRule>,
    pub(crate) default: ProvenanceRule,
}

impl ProvenancePolicy {
    /// The policy of a registry whose rules say nothing about provenance: optional, no shadow,
    /// the protocol's predicate types (both protocols' when unknown).
    pub(crate) fn defaults(protocol: Option<Protocol>) -> Self {
        ProvenancePolicy {
            rules: Vec::new(),
            default: default_rule(ProvenanceMode::Optional, false, default_predicates(protocol)),
        }
    }

    /// The first rule whose names match `project`, else the registry's defaults.
    pub(super) fn rule_for(&self, project: &ProjectName) -> &ProvenanceRule {
        self.rules
            .iter()
            .find(|r| r.names.is_match(project.as_str()))
            .unwrap_or(&self.default)
    }
}

fn default_rule(mode: ProvenanceMode, shadow: bool, predicates: Arc<[String]>) -> ProvenanceRule {
    ProvenanceRule {
        id: RuleId::new(RuleId::DEFAULT),
        names: GlobSet::empty(),
        mode,
        shadow,
        predicates,
        build_triggers: None,
        allow_repository_change: false,
        allow_downgrade: false,
    }
}

fn default_predicates(protocol: Option<Protocol>) -> Arc<[String]> {
    let lists: &[&[&str]] = match protocol {
        Some(Protocol::Pypi) => &[PYPI_DEFAULT_PREDICATES],
        Some(Protocol::Npm) => &[NPM_DEFAULT_PREDICATES],
        None => &[PYPI_DEFAULT_PREDICATES, NPM_DEFAULT_PREDICATES],
    };
    let mut out: Vec<String> = Vec::new();
    for p in lists.iter().flat_map(|l| l.iter()) {
        if !out.iter().any(|o| o == p) {
            out.push((*p).to_owned());
        }
    }
    out.into()
}

/// Validates and compiles a registry's provenance settings; `seen` holds the ids of its project
/// rules and publishers, which provenance rule ids must not repeat.
pub(crate) fn compile_provenance(
    source: &str,
    field: &str,
    protocol: Protocol,
    raw: RawProvenanceSettings,
    seen: &mut HashSet<String>,
) -> Result<ProvenancePolicy, RulesError> {
    let predicates: Arc<[String]> = match raw.predicates {
        Some(list) => check_predicates(source, &format!("{field}.provenance_predicates"), list)?.into(),
        None => default_predicates(Some(protocol)),
    };
    let shadow = raw.shadow.unwrap_or(false);
    let mut rules = Vec::with_capacity(raw.rules.len());
    for (index, rule) in raw.rules.into_iter().enumerate() {
        let rule_field = format!("{field}.provenance_rules[{index}]");
        check_id(source, &rule_field, &rule.id)?;
        if !seen.insert(rule.id.clone()) {
            return Err(error(
                source,
                format!("{rule_field}.id"),
                format!("duplicate rule id {:?}", rule.id),
            ));
        }
        let names = compile_names(source, &rule_field, protocol, &rule.names)?;
        let rule_predicates = match rule.predicates {
            Some(list) => check_predicates(source, &format!("{rule_field}.predicates"), list)?.into(),
            None => predicates.clone(),
        };
        let build_triggers = rule
            .build_triggers
            .map(|list| check_triggers(source, &format!("{rule_field}.build_triggers"), list))
            .transpose()?;
        rules.push(ProvenanceRule {
            id: RuleId::new(&rule.id),
            names,
            mode: rule.mode.into(),
            shadow: rule.shadow.unwrap_or(shadow),
            predicates: rule_predicates,
            build_triggers,
            allow_repository_change: rule.allow_repository_change,
            allow_downgrade: rule.allow_downgrade,
        });
    }
    Ok(ProvenancePolicy {
        rules,
        default: default_rule(
            raw.mode.map_or(ProvenanceMode::Optional, ProvenanceMode::from),
            shadow,
            predicates,
        ),
    })
}

/// Predicate types are absolute `https://` URIs, compared exactly.
fn check_predicates(source: &str, field: &str, list: Vec<String>) -> Result<Vec<String>, RulesError> {
    if list.is_empty() {
        return Err(error(
            source,
            field,
            "name at least one predicate type (omit the key for the protocol's defaults)",
        ));
    }
    for (index, predicate) in list.iter().enumerate() {
        let rest = predicate.strip_prefix("https://").unwrap_or("");
        let ok = !rest.is_empty()
            && !rest.starts_with('/')
            && !predicate.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            return Err(error(
                source,
                format!("{field}[{index}]"),
                "must be an absolute https:// URI such as \"https://slsa.dev/provenance/v1\"",
            ));
        }
    }
    Ok(list)
}

/// Build triggers are event names (`push`, `release`, `merge_request_event`); never
/// `pull_request_target`.
fn check_triggers(source: &str, field: &str, list: Vec<String>) -> Result<Vec<String>, RulesError> {
    if list.is_empty() {
        return Err(error(
            source,
            field,
            "name at least one trigger (omit the key to accept any but pull_request_target)",
        ));
    }
    for (index, trigger) in list.iter().enumerate() {
        if trigger == NEVER_TRIGGER {
            return Err(error(
                source,
                format!("{field}[{index}]"),
                "pull_request_target can never be allowed",
            ));
        }
        let ok = !trigger.is_empty()
            && trigger.len() <= 64
            && trigger
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-'));
        if !ok {
            return Err(error(
                source,
                format!("{field}[{index}]"),
                "must be an event name such as \"push\" or \"release\" (a-z, 0-9, '_', '-')",
            ));
        }
    }
    Ok(list)
}
