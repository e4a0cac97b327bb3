//! Tests of the provenance policy: compiling the rules, and the decisions on verified, invalid
//! and missing attestations.

use super::*;
use crate::compile::CompiledRules;
use crate::name::Protocol;
use crate::publishers::signer_fixtures::{github_signer, gitlab_signer, google_signer, rules};
use crate::schema::RawRules;

const PUBLISH: &str = "https://docs.pypi.org/attestations/publish/v1";
const SLSA_V1: &str = "https://slsa.dev/provenance/v1";

fn compiled(registry_keys: &str, extra: &str) -> CompiledRules {
    rules(registry_keys, extra).expect("compiles")
}

/// The provenance mode for uploads to `project` on `registry`, and the rule that sets it.
fn provenance_mode(rules: &CompiledRules, registry: &str, project: &ProjectName) -> (ProvenanceMode, RuleId) {
    let rule = rules.policy(registry).provenance.rule_for(project);
    (rule.mode, rule.id.clone())
}

fn name(project: &str) -> ProjectName {
    ProjectName::parse(Protocol::Pypi, project).expect("valid name")
}

fn attested(signer: SignerIdentity) -> Vec<AttestationFacts> {
    vec![AttestationFacts {
        predicate_type: PUBLISH.into(),
        signer,
    }]
}

fn decide(rules: &CompiledRules, project: &str, uploader: Option<&str>, evidence: Evidence<'_>) -> ProvenanceDecision {
    let project = name(project);
    rules.decide_provenance(&ProvenanceFacts {
        registry: "pypi",
        project: &project,
        uploader,
        evidence,
        history: &ProjectHistory::default(),
    })
}

