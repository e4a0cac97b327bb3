//! Decisions: a pure function of compiled rules and the facts of one request.

use std::fmt;
use std::sync::Arc;

use crate::compile::{CompiledRules, Verdict};
use crate::facts::{WriteAction, WriteFacts};

/// The identifier of the rule that decided, as reported in logs, metrics and refusals.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleId(Arc<str>);

impl RuleId {
    /// The id reported when no project rule matched and the registry default decided.
    pub const DEFAULT: &'static str = "default";
    /// The id reported when the upload size limit decided.
    pub const MAX_UPLOAD_BYTES: &'static str = "builtin.max-upload-bytes";

    pub(crate) fn new(id: &str) -> Self {
        RuleId(Arc::from(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why the rules refused a request; the gateway maps each to a status and a stable code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalKind {
    /// A project rule (or the registry default) denies writes to this project.
    ProjectDenied,
    /// The upload is larger than the policy allows.
    TooLarge,
}

/// What the rules decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The request may proceed.
    Allow,
    /// The request is refused.
    Refuse {
        /// Why, as a machine-readable kind.
        kind: RefusalKind,
        /// A message a publisher can act on.
        message: String,
    },
}

/// A decision with the rule that made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or refuse.
    pub outcome: Outcome,
    /// The rule that decided.
    pub rule: RuleId,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        matches!(self.outcome, Outcome::Allow)
    }
}

impl CompiledRules {
    /// Checks only the size limit; used while a body streams so an oversized upload stops early.
    pub fn check_upload_size(&self, registry: &str, body_bytes: u64) -> Option<Decision> {
        let limit = self.policy(registry).max_upload_bytes?;
        (body_bytes > limit).then(|| Decision {
            outcome: Outcome::Refuse {
                kind: RefusalKind::TooLarge,
                message: format!(
                    "the upload is larger than this registry accepts ({} bytes at most)",
                    limit
                ),
            },
            rule: RuleId::new(RuleId::MAX_UPLOAD_BYTES),
        })
    }

    /// Decides a write. Size first (uploads only), then the first matching project rule,
    /// then the registry default.
    pub fn decide_write(&self, facts: &WriteFacts<'_>) -> Decision {
        if facts.action == WriteAction::Upload {
            if let Some(refusal) = self.check_upload_size(facts.registry, facts.body_bytes) {
                return refusal;
            }
        }
        let policy = self.policy(facts.registry);
        let project = facts.project.as_str();
        let (verdict, rule, message) = match policy.projects.iter().find(|r| r.names.is_match(project)) {
            Some(rule) => (rule.verdict, rule.id.clone(), rule.message.clone()),
            None => (
                policy.default,
                RuleId::new(RuleId::DEFAULT),
                policy.default_message.clone(),
            ),
        };
        let outcome = match verdict {
            Verdict::Allow => Outcome::Allow,
            Verdict::Deny => Outcome::Refuse {
                kind: RefusalKind::ProjectDenied,
                message: match message {
                    Some(m) => format!("writes to project '{project}' are not allowed here: {m}"),
                    None => format!("writes to project '{project}' are not allowed on this registry"),
                },
            },
        };
        Decision { outcome, rule }
    }
}

#[cfg(test)]
mod tests {
    use crate::compile::{compile, KnownRegistry, RuleSource};
    use crate::name::{ProjectName, Protocol};

    use super::*;

    const RULES: &str = r#"
[registries.pypi]
max_upload_bytes = "1 KiB"
[[registries.pypi.projects]]
id = "internal"
names = ["internal-*"]
action = "deny"
message = "use the private index"
[[registries.pypi.projects]]
id = "everything-else"
names = ["*"]
action = "allow"

[registries.npm]
default = "deny"
[[registries.npm.projects]]
id = "acme-scope"
names = ["@acme/*"]
action = "allow"
"#;

    fn rules() -> CompiledRules {
        let known = [
            KnownRegistry {
                name: "pypi".into(),
                protocol: Protocol::Pypi,
            },
            KnownRegistry {
                name: "npm".into(),
                protocol: Protocol::Npm,
            },
            KnownRegistry {
                name: "open".into(),
                protocol: Protocol::Npm,
            },
        ];
        compile(
            &[RuleSource {
                name: "r.toml".into(),
                text: RULES.into(),
            }],
            &known,
        )
        .expect("compiles")
    }

    fn decide(registry: &str, protocol: Protocol, project: &str, bytes: u64) -> Decision {
        let name = ProjectName::parse(protocol, project).expect("valid name");
        rules().decide_write(&WriteFacts {
            registry,
            action: WriteAction::Upload,
            project: &name,
            body_bytes: bytes,
        })
    }

    #[test]
    fn first_matching_rule_decides_on_normalised_names() {
        let d = decide("pypi", Protocol::Pypi, "Internal_Tools", 10);
        assert_eq!(d.rule.as_str(), "internal");
        match d.outcome {
            Outcome::Refuse { kind, message } => {
                assert_eq!(kind, RefusalKind::ProjectDenied);
                assert!(
                    message.contains("internal-tools") && message.contains("private index"),
                    "{message}"
                );
            }
            Outcome::Allow => panic!("internal project allowed"),
        }
        let d = decide("pypi", Protocol::Pypi, "requests", 10);
        assert!(d.is_allowed());
        assert_eq!(d.rule.as_str(), "everything-else");
    }

    #[test]
    fn size_limit_comes_first_and_is_exclusive_at_the_limit() {
        assert!(decide("pypi", Protocol::Pypi, "requests", 1024).is_allowed());
        let d = decide("pypi", Protocol::Pypi, "requests", 1025);
        assert_eq!(d.rule.as_str(), RuleId::MAX_UPLOAD_BYTES);
        assert!(matches!(
            d.outcome,
            Outcome::Refuse {
                kind: RefusalKind::TooLarge,
                ..
            }
        ));
    }

    #[test]
    fn default_verdict_applies_when_nothing_matches() {
        assert!(decide("npm", Protocol::Npm, "@acme/widget", 1).is_allowed());
        let d = decide("npm", Protocol::Npm, "left-pad", 1);
        assert_eq!(d.rule.as_str(), RuleId::DEFAULT);
        assert!(!d.is_allowed());
    }

    #[test]
    fn registries_without_rules_allow() {
        let d = decide("open", Protocol::Npm, "anything", u64::MAX);
        assert!(d.is_allowed());
        assert_eq!(d.rule.as_str(), RuleId::DEFAULT);
    }

    #[test]
    fn changes_are_not_size_limited() {
        let name = ProjectName::parse(Protocol::Pypi, "requests").expect("valid");
        let d = rules().decide_write(&WriteFacts {
            registry: "pypi",
            action: WriteAction::Change,
            project: &name,
            body_bytes: 1 << 40,
        });
        assert!(d.is_allowed());
    }
}
