//! The rules files: TOML → `portcullis_rules::compile` (schema, issuers, publishers, project
//! patterns, provenance and deletion policy) against the registries a gateway knows, then one
//! decision on the compiled rules.
//!
//! Input: the rules text; a line `#--next-file--` splits it into two sources (issuers in one
//! file, publishers naming them in another is a path of its own).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_rules::{compile, KnownRegistry, ProjectName, Protocol, RuleSource, WriteAction, WriteFacts};

const SPLIT: &str = "\n#--next-file--\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources: Vec<RuleSource> = text
        .splitn(2, SPLIT)
        .enumerate()
        .map(|(i, text)| RuleSource {
            name: format!("rules-{i}.toml"),
            text: text.to_owned(),
        })
        .collect();
    let known = [
        KnownRegistry {
            name: "pypi".to_owned(),
            protocol: Protocol::Pypi,
        },
        KnownRegistry {
            name: "npm".to_owned(),
            protocol: Protocol::Npm,
        },
    ];
    let Ok(rules) = compile(&sources, &known) else {
        return;
    };
    assert_eq!(rules.revision(), portcullis_rules::compile::revision_of(&sources));
    let _ = rules.max_upload_bytes("pypi");
    for (registry, protocol, name) in [
        ("pypi", Protocol::Pypi, "example-project"),
        ("npm", Protocol::Npm, "@acme/widget"),
    ] {
        let Ok(project) = ProjectName::parse(protocol, name) else {
            continue;
        };
        let facts = WriteFacts {
            registry,
            project: &project,
            action: WriteAction::Upload,
            body_bytes: 1 << 20,
        };
        let _ = rules.decide_write(&facts);
    }
});
