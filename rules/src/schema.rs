//! Raw rules as written by operators (TOML). These types only deserialize; [`mod@crate::compile`]
//! validates them and builds the types the hot path uses.
//!
//! ```toml
//! [registries.pypi]               # a registry named in the gateway configuration
//! max_upload_bytes = "100 MiB"    # integer bytes or a string with B, KB, KiB, MB, MiB, GB, GiB
//! default = "allow"               # what happens when no project rule matches
//!
//! [[registries.pypi.projects]]
//! id = "no-internal-names"        # stable id, reported in decisions, logs and metrics
//! names = ["internal-*", "corp-*"]
//! action = "deny"
//! message = "internal packages go to the private index"
//! ```
//!
//! Trusted publishers (`publishers`, `[issuers]`) are described in [`crate::publishers`], the
//! provenance keys (`provenance`, `provenance_shadow`, `provenance_predicates`,
//! `provenance_rules`) in [`crate::provenance`], the deletion keys (`deletion`, `deletion_rules`)
//! in [`crate::deletion`].

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A whole rules file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRules {
    /// OIDC issuers trusted for trusted publishing, keyed by a name publishers refer to.
    #[serde(default)]
    pub issuers: BTreeMap<String, crate::publishers::RawIssuer>,
    /// Policy per registry, keyed by the registry's name in the gateway configuration.
    #[serde(default)]
    pub registries: BTreeMap<String, RawRegistryRules>,
}

/// Policy for one registry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegistryRules {
    /// Largest upload body accepted; unset means the registry's hard limit from the config.
    pub max_upload_bytes: Option<ByteSize>,
    /// The audience CI tokens must carry to be exchanged for this registry: this deployment's
    /// own name (PyPI style, served at `/_/oidc/audience`), or for npm `npm:<public host name>`
    /// as the npm CLI computes it. An issuer's own `audience` overrides it.
    pub audience: Option<String>,
    /// Verdict when no project rule matches; `allow` when unset.
    pub default: Option<RawVerdict>,
    /// Message for refusals by the default verdict.
    pub default_message: Option<String>,
    /// Project rules, evaluated in order; the first whose `names` match decides.
    #[serde(default)]
    pub projects: Vec<RawProjectRule>,
    /// Trusted publishers of this registry.
    #[serde(default)]
    pub publishers: Vec<crate::publishers::RawPublisher>,
    /// Whether uploads must carry provenance (attestations) when no provenance rule matches;
    /// `optional` when unset.
    pub provenance: Option<crate::provenance::RawProvenanceMode>,
    /// Record provenance refusals instead of enforcing them, when no provenance rule matches or
    /// the matching rule leaves `shadow` unset; false when unset.
    pub provenance_shadow: Option<bool>,
    /// The in-toto predicate types accepted in attestations; unset means the protocol's
    /// defaults (see [`crate::provenance`]).
    pub provenance_predicates: Option<Vec<String>>,
    /// Provenance rules, evaluated in order; the first whose `names` match decides.
    #[serde(default)]
    pub provenance_rules: Vec<crate::provenance::RawProvenanceRule>,
    /// Registry-wide deletion settings (see [`crate::deletion`]); built-in defaults when unset.
    #[serde(default)]
    pub deletion: crate::deletion::RawDeletionSettings,
    /// Deletion rules, evaluated in order; the first whose `names` match decides.
    #[serde(default)]
    pub deletion_rules: Vec<crate::deletion::RawDeletionRule>,
}

/// One project rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProjectRule {
    /// Stable identifier, unique within the registry.
    pub id: String,
    /// Glob patterns (`*`, `?`, `[abc]`) over normalised project names.
    pub names: Vec<String>,
    /// What happens to writes on a matching project.
    pub action: RawVerdict,
    /// Message shown to the publisher on refusal.
    pub message: Option<String>,
}

/// A verdict as written in a rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawVerdict {
    /// Let the write through (subject to the other checks).
    Allow,
    /// Refuse the write.
    Deny,
}

/// A byte count written as an integer or as a string with a unit (`"100 MiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"512"`, `"64 KiB"`, `"1.5GB"` style sizes. Units: B, KB, KiB, MB, MiB, GB, GiB, TB, TiB.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("{text:?} is not a size such as \"100 MiB\""))?;
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1_000,
            "KiB" => 1 << 10,
            "MB" => 1_000_000,
            "MiB" => 1 << 20,
            "GB" => 1_000_000_000,
            "GiB" => 1 << 30,
            "TB" => 1_000_000_000_000,
            "TiB" => 1 << 40,
            other => {
                return Err(format!(
                    "unknown size unit {other:?} (use B, KB, KiB, MB, MiB, GB, GiB, TB or TiB)"
                ))
            }
        };
        let bytes = number * multiplier as f64;
        if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
            return Err(format!("{text:?} is out of range"));
        }
        Ok(ByteSize(bytes.round() as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte count such as 1048576 or \"1 MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(ByteSize::parse("512"), Ok(ByteSize(512)));
        assert_eq!(ByteSize::parse("64 KiB"), Ok(ByteSize(65_536)));
        assert_eq!(ByteSize::parse("1.5GB"), Ok(ByteSize(1_500_000_000)));
        assert_eq!(ByteSize::parse("100 MiB"), Ok(ByteSize(100 << 20)));
        assert!(ByteSize::parse("10 parsecs").is_err());
        assert!(ByteSize::parse("MiB").is_err());
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err =
            toml::from_str::<RawRules>("[registries.pypi]\nmax_upload = 3\n").expect_err("unknown field must fail");
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
