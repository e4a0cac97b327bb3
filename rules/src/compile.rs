//! Validation and compilation of raw rules into the immutable value the hot path shares.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use crate::decide::RuleId;
use crate::deletion::{compile_deletion, DeletionPolicy};
use crate::name::{normalize_pypi, Protocol};
use crate::provenance::{compile_provenance, ProvenancePolicy, RawProvenanceSettings};
use crate::publishers::{check_audience, compile_issuer, compile_publisher, Issuer, Publisher};
use crate::schema::{RawProjectRule, RawRegistryRules, RawRules, RawVerdict};

/// One rules file: where it came from (for messages) and its text.
#[derive(Debug, Clone)]
pub struct RuleSource {
    /// A name for messages, usually the file path.
    pub name: String,
    /// The TOML text.
    pub text: String,
}

/// A registry the gateway configuration defines, which rules may refer to.
#[derive(Debug, Clone)]
pub struct KnownRegistry {
    /// The registry's name.
    pub name: String,
    /// Its protocol, which decides how names in patterns are normalised.
    pub protocol: Protocol,
}

/// A rules file that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {field}: {reason}")]
pub struct RulesError {
    /// The file (or other source) at fault.
    pub source_name: String,
    /// The field path inside it, e.g. `registries.pypi.projects[2].names[0]`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// The verdict of a project rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Allow,
    Deny,
}

impl From<RawVerdict> for Verdict {
    fn from(v: RawVerdict) -> Self {
        match v {
            RawVerdict::Allow => Verdict::Allow,
            RawVerdict::Deny => Verdict::Deny,
        }
    }
}

/// A compiled project rule.
#[derive(Debug)]
pub(crate) struct ProjectRule {
    pub(crate) id: RuleId,
    pub(crate) names: GlobSet,
    pub(crate) verdict: Verdict,
    pub(crate) message: Option<Arc<str>>,
}

/// Compiled policy for one registry.
#[derive(Debug)]
pub(crate) struct RegistryPolicy {
    /// The registry's protocol; `None` for a registry the configuration does not know.
    pub(crate) protocol: Option<Protocol>,
    pub(crate) max_upload_bytes: Option<u64>,
    pub(crate) audience: Option<String>,
    pub(crate) default: Verdict,
    pub(crate) default_message: Option<Arc<str>>,
    pub(crate) projects: Vec<ProjectRule>,
    pub(crate) publishers: Vec<Publisher>,
    pub(crate) provenance: ProvenancePolicy,
    pub(crate) deletion: DeletionPolicy,
}

impl RegistryPolicy {
    /// The policy of a registry without rules; `protocol` picks the default provenance
    /// predicate types (`None`, for a registry the configuration does not know: both sets).
    /// Deletions get the built-in defaults.
    pub(crate) fn empty(protocol: Option<Protocol>) -> Self {
        RegistryPolicy {
            protocol,
            max_upload_bytes: None,
            audience: None,
            default: Verdict::Allow,
            default_message: None,
            projects: Vec::new(),
            publishers: Vec::new(),
            provenance: ProvenancePolicy::defaults(protocol),
            deletion: DeletionPolicy::defaults(),
        }
    }
}

/// Validated, compiled rules: immutable, shared behind an `Arc`, swapped whole on reload.
#[derive(Debug)]
pub struct CompiledRules {
    pub(crate) revision: String,
    pub(crate) sources: Vec<String>,
    pub(crate) issuers: BTreeMap<String, Issuer>,
    pub(crate) registries: HashMap<String, RegistryPolicy>,
    pub(crate) empty: RegistryPolicy,
}

impl CompiledRules {
    /// Content hash of every source (names and texts), 16 hex digits.
    pub fn revision(&self) -> &str {
        &self.revision
    }

    /// The names of the sources compiled, in order.
    pub fn sources(&self) -> &[String] {
        &self.sources
    }

    /// The policy upload limit for a registry, if the rules set one.
    pub fn max_upload_bytes(&self, registry: &str) -> Option<u64> {
        self.policy(registry).max_upload_bytes
    }

