//! The Sigstore TUF repositories the gateway knows by name, with the initial `root.json` of
//! each shipped inside the binary (see `anchors/README.md` for where they come from).

/// A Sigstore instance with a public TUF repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instance {
    /// Sigstore's public-good production instance.
    Production,
    /// Sigstore's public-good staging instance.
    Staging,
}

impl Instance {
    /// The instance called `name` in the config (`"production"` or `"staging"`).
    pub fn from_name(name: &str) -> Option<Instance> {
        match name {
            "production" => Some(Instance::Production),
            "staging" => Some(Instance::Staging),
            _ => None,
        }
    }

    /// The name used in the config and on `/trust`.
    pub fn name(self) -> &'static str {
        match self {
            Instance::Production => "production",
            Instance::Staging => "staging",
        }
    }

    /// The TUF repository's base URL (metadata at `<url>/`, targets at `<url>/targets/`).
    pub fn repository(self) -> &'static str {
        match self {
            Instance::Production => "https://tuf-repo-cdn.sigstore.dev",
            Instance::Staging => "https://tuf-repo-cdn.sigstage.dev",
        }
    }

    /// The initial `root.json` shipped in the binary.
    pub fn anchor(self) -> &'static [u8] {
        match self {
            Instance::Production => include_bytes!("anchors/production.root.json"),
            Instance::Staging => include_bytes!("anchors/staging.root.json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Instance;

    #[test]
    fn the_shipped_anchors_are_self_signed_tuf_roots_of_the_expected_versions() {
        for (instance, version) in [(Instance::Production, 16), (Instance::Staging, 14)] {
            let trusted = sigstore_tuf::TrustedMetadataSet::from_root(instance.anchor())
                .unwrap_or_else(|e| panic!("{} anchor: {e}", instance.name()));
            assert_eq!(trusted.root().version, version, "{}", instance.name());
            assert!(trusted.root().consistent_snapshot, "{}", instance.name());
        }
    }

    #[test]
    fn a_tampered_anchor_is_refused() {
        let text = String::from_utf8(Instance::Production.anchor().to_vec()).expect("utf-8");
        let tampered = text.replacen("\"version\": 16", "\"version\": 17", 1);
        assert_ne!(text, tampered, "the anchor's version field moved");
        assert!(sigstore_tuf::TrustedMetadataSet::from_root(tampered.as_bytes()).is_err());
    }

    #[test]
    fn instances_are_known_by_their_config_names() {
        for instance in [Instance::Production, Instance::Staging] {
            assert_eq!(Instance::from_name(instance.name()), Some(instance));
        }
        assert_eq!(Instance::from_name("prod"), None);
    }
}