/// The refusal code and message, asserting the outcome is `Refused`.
fn refused(decision: &ProvenanceDecision) -> (ProvenanceRefusal, &str) {
    match &decision.outcome {
        ProvenanceOutcome::Refused { code, message } => (*code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn the_raw_schema_round_trips_and_refuses_unknown_fields() {
    let text = r#"
[registries.pypi]
provenance = "required"
provenance_shadow = true
provenance_predicates = ["https://docs.pypi.org/attestations/publish/v1"]
[[registries.pypi.provenance_rules]]
id = "acme"
names = ["acme-*"]
mode = "audit"
shadow = false
predicates = ["https://slsa.dev/provenance/v1"]
build_triggers = ["push", "release", "workflow_dispatch"]
"#;
    let raw: RawRules = toml::from_str(text).expect("parses");
    let pypi = &raw.registries["pypi"];
    assert_eq!(pypi.provenance, Some(RawProvenanceMode::Required));
    assert_eq!(pypi.provenance_shadow, Some(true));
    assert_eq!(pypi.provenance_predicates.as_deref(), Some(&[PUBLISH.to_owned()][..]));
    let rule = &pypi.provenance_rules[0];
    assert_eq!(
        (rule.id.as_str(), rule.names.as_slice(), rule.mode, rule.shadow),
        (
            "acme",
            &["acme-*".to_owned()][..],
            RawProvenanceMode::Audit,
            Some(false)
        )
    );
    assert_eq!(rule.predicates.as_deref(), Some(&[SLSA_V1.to_owned()][..]));
    assert_eq!(rule.build_triggers.as_ref().map(Vec::len), Some(3));

    let unknown = "[[registries.pypi.provenance_rules]]\nid='a'\nnames=['x']\nmode='required'\nsigner='x'\n";
    let err = toml::from_str::<RawRules>(unknown).expect_err("unknown field");
    assert!(err.to_string().contains("unknown field `signer`"), "{err}");
    let err = rules("provenance = \"mandatory\"", "").expect_err("bad mode");
    assert!(err.field.starts_with("line "), "{err}");
    assert!(err.reason.contains("`required`, `optional`, `audit`"), "{err}");
}

#[test]
fn invalid_provenance_settings_name_their_field() {
    let rule = |body: &str| format!("[[registries.pypi.provenance_rules]]\n{body}\n");
    let cases = [
        (
            "provenance_predicates = [\"http://slsa.dev/provenance/v1\"]".to_owned(),
            String::new(),
            "registries.pypi.provenance_predicates[0]",
        ),
        (
            "provenance_predicates = []".to_owned(),
            String::new(),
            "registries.pypi.provenance_predicates",
        ),
        (
            String::new(),
            rule("id = \"p\"\nnames = [\"x\"]\nmode = \"required\"\npredicates = [\"https://slsa.dev/provenance/v1\", \"slsa-v1\"]"),
            "registries.pypi.provenance_rules[0].predicates[1]",
        ),
        (
            String::new(),
            rule("id = \"p\"\nnames = [\"x\"]\nmode = \"required\"\nbuild_triggers = [\"push\", \"pull_request_target\"]"),
            "registries.pypi.provenance_rules[0].build_triggers[1]",
        ),
        (
            String::new(),
            rule("id = \"p\"\nnames = [\"x\"]\nmode = \"required\"\nbuild_triggers = [\"Push \"]"),
            "registries.pypi.provenance_rules[0].build_triggers[0]",
        ),
        (
            String::new(),
            rule("id = \"p\"\nnames = [\"x\"]\nmode = \"required\"\nbuild_triggers = []"),
            "registries.pypi.provenance_rules[0].build_triggers",
        ),
        (
            String::new(),
            rule("id = \"p\"\nnames = []\nmode = \"required\""),
            "registries.pypi.provenance_rules[0].names",
        ),
        (
            String::new(),
            rule("id = \"p\"\nnames = [\"a[\"]\nmode = \"required\""),
            "registries.pypi.provenance_rules[0].names[0]",
        ),
        (
            String::new(),
            rule("id = \"default\"\nnames = [\"x\"]\nmode = \"required\""),
            "registries.pypi.provenance_rules[0].id",
        ),
        (
            String::new(),
            rule("id = \"Bad Id\"\nnames = [\"x\"]\nmode = \"required\""),
            "registries.pypi.provenance_rules[0].id",
        ),
    ];
    for (registry_keys, extra, field) in cases {
        let err = rules(&registry_keys, &extra).expect_err(field);
        assert_eq!(err.field, field, "{err}");
        assert_eq!(err.source_name, "r.toml");
    }
}

#[test]
fn ids_are_unique_across_project_rules_publishers_and_provenance_rules() {
    let provenance =
        |id: &str| format!("[[registries.pypi.provenance_rules]]\nid = \"{id}\"\nnames = [\"x\"]\nmode = \"audit\"\n");
    // Same id as a publisher.
    let err = rules("", &provenance("gitlab-oidc")).expect_err("publisher id");
    assert_eq!(err.field, "registries.pypi.provenance_rules[0].id");
    assert!(err.reason.contains("duplicate rule id \"gitlab-oidc\""), "{err}");
    // Same id as a project rule.
    let project = "[[registries.pypi.projects]]\nid = \"acme\"\nnames = [\"acme-*\"]\naction = \"allow\"\n";
    let err = rules("", &format!("{project}{}", provenance("acme"))).expect_err("project id");
    assert_eq!(err.field, "registries.pypi.provenance_rules[0].id");
    // Same id twice among provenance rules.
    let err = rules("", &format!("{}{}", provenance("acme"), provenance("acme"))).expect_err("twice");
    assert_eq!(err.field, "registries.pypi.provenance_rules[1].id");
    // A project rule may not reuse a publisher's id either.
    let err = rules(
        "",
        "[[registries.pypi.projects]]\nid = \"gcb\"\nnames = [\"x\"]\naction = \"allow\"\n",
    )
    .expect_err("project rule reusing a publisher id");
    assert!(err.field.ends_with(".id"), "{err}");
    assert!(rules("", &provenance("acme")).is_ok());
}

#[test]
fn missing_provenance_is_refused_only_when_required() {
    let required = compiled("provenance = \"required\"", "");
    let project = name("pypi-attestations");
    assert_eq!(
        provenance_mode(&required, "pypi", &project),
        (ProvenanceMode::Required, RuleId::new(RuleId::DEFAULT))
    );
    let d = decide(
        &required,
        "pypi-attestations",
        Some("pypi-attestations"),
        Evidence::None,
    );
    assert_eq!(
        (d.rule.as_str(), d.mode, d.shadow),
        ("default", ProvenanceMode::Required, false)
    );
    let (code, message) = refused(&d);
    assert_eq!(code.code(), "provenance_missing");
    assert_eq!(
        message,
        "provenance is required for project pypi-attestations (default); upload with attestations, e.g. twine upload --attestations / npm publish --provenance"
    );
    // An empty list of verified attestations is no provenance.
    assert!(decide(&required, "pypi-attestations", None, Evidence::Verified(&[])).is_refused());

    let optional = compiled("", "");
    assert_eq!(provenance_mode(&optional, "pypi", &project).0, ProvenanceMode::Optional);
    for evidence in [Evidence::None, Evidence::Verified(&[])] {
        let d = decide(&optional, "pypi-attestations", None, evidence);
        assert_eq!(d.outcome, ProvenanceOutcome::NotPresent);
        assert_eq!(d.signer_publisher, None);
    }
    let audit = compiled("provenance = \"audit\"", "");
    assert_eq!(
        decide(&audit, "pypi-attestations", None, Evidence::None).outcome,
        ProvenanceOutcome::NotPresent
    );
}

#[test]
fn invalid_attestations_are_refused_even_when_optional_and_recorded_in_audit() {
    let why = "checkpoint: the signature does not verify";
    let optional = compiled("", "");
    let d = decide(&optional, "pypi-attestations", None, Evidence::Invalid(why));
    let (code, message) = refused(&d);
    assert_eq!(code, ProvenanceRefusal::Invalid);
    assert_eq!(code.code(), "provenance_invalid");
    assert_eq!(message, format!("the attestations could not be verified: {why}"));

    let long = "x".repeat(10_000);
    let d = decide(&optional, "pypi-attestations", None, Evidence::Invalid(&long));
    assert!(refused(&d).1.chars().count() < 260);

    let audit = compiled("provenance = \"audit\"", "");
    let d = decide(&audit, "pypi-attestations", None, Evidence::Invalid(why));
    assert_eq!(d.mode, ProvenanceMode::Audit);
    assert!(!d.is_refused());
    match d.outcome {
        ProvenanceOutcome::Recorded {
            would_refuse: Some((ProvenanceRefusal::Invalid, ref message)),
        } => assert!(message.contains(why)),
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn provenance_the_gateway_cannot_verify_now_is_refused_as_temporary_and_recorded_in_audit() {
    let why = "timestamp metadata expired";
    let optional = compiled("", "");
    for (expired, want) in [
        (false, ProvenanceRefusal::TrustUnavailable),
        (true, ProvenanceRefusal::TrustExpired),
    ] {
        let d = decide(
            &optional,
            "pypi-attestations",
            None,
            Evidence::Unverifiable { expired, why },
        );
        let (code, message) = refused(&d);
        assert_eq!(code, want);
        assert!(code.is_temporary());
        assert!(
            message.contains(why) && message.contains("try again later"),
            "{message}"
        );
    }
    assert_eq!(
        ProvenanceRefusal::TrustUnavailable.code(),
        "provenance_trust_unavailable"
    );
    assert_eq!(ProvenanceRefusal::TrustExpired.code(), "provenance_trust_expired");
    assert!(!ProvenanceRefusal::Invalid.is_temporary());

    // No attestations: the trust root is not needed, and nothing changes.
    let d = decide(&optional, "pypi-attestations", None, Evidence::None);
    assert_eq!(d.outcome, ProvenanceOutcome::NotPresent);

    let audit = compiled("provenance = \"audit\"", "");
    let d = decide(
        &audit,
        "pypi-attestations",
        None,
        Evidence::Unverifiable { expired: true, why },
    );
    assert!(!d.is_refused());
    match d.outcome {
        ProvenanceOutcome::Recorded {
            would_refuse: Some((ProvenanceRefusal::TrustExpired, ref message)),
        } => assert!(message.contains(why)),
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn predicate_types_must_be_accepted() {
    let rules = compiled("", "");
    let slsa_v02 = vec![AttestationFacts {
        predicate_type: "https://slsa.dev/provenance/v0.2".into(),
        signer: github_signer(),
    }];
    let d = decide(&rules, "pypi-attestations", None, Evidence::Verified(&slsa_v02));
    let (code, message) = refused(&d);
    assert_eq!(code.code(), "provenance_predicate");
    assert!(
        message
            .contains("\"https://slsa.dev/provenance/v0.2\" are not accepted for project pypi-attestations (default)"),
        "{message}"
    );
    assert!(
        message.contains(&format!("accepted: {PUBLISH}, {SLSA_V1}")),
        "{message}"
    );
    // Both PyPI defaults in one upload pass.
    let both = vec![
        AttestationFacts {
            predicate_type: PUBLISH.into(),
            signer: github_signer(),
        },
        AttestationFacts {
            predicate_type: SLSA_V1.into(),
            signer: github_signer(),
        },
    ];
    assert_eq!(
        decide(&rules, "pypi-attestations", None, Evidence::Verified(&both)).outcome,
        ProvenanceOutcome::Accepted
    );
    // A registry's list replaces the defaults; a rule's replaces the registry's.
    let only_publish = compiled(&format!("provenance_predicates = [\"{PUBLISH}\"]"), "");
    assert_eq!(
        refused(&decide(
            &only_publish,
            "pypi-attestations",
            None,
            Evidence::Verified(&both)
        ))
        .0,
        ProvenanceRefusal::Predicate
    );
    let rule = format!(
        "[[registries.pypi.provenance_rules]]\nid = \"slsa\"\nnames = [\"pypi-*\"]\nmode = \"optional\"\npredicates = [\"{SLSA_V1}\"]\n"
    );
    let slsa_only = compiled(&format!("provenance_predicates = [\"{PUBLISH}\"]"), &rule);
    let d = decide(&slsa_only, "pypi-attestations", None, Evidence::Verified(&both));
    assert_eq!(refused(&d).0, ProvenanceRefusal::Predicate);
    assert_eq!(d.rule.as_str(), "slsa");
}

#[test]
fn npm_registries_accept_npm_predicate_types_by_default() {
    let npm = r#"
[registries.npm]
audience = "npm:npm.example.org"
[[registries.npm.publishers]]
id = "npm-widget"
issuer = "github"
projects = ["@acme/widget"]
repository = "acme/widget"
repository_owner_id = "1234"
workflow = "publish.yml"
"#;
    let rules = compiled("", npm);
    let workflow = "https://github.com/acme/widget/.github/workflows/publish.yml@refs/tags/v1.0.0";
    let signer = SignerIdentity {
        sans: vec![workflow.into()],
        build_signer_uri: Some(workflow.into()),
        source_repository_uri: Some("https://github.com/acme/widget".into()),
        source_repository_owner_identifier: Some("1234".into()),
        build_config_uri: Some(workflow.into()),
        ..github_signer()
    };
    let attestations: Vec<AttestationFacts> = [
        "https://slsa.dev/provenance/v0.2",
        "https://github.com/npm/attestation/tree/main/specs/publish/v0.1",
    ]
    .into_iter()
    .map(|p| AttestationFacts {
        predicate_type: p.into(),
        signer: signer.clone(),
    })
    .collect();
    let project = ProjectName::parse(Protocol::Npm, "@acme/widget").expect("valid");
    let d = rules.decide_provenance(&ProvenanceFacts {
        registry: "npm",
        project: &project,
        uploader: Some("npm-widget"),
        evidence: Evidence::Verified(&attestations),
        history: &ProjectHistory::default(),
    });
    assert_eq!(d.outcome, ProvenanceOutcome::Accepted);
    assert_eq!(d.signer_publisher.as_deref(), Some("npm-widget"));
    // The PyPI publish predicate is not an npm one.
    let pypi_kind = vec![AttestationFacts {
        predicate_type: PUBLISH.into(),
        signer,
    }];
    let d = rules.decide_provenance(&ProvenanceFacts {
        registry: "npm",
        project: &project,
        uploader: Some("npm-widget"),
        evidence: Evidence::Verified(&pypi_kind),
        history: &ProjectHistory::default(),
    });
    assert_eq!(refused(&d).0, ProvenanceRefusal::Predicate);
}

#[test]
fn a_known_registry_without_rules_gets_its_protocols_defaults() {
    let rules = compiled("", "");
    let project = ProjectName::parse(Protocol::Npm, "left-pad").expect("valid");
    assert_eq!(
        provenance_mode(&rules, "npm", &project),
        (ProvenanceMode::Optional, RuleId::new(RuleId::DEFAULT))
    );
    let npm_provenance = vec![AttestationFacts {
        predicate_type: "https://slsa.dev/provenance/v0.2".into(),
        signer: github_signer(),
    }];
    let d = rules.decide_provenance(&ProvenanceFacts {
        registry: "npm",
        project: &project,
        uploader: None,
        evidence: Evidence::Verified(&npm_provenance),
        history: &ProjectHistory::default(),
    });
    // The predicate passes; with no publishers, the signer cannot be trusted.
    let (code, message) = refused(&d);
    assert_eq!(code, ProvenanceRefusal::Signer);
    assert!(
        message.contains("no trusted publisher is configured for project left-pad"),
        "{message}"
    );
}

#[test]
fn shadow_turns_refusals_into_records() {
    let shadow = compiled("provenance = \"required\"\nprovenance_shadow = true", "");
    let d = decide(&shadow, "pypi-attestations", None, Evidence::None);
    assert!(d.shadow);
    assert!(!d.is_refused());
    assert_eq!(d.refusal().map(|(code, _)| code), Some(ProvenanceRefusal::Missing));
    assert!(matches!(
        d.outcome,
        ProvenanceOutcome::Recorded {
            would_refuse: Some((ProvenanceRefusal::Missing, _))
        }
    ));
    // Passing provenance is accepted as usual under shadow.
    let good = attested(github_signer());
    let d = decide(&shadow, "pypi-attestations", None, Evidence::Verified(&good));
    assert_eq!((d.outcome, d.shadow), (ProvenanceOutcome::Accepted, true));
    // A rule's own shadow flag overrides the registry's, both ways.
    let rules = "[[registries.pypi.provenance_rules]]\nid = \"enforced\"\nnames = [\"pypi-*\"]\nmode = \"required\"\nshadow = false\n\
                 [[registries.pypi.provenance_rules]]\nid = \"trial\"\nnames = [\"gitlab-*\"]\nmode = \"required\"\nshadow = true\n";
    let mixed = compiled("provenance_shadow = true", rules);
    let d = decide(&mixed, "pypi-attestations", None, Evidence::None);
    assert_eq!((d.rule.as_str(), d.shadow), ("enforced", false));
    assert_eq!(refused(&d).0, ProvenanceRefusal::Missing);
    let unshadowed = compiled("", rules);
    let d = decide(&unshadowed, "gitlab-oidc-project", None, Evidence::Invalid("bad"));
    assert_eq!((d.rule.as_str(), d.shadow), ("trial", true));
    assert_eq!(d.refusal().map(|(code, _)| code), Some(ProvenanceRefusal::Invalid));
    assert!(!d.is_refused());
}

#[test]
fn audit_mode_records_what_it_would_refuse() {
    let audit = compiled("provenance = \"audit\"", "");
    let d = decide(
        &audit,
        "pypi-attestations",
        None,
        Evidence::Verified(&attested(github_signer())),
    );
    assert_eq!(d.outcome, ProvenanceOutcome::Recorded { would_refuse: None });
    assert_eq!(d.signer_publisher.as_deref(), Some("pypi-attestations"));
    let d = decide(
        &audit,
        "unclaimed",
        None,
        Evidence::Verified(&attested(github_signer())),
    );
    assert!(!d.is_refused());
    assert_eq!(d.refusal().map(|(code, _)| code.code()), Some("provenance_signer"));
    assert_eq!(d.signer_publisher, None);
}

#[test]
fn the_uploading_publisher_must_be_the_signer() {
    let rules = compiled("provenance = \"required\"", "");
    let good = attested(github_signer());
    let d = decide(
        &rules,
        "pypi-attestations",
        Some("pypi-attestations"),
        Evidence::Verified(&good),
    );
    assert_eq!(d.outcome, ProvenanceOutcome::Accepted);
    assert_eq!(d.signer_publisher.as_deref(), Some("pypi-attestations"));

    // gitlab-oidc also covers pypi-attestations, but did not sign these attestations.
    let d = decide(
        &rules,
        "pypi-attestations",
        Some("gitlab-oidc"),
        Evidence::Verified(&good),
    );
    let (code, message) = refused(&d);
    assert_eq!(code.code(), "provenance_signer");
    assert!(
        message.starts_with(
            "the attestation was signed by \"https://github.com/trailofbits/pypi-attestations/.github/workflows/release.yml@refs/tags/v0.0.19\" but the upload was authenticated by trusted publisher gitlab-oidc: "
        ),
        "{message}"
    );
    assert!(
        message.contains("issued for tokens of \"https://token.actions.githubusercontent.com\""),
        "{message}"
    );
    assert_eq!(d.signer_publisher, None);

    let d = decide(&rules, "pypi-attestations", Some("nobody"), Evidence::Verified(&good));
    assert!(refused(&d).1.contains("\"nobody\", which this registry does not have"));
    let d = decide(&rules, "pypi-attestations", Some("gcb"), Evidence::Verified(&good));
    assert!(refused(&d)
        .1
        .contains("gcb, which does not cover project pypi-attestations"));
}

#[test]
fn without_an_uploader_the_first_matching_publisher_of_the_project_is_the_signer() {
    let rules = compiled("", "");
    // pypi-attestations is covered by the GitHub publisher first, then the GitLab one.
    let d = decide(
        &rules,
        "pypi-attestations",
        None,
        Evidence::Verified(&attested(github_signer())),
    );
    assert_eq!(d.signer_publisher.as_deref(), Some("pypi-attestations"));
    let d = decide(
        &rules,
        "pypi-attestations",
        None,
        Evidence::Verified(&attested(gitlab_signer())),
    );
    assert_eq!(d.outcome, ProvenanceOutcome::Accepted);
    assert_eq!(d.signer_publisher.as_deref(), Some("gitlab-oidc"));
    // No candidate matches: each says why.
    let mut stranger = github_signer();
    stranger.source_repository_owner_identifier = Some("666".into());
    let d = decide(
        &rules,
        "pypi-attestations",
        None,
        Evidence::Verified(&attested(stranger)),
    );
    let (code, message) = refused(&d);
    assert_eq!(code, ProvenanceRefusal::Signer);
    assert!(
        message.contains("which is not a trusted publisher of project pypi-attestations"),
        "{message}"
    );
    assert!(
        message.contains("pypi-attestations: the repository owner id is \"666\", not 2314423"),
        "{message}"
    );
    assert!(
        message.contains("gitlab-oidc: the certificate was issued for tokens of"),
        "{message}"
    );
    // Every attestation must match the same publisher.
    let mixed = vec![
        AttestationFacts {
            predicate_type: PUBLISH.into(),
            signer: github_signer(),
        },
        AttestationFacts {
            predicate_type: PUBLISH.into(),
            signer: gitlab_signer(),
        },
    ];
    assert!(decide(&rules, "pypi-attestations", None, Evidence::Verified(&mixed)).is_refused());
}

#[test]
fn a_project_without_publishers_cannot_have_a_trusted_signer() {
    let rules = compiled("", "");
    let d = decide(
        &rules,
        "unclaimed",
        None,
        Evidence::Verified(&attested(github_signer())),
    );
    let (code, message) = refused(&d);
    assert_eq!(code, ProvenanceRefusal::Signer);
    assert!(
        message.contains("no trusted publisher is configured for project unclaimed"),
        "{message}"
    );
}

#[test]
fn buildkite_publishers_vouch_for_their_pipelines_attestations() {
    let rules = compiled("", "");
    let buildkite = |pipeline: &str| SignerIdentity {
        issuer: Some("https://agent.buildkite.com".into()),
        sans: vec![format!("https://buildkite.com/acme/{pipeline}")],
        build_trigger: Some("webhook".into()),
        runner_environment: Some("buildkite-hosted".into()),
        ..SignerIdentity::default()
    };
    let d = decide(
        &rules,
        "bk-thing",
        Some("bk"),
        Evidence::Verified(&attested(buildkite("release"))),
    );
    assert_eq!(d.outcome, ProvenanceOutcome::Accepted);
    assert_eq!(d.signer_publisher.as_deref(), Some("bk"));
    let d = decide(
        &rules,
        "bk-thing",
        Some("bk"),
        Evidence::Verified(&attested(buildkite("nightly"))),
    );
    let (code, message) = refused(&d);
    assert_eq!(code, ProvenanceRefusal::Signer);
    assert!(
        message.ends_with("not the pipeline https://buildkite.com/acme/release"),
        "{message}"
    );
}

#[test]
fn signer_checks_through_decisions() {
    let rules = compiled("", "");
    let verify =
        |project: &str, signer: SignerIdentity| decide(&rules, project, None, Evidence::Verified(&attested(signer)));
    // GitHub owner id mismatch.
    let mut replaced = github_signer();
    replaced.source_repository_owner_identifier = Some("1".into());
    assert!(refused(&verify("pypi-attestations", replaced))
        .1
        .contains("owner id is \"1\""));
    // Self-hosted runner.
    let mut self_hosted = github_signer();
    self_hosted.runner_environment = Some("self-hosted".into());
    assert!(refused(&verify("pypi-attestations", self_hosted))
        .1
        .contains("self-hosted runners are not allowed"));
    // GitLab path match and mismatch.
    assert_eq!(
        verify("gitlab-oidc-project", gitlab_signer()).outcome,
        ProvenanceOutcome::Accepted
    );
    let mut other_file = gitlab_signer();
    other_file.build_config_uri =
        Some("https://gitlab.com/facutuesca/gitlab-oidc-project//deploy.yml@refs/heads/main".into());
    assert!(refused(&verify("gitlab-oidc-project", other_file))
        .1
        .contains("not .gitlab-ci.yml"));
    // Google email.
    assert_eq!(
        verify("gcb-thing", google_signer("builder@proj.iam.gserviceaccount.com")).outcome,
        ProvenanceOutcome::Accepted
    );
    assert!(refused(&verify("gcb-thing", google_signer("intruder@evil.example")))
        .1
        .contains("\"intruder@evil.example\""));
}

#[test]
fn build_triggers_are_checked_and_pull_request_target_never_passes() {
    let rules = compiled(
        "",
        "[[registries.pypi.provenance_rules]]\nid = \"releases\"\nnames = [\"gitlab-*\"]\nmode = \"required\"\nbuild_triggers = [\"release\", \"workflow_dispatch\"]\n",
    );
    // No rule list: anything but pull_request_target, which is a trigger refusal.
    let mut prt = github_signer();
    prt.build_trigger = Some("pull_request_target".into());
    let d = decide(&rules, "pypi-attestations", None, Evidence::Verified(&attested(prt)));
    let (code, message) = refused(&d);
    assert_eq!(code.code(), "provenance_trigger");
    assert!(
        message.contains("pull_request_target, which is never accepted"),
        "{message}"
    );
    // A rule's list.
    let d = decide(
        &rules,
        "gitlab-oidc-project",
        None,
        Evidence::Verified(&attested(gitlab_signer())),
    );
    let (code, message) = refused(&d);
    assert_eq!(code, ProvenanceRefusal::Trigger);
    assert_eq!(
        message,
        "the attestation was signed in a build triggered by \"push\"; releases accepts only builds triggered by release, workflow_dispatch for project gitlab-oidc-project"
    );
    let mut released = gitlab_signer();
    released.build_trigger = Some("workflow_dispatch".into());
    let d = decide(
        &rules,
        "gitlab-oidc-project",
        None,
        Evidence::Verified(&attested(released)),
    );
    assert_eq!(d.outcome, ProvenanceOutcome::Accepted);
    let mut unstated = gitlab_signer();
    unstated.build_trigger = None;
    let d = decide(
        &rules,
        "gitlab-oidc-project",
        None,
        Evidence::Verified(&attested(unstated)),
    );
    assert!(refused(&d).1.contains("does not carry a build trigger"));
}

#[test]
fn a_disabled_issuer_vouches_for_nobody() {
    let text = "[issuers.github]\nurl = \"https://token.actions.githubusercontent.com\"\nkind = \"github\"\nenabled = false\n\
                [registries.pypi]\naudience = \"upload.example.org\"\n\
                [[registries.pypi.publishers]]\nid = \"pa\"\nissuer = \"github\"\nprojects = [\"pypi-attestations\"]\n\
                repository = \"trailofbits/pypi-attestations\"\nrepository_owner_id = \"2314423\"\nworkflow = \"release.yml\"\n";
    let rules = crate::compile::compile(
        &[crate::compile::RuleSource {
            name: "r.toml".into(),
            text: text.into(),
        }],
        &[crate::compile::KnownRegistry {
            name: "pypi".into(),
            protocol: Protocol::Pypi,
        }],
    )
    .expect("compiles");
    let d = decide(
        &rules,
        "pypi-attestations",
        Some("pa"),
        Evidence::Verified(&attested(github_signer())),
    );
    assert!(refused(&d).1.contains("its issuer \"github\" is disabled"));
}

#[test]
fn the_first_matching_provenance_rule_decides() {
    let ordered = r#"
[[registries.pypi.provenance_rules]]
id = "acme-legacy"
names = ["acme-legacy-*"]
mode = "audit"
[[registries.pypi.provenance_rules]]
id = "acme"
names = ["Acme_*", "widgets?"]
mode = "required"
[[registries.pypi.provenance_rules]]
id = "everything-else"
names = ["*"]
mode = "optional"
"#;
    let rules = compiled("provenance = \"required\"", ordered);
    let mode = |project: &str| {
        let (mode, rule) = provenance_mode(&rules, "pypi", &name(project));
        (mode, rule.as_str().to_owned())
    };
    assert_eq!(
        mode("acme-legacy-tool"),
        (ProvenanceMode::Audit, "acme-legacy".to_owned())
    );
    assert_eq!(
        mode("Acme.Legacy.Tool"),
        (ProvenanceMode::Audit, "acme-legacy".to_owned())
    );
    assert_eq!(mode("acme-widgets"), (ProvenanceMode::Required, "acme".to_owned()));
    assert_eq!(mode("widgets2"), (ProvenanceMode::Required, "acme".to_owned()));
    assert_eq!(
        mode("requests"),
        (ProvenanceMode::Optional, "everything-else".to_owned())
    );
    let d = decide(&rules, "acme-legacy-tool", None, Evidence::None);
    assert_eq!(
        (d.rule.as_str(), d.outcome),
        ("acme-legacy", ProvenanceOutcome::NotPresent)
    );
    let d = decide(&rules, "acme-widgets", None, Evidence::None);
    assert_eq!(d.rule.as_str(), "acme");
    assert!(refused(&d).1.contains("project acme-widgets (acme)"));
    // Without the catch-all, the registry default decides.
    let rules = compiled(
        "provenance = \"required\"",
        &ordered[..ordered
            .find("[[registries.pypi.provenance_rules]]\nid = \"everything-else\"")
            .expect("present")],
    );
    assert_eq!(
        provenance_mode(&rules, "pypi", &name("requests")),
        (ProvenanceMode::Required, RuleId::new(RuleId::DEFAULT))
    );
}

#[test]
fn refusal_codes_are_stable() {
    let codes: Vec<&str> = [
        ProvenanceRefusal::Missing,
        ProvenanceRefusal::Invalid,
        ProvenanceRefusal::Predicate,
        ProvenanceRefusal::Signer,
        ProvenanceRefusal::Trigger,
    ]
    .iter()
    .map(ProvenanceRefusal::code)
    .collect();
    assert_eq!(
        codes,
        [
            "provenance_missing",
            "provenance_invalid",
            "provenance_predicate",
            "provenance_signer",
            "provenance_trigger"
        ]
    );
    assert_eq!(ProvenanceMode::Audit.to_string(), "audit");
}

#[test]
fn no_downgrade_and_source_repository_pinning_use_the_ledger_history() {
    let rules = compiled("", "");
    let project = name("pypi-attestations");
    let attestations = attested(github_signer());
    let with = |history: &ProjectHistory, evidence: Evidence<'_>| {
        rules.decide_provenance(&ProvenanceFacts {
            registry: "pypi",
            project: &project,
            uploader: None,
            evidence,
            history,
        })
    };
    let fresh = ProjectHistory::default();
    assert_eq!(with(&fresh, Evidence::None).outcome, ProvenanceOutcome::NotPresent);
    let attested_before = ProjectHistory {
        uploads_with_provenance: 2,
        source_repositories: vec!["https://github.com/trailofbits/pypi-attestations".into()],
    };
    let d = with(&attested_before, Evidence::None);
    assert_eq!(refused(&d).0, ProvenanceRefusal::Downgrade, "{d:?}");
    assert_eq!(refused(&d).0.code(), "provenance_downgrade");
    assert_eq!(
        with(&attested_before, Evidence::Verified(&attestations)).outcome,
        ProvenanceOutcome::Accepted
    );
    let moved = ProjectHistory {
        uploads_with_provenance: 1,
        source_repositories: vec!["https://github.com/someone/fork".into()],
    };
    let d = with(&moved, Evidence::Verified(&attestations));
    let (code, message) = refused(&d);
    assert_eq!(code, ProvenanceRefusal::Repository);
    assert!(message.contains("someone/fork"), "{message}");

    // A rule may allow both.
    let lenient = compiled(
        "",
        "[[registries.pypi.provenance_rules]]\nid = \"lenient\"\nnames = [\"pypi-attestations\"]\nmode = \"optional\"\nallow_downgrade = true\nallow_repository_change = true\n",
    );
    let with_lenient = |history: &ProjectHistory, evidence: Evidence<'_>| {
        lenient.decide_provenance(&ProvenanceFacts {
            registry: "pypi",
            project: &project,
            uploader: None,
            evidence,
            history,
        })
    };
    assert_eq!(
        with_lenient(&attested_before, Evidence::None).outcome,
        ProvenanceOutcome::NotPresent
    );
    assert_eq!(
        with_lenient(&moved, Evidence::Verified(&attestations)).outcome,
        ProvenanceOutcome::Accepted
    );
}

#[test]
fn outcomes_read_as_words_in_explanations() {
    let refused = ProvenanceOutcome::Refused {
        code: ProvenanceRefusal::Invalid,
        message: "subject digest differs".into(),
    };
    assert_eq!(
        refused.to_string(),
        "refused, provenance_invalid: subject digest differs"
    );
    assert_eq!(ProvenanceOutcome::Accepted.to_string(), "accepted");
    assert_eq!(
        ProvenanceOutcome::Recorded {
            would_refuse: Some((ProvenanceRefusal::Missing, "none".into()))
        }
        .to_string(),
        "recorded, would refuse provenance_missing: none"
    );
    assert_eq!(
        ProvenanceOutcome::Recorded { would_refuse: None }.to_string(),
        "recorded, would pass"
    );
}