    pub(crate) fn policy(&self, registry: &str) -> &RegistryPolicy {
        self.registries.get(registry).unwrap_or(&self.empty)
    }
}

pub(crate) fn error(source: &str, field: impl Into<String>, reason: impl Into<String>) -> RulesError {
    RulesError {
        source_name: source.to_owned(),
        field: field.into(),
        reason: reason.into(),
    }
}

/// The revision (content hash) of a list of sources.
pub fn revision_of(sources: &[RuleSource]) -> String {
    let mut hasher = Sha256::new();
    for source in sources {
        for part in [source.name.as_bytes(), source.text.as_bytes()] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
    }
    hex::encode(&hasher.finalize()[..8])
}

/// Parses, validates and compiles rules from `sources` against the registries the gateway knows.
pub fn compile(sources: &[RuleSource], known: &[KnownRegistry]) -> Result<CompiledRules, RulesError> {
    let protocols: HashMap<&str, Protocol> = known.iter().map(|k| (k.name.as_str(), k.protocol)).collect();
    let mut registries: HashMap<String, RegistryPolicy> = HashMap::new();
    let mut defined_in: BTreeMap<String, String> = BTreeMap::new();

    // Phase 1: parse every file; issuers first, since publishers in any file may name them.
    let mut parsed: Vec<(&RuleSource, RawRules)> = Vec::with_capacity(sources.len());
    let mut issuers: BTreeMap<String, Issuer> = BTreeMap::new();
    let mut issuer_defined_in: BTreeMap<String, String> = BTreeMap::new();
    for source in sources {
        let mut raw: RawRules = toml::from_str(&source.text)
            .map_err(|e| error(&source.name, toml_error_location(&source.text, &e), e.message()))?;
        for (name, raw_issuer) in std::mem::take(&mut raw.issuers) {
            if let Some(first) = issuer_defined_in.insert(name.clone(), source.name.clone()) {
                return Err(error(
                    &source.name,
                    format!("issuers.{name}"),
                    format!("already defined in {first}"),
                ));
            }
            if let Some(other) = issuers.values().find(|i| i.url == raw_issuer.url) {
                return Err(error(
                    &source.name,
                    format!("issuers.{name}.url"),
                    format!("issuer {:?} already has this URL", other.name),
                ));
            }
            let issuer =
                compile_issuer(&name, raw_issuer).map_err(|(field, reason)| error(&source.name, field, reason))?;
            issuers.insert(name, issuer);
        }
        parsed.push((source, raw));
    }

    // Phase 2: registries, with their project rules and publishers.
    for (source, raw) in parsed {
        for (registry, rules) in raw.registries {
            let field = format!("registries.{registry}");
            let Some(&protocol) = protocols.get(registry.as_str()) else {
                let mut names: Vec<&str> = protocols.keys().copied().collect();
                names.sort_unstable();
                return Err(error(
                    &source.name,
                    field,
                    format!(
                        "no registry of that name in the configuration (known: {})",
                        names.join(", ")
                    ),
                ));
            };
            if let Some(first) = defined_in.insert(registry.clone(), source.name.clone()) {
                return Err(error(
                    &source.name,
                    field,
                    format!("this registry's rules are already defined in {first}"),
                ));
            }
            let policy = compile_registry(&source.name, &field, protocol, &issuers, rules)?;
            registries.insert(registry, policy);
        }
    }
    // Registries the configuration knows but no rules file mentions still get their protocol's
    // provenance defaults.
    for known_registry in known {
        registries
            .entry(known_registry.name.clone())
            .or_insert_with(|| RegistryPolicy::empty(Some(known_registry.protocol)));
    }

    Ok(CompiledRules {
        revision: revision_of(sources),
        sources: sources.iter().map(|s| s.name.clone()).collect(),
        issuers,
        registries,
        empty: RegistryPolicy::empty(None),
    })
}

fn compile_registry(
    source: &str,
    field: &str,
    protocol: Protocol,
    issuers: &BTreeMap<String, Issuer>,
    raw: RawRegistryRules,
) -> Result<RegistryPolicy, RulesError> {
    if raw.max_upload_bytes.is_some_and(|b| b.0 == 0) {
        return Err(error(
            source,
            format!("{field}.max_upload_bytes"),
            "must be greater than zero",
        ));
    }
    if let Some(audience) = &raw.audience {
        check_audience(audience).map_err(|reason| error(source, format!("{field}.audience"), reason))?;
        if protocol == Protocol::Npm {
            let host = audience.strip_prefix("npm:").unwrap_or("");
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'));
            if !host_ok {
                return Err(error(
                    source,
                    format!("{field}.audience"),
                    "npm clients ask for \"npm:<registry host name>\" (lower case, without port)",
                ));
            }
        }
    }
    let mut seen = HashSet::new();
    let mut projects = Vec::with_capacity(raw.projects.len());
    for (index, rule) in raw.projects.into_iter().enumerate() {
        let rule_field = format!("{field}.projects[{index}]");
        projects.push(compile_project_rule(source, &rule_field, protocol, rule, &mut seen)?);
    }
    let mut publishers: Vec<Publisher> = Vec::with_capacity(raw.publishers.len());
    for (index, publisher) in raw.publishers.into_iter().enumerate() {
        let publisher_field = format!("{field}.publishers[{index}]");
        check_id(source, &publisher_field, &publisher.id)?;
        if !seen.insert(publisher.id.clone()) {
            return Err(error(
                source,
                format!("{publisher_field}.id"),
                format!("duplicate rule id {:?}", publisher.id),
            ));
        }
        let compiled = compile_publisher(protocol, issuers, publisher)
            .map_err(|(f, reason)| error(source, format!("{publisher_field}.{f}"), reason))?;
        let issuer_has_audience = issuers.get(&compiled.issuer).is_some_and(|i| i.audience.is_some());
        if raw.audience.is_none() && !issuer_has_audience {
            return Err(error(
                source,
                format!("{field}.audience"),
                format!(
                    "publisher {:?} needs an audience: set this registry's audience or its issuer's",
                    compiled.id.as_str()
                ),
            ));
        }
        publishers.push(compiled);
    }
    let provenance = compile_provenance(
        source,
        field,
        protocol,
        RawProvenanceSettings {
            mode: raw.provenance,
            shadow: raw.provenance_shadow,
            predicates: raw.provenance_predicates,
            rules: raw.provenance_rules,
        },
        &mut seen,
    )?;
    let deletion = compile_deletion(source, field, protocol, raw.deletion, raw.deletion_rules, &mut seen)?;
    Ok(RegistryPolicy {
        protocol: Some(protocol),
        max_upload_bytes: raw.max_upload_bytes.map(|b| b.0),
        audience: raw.audience,
        default: raw.default.map_or(Verdict::Allow, Verdict::from),
        default_message: raw.default_message.map(Arc::from),
        projects,
        publishers,
        provenance,
        deletion,
    })
}

/// Rule and publisher ids: 1 to 64 of a-z, 0-9, '-', '_', '.', and not reserved.
pub(crate) fn check_id(source: &str, field: &str, id: &str) -> Result<(), RulesError> {
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'));
    if !id_ok {
        return Err(error(
            source,
            format!("{field}.id"),
            "must be 1 to 64 characters of a-z, 0-9, '-', '_' or '.'",
        ));
    }
    if id == RuleId::DEFAULT || id.starts_with("deletion.") || id.starts_with("builtin.") {
        return Err(error(
            source,
            format!("{field}.id"),
            format!("{id:?} is reserved (\"default\", \"builtin.*\" and \"deletion.*\" name built-in rules)"),
        ));
    }
    Ok(())
}

fn compile_project_rule(
    source: &str,
    field: &str,
    protocol: Protocol,
    raw: RawProjectRule,
    seen: &mut HashSet<String>,
) -> Result<ProjectRule, RulesError> {
    check_id(source, field, &raw.id)?;
    if !seen.insert(raw.id.clone()) {
        return Err(error(
            source,
            format!("{field}.id"),
            format!("duplicate rule id {:?}", raw.id),
        ));
    }
    let names = compile_names(source, field, protocol, &raw.names)?;
    Ok(ProjectRule {
        id: RuleId::new(&raw.id),
        names,
        verdict: raw.action.into(),
        message: raw.message.map(Arc::from),
    })
}

/// Compiles the `names` of a rule (at `field`): globs over names normalised like project names.
pub(crate) fn compile_names(
    source: &str,
    field: &str,
    protocol: Protocol,
    patterns: &[String],
) -> Result<GlobSet, RulesError> {
    if patterns.is_empty() {
        return Err(error(
            source,
            format!("{field}.names"),
            "at least one name pattern is required",
        ));
    }
    let mut builder = GlobSetBuilder::new();
    for (index, pattern) in patterns.iter().enumerate() {
        let normalised = match protocol {
            Protocol::Pypi => normalize_pypi(pattern),
            Protocol::Npm => pattern.clone(),
        };
        let glob = Glob::new(&normalised)
            .map_err(|e| error(source, format!("{field}.names[{index}]"), e.kind().to_string()))?;
        builder.add(glob);
    }
    builder
        .build()
        .map_err(|e| error(source, format!("{field}.names"), e.to_string()))
}

/// Where in `text` a TOML parse error is, as `line L, column C` (or `(document)`), for the
/// rules files and the gateway's configuration file alike.
pub fn toml_error_location(text: &str, error: &toml::de::Error) -> String {
    match error.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("line {line}, column {column}")
        }
        None => "(document)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<KnownRegistry> {
        vec![
            KnownRegistry {
                name: "pypi".into(),
                protocol: Protocol::Pypi,
            },
            KnownRegistry {
                name: "npm".into(),
                protocol: Protocol::Npm,
            },
        ]
    }

    fn source(text: &str) -> Vec<RuleSource> {
        vec![RuleSource {
            name: "rules.toml".into(),
            text: text.into(),
        }]
    }

    #[test]
    fn unknown_registry_names_file_field_and_known_ones() {
        let err = compile(&source("[registries.pipy]\n"), &known()).expect_err("must fail");
        assert_eq!(err.source_name, "rules.toml");
        assert_eq!(err.field, "registries.pipy");
        assert!(err.reason.contains("known: npm, pypi"), "{}", err.reason);
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = compile(&source("[registries.pypi]\nmax_upload_bytes = \"ten\"\n"), &known()).expect_err("must fail");
        assert!(err.field.starts_with("line 2"), "{}", err.field);
    }

    #[test]
    fn duplicate_and_reserved_ids_are_refused() {
        let dup = "[[registries.pypi.projects]]\nid='a'\nnames=['x']\naction='deny'\n\
                   [[registries.pypi.projects]]\nid='a'\nnames=['y']\naction='deny'\n";
        let err = compile(&source(dup), &known()).expect_err("dup");
        assert_eq!(err.field, "registries.pypi.projects[1].id");
        let reserved = "[[registries.pypi.projects]]\nid='default'\nnames=['x']\naction='deny'\n";
        assert!(compile(&source(reserved), &known()).is_err());
    }

    #[test]
    fn a_registry_defined_in_two_files_is_refused() {
        let sources = vec![
            RuleSource {
                name: "a.toml".into(),
                text: "[registries.npm]\n".into(),
            },
            RuleSource {
                name: "b.toml".into(),
                text: "[registries.npm]\n".into(),
            },
        ];
        let err = compile(&sources, &known()).expect_err("must fail");
        assert_eq!(err.source_name, "b.toml");
        assert!(err.reason.contains("a.toml"));
    }

    #[test]
    fn revision_changes_with_content_and_is_stable() {
        let a = compile(&source("[registries.npm]\n"), &known()).expect("ok");
        let b = compile(&source("[registries.npm]\n"), &known()).expect("ok");
        let c = compile(&source("[registries.npm]\ndefault='deny'\n"), &known()).expect("ok");
        assert_eq!(a.revision(), b.revision());
        assert_ne!(a.revision(), c.revision());
        assert_eq!(a.revision().len(), 16);
    }

    #[test]
    fn zero_size_limit_is_refused() {
        let err = compile(&source("[registries.npm]\nmax_upload_bytes = 0\n"), &known()).expect_err("zero");
        assert_eq!(err.field, "registries.npm.max_upload_bytes");
    }
}
