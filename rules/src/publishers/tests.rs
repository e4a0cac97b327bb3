//! Tests of issuers and publishers: compiling them, and matching token claims to publishers.

use std::collections::BTreeMap;

use super::*;
use crate::compile::{compile, CompiledRules, KnownRegistry, RuleSource};
use crate::name::Protocol;

struct Map(BTreeMap<String, String>);

impl Claims for Map {
    fn string(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
    fn boolean(&self, name: &str) -> Option<bool> {
        self.0.get(name).and_then(|v| v.parse().ok())
    }
}

const ISSUERS: &str = r#"
[issuers.github]
url = "https://token.actions.githubusercontent.com"
kind = "github"
audience = "upload.example.org"
[issuers.gitlab-internal]
url = "https://gitlab.internal.example"
kind = "gitlab"
audience = "upload.example.org"
[issuers.google]
url = "https://accounts.google.com"
kind = "google"
audience = "upload.example.org"
[issuers.buildkite]
url = "https://agent.buildkite.com"
kind = "buildkite"
audience = "upload.example.org"
algorithms = ["RS256"]
"#;

const PUBLISHERS: &str = r#"
[[registries.pypi.publishers]]
id = "widgets"
issuer = "github"
projects = ["Acme.Widgets", "acme-tools"]
repository = "acme/widgets"
repository_owner_id = "1234"
workflow = "release.yml"

[[registries.pypi.publishers]]
id = "widgets-prod"
issuer = "github"
projects = ["acme-widgets"]
repository = "acme/widgets"
repository_owner_id = "1234"
workflow = "release.yml"
environment = "pypi"

[[registries.pypi.publishers]]
id = "shared-ci"
issuer = "github"
projects = ["acme-shared"]
repository = "acme/shared"
repository_owner_id = "1234"
workflow = "release.yml"
reusable_workflow = "acme/ci/.github/workflows/publish.yml"
allow_self_hosted = true

[[registries.pypi.publishers]]
id = "gitlab"
issuer = "gitlab-internal"
projects = ["internal-lib"]
project_path = "platform/lib"
ci_config_path = ".gitlab-ci.yml"
environment = "Release"

[[registries.pypi.publishers]]
id = "gcb"
issuer = "google"
projects = ["gcb-thing"]
email = "builder@proj.iam.gserviceaccount.com"

[[registries.pypi.publishers]]
id = "bk"
issuer = "buildkite"
projects = ["bk-thing"]
claims = { organization_slug = "acme", pipeline_slug = "release" }
"#;

fn rules(extra: &str) -> Result<CompiledRules, crate::RulesError> {
    let known = [KnownRegistry {
        name: "pypi".into(),
        protocol: Protocol::Pypi,
    }];
    compile(
        &[RuleSource {
            name: "r.toml".into(),
            text: format!("{ISSUERS}{extra}"),
        }],
        &known,
    )
}

fn github_claims() -> BTreeMap<String, String> {
    [
        ("repository", "Acme/Widgets"),
        ("repository_owner_id", "1234"),
        (
            "workflow_ref",
            "acme/widgets/.github/workflows/release.yml@refs/tags/v1.0",
        ),
        (
            "job_workflow_ref",
            "acme/widgets/.github/workflows/release.yml@refs/tags/v1.0",
        ),
        ("event_name", "push"),
        ("runner_environment", "github-hosted"),
        ("ref", "refs/tags/v1.0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn matched(
    rules: &CompiledRules,
    issuer: &str,
    claims: BTreeMap<String, String>,
) -> Result<Vec<String>, Vec<Mismatch>> {
    let issuer = rules.issuer_by_url(issuer).expect("issuer");
    rules
        .match_publishers("pypi", issuer, &Map(claims))
        .map(|ps| ps.iter().map(|p| p.id.to_string()).collect())
}

const GH: &str = "https://token.actions.githubusercontent.com";

#[test]
fn github_publishers_match_and_the_most_specific_comes_first() {
    let rules = rules(PUBLISHERS).expect("compiles");
    assert_eq!(matched(&rules, GH, github_claims()).expect("match"), vec!["widgets"]);
    let mut with_env = github_claims();
    with_env.insert("environment".into(), "PyPI".into());
    assert_eq!(
        matched(&rules, GH, with_env).expect("match"),
        vec!["widgets-prod", "widgets"]
    );
    let publisher = rules.policy("pypi").publishers.first().expect("publisher");
    assert!(publisher.covers(&ProjectName::parse(Protocol::Pypi, "acme_widgets").expect("name")));
}

#[test]
fn github_claims_that_must_not_match() {
    let rules = rules(PUBLISHERS).expect("compiles");
    let cases: Vec<(&str, &str, &str)> = vec![
        ("repository", "acme/other", "repository is not"),
        ("repository_owner_id", "9999", "owner id differs"),
        (
            "workflow_ref",
            "acme/widgets/.github/workflows/evil.yml@refs/heads/main",
            "calling workflow",
        ),
        (
            "job_workflow_ref",
            "evil/ci/.github/workflows/publish.yml@main",
            "reusable workflow",
        ),
        ("event_name", "pull_request_target", "pull_request_target"),
        ("event_name", "pull_request", "\"pull_request\""),
        ("runner_environment", "self-hosted", "self-hosted"),
    ];
    for (claim, value, reason) in cases {
        let mut claims = github_claims();
        claims.insert(claim.into(), value.into());
        let mismatches = matched(&rules, GH, claims).expect_err(claim);
        let widgets = mismatches
            .iter()
            .find(|m| m.publisher == "widgets")
            .expect("widgets was a candidate");
        assert!(widgets.reason.contains(reason), "{claim}={value}: {}", widgets.reason);
    }
    let mut missing = github_claims();
    missing.remove("repository_owner_id");
    assert!(matched(&rules, GH, missing).is_err());
}

#[test]
fn reusable_workflows_are_matched_only_when_named() {
    let rules = rules(PUBLISHERS).expect("compiles");
    let mut claims = github_claims();
    claims.insert("repository".into(), "acme/shared".into());
    claims.insert(
        "workflow_ref".into(),
        "acme/shared/.github/workflows/release.yml@refs/heads/main".into(),
    );
    claims.insert(
        "job_workflow_ref".into(),
        "acme/ci/.github/workflows/publish.yml@refs/heads/main".into(),
    );
    claims.insert("runner_environment".into(), "self-hosted".into());
    assert_eq!(matched(&rules, GH, claims.clone()).expect("match"), vec!["shared-ci"]);
    claims.insert(
        "job_workflow_ref".into(),
        "acme/ci/.github/workflows/other.yml@refs/heads/main".into(),
    );
    assert!(matched(&rules, GH, claims).is_err());
}

#[test]
fn gitlab_google_and_exact_claim_publishers() {
    let rules = rules(PUBLISHERS).expect("compiles");
    let gitlab = |env: &str, uri: &str| -> BTreeMap<String, String> {
        [
            ("project_path", "Platform/Lib"),
            ("ci_config_ref_uri", uri),
            ("environment", env),
            ("runner_environment", "gitlab-hosted"),
            ("ref_path", "refs/heads/main"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    let good_uri = "gitlab.internal.example/platform/lib//.gitlab-ci.yml@refs/heads/main";
    let gl = "https://gitlab.internal.example";
    assert_eq!(
        matched(&rules, gl, gitlab("Release", good_uri)).expect("match"),
        vec!["gitlab"]
    );
    assert!(
        matched(&rules, gl, gitlab("release", good_uri)).is_err(),
        "GitLab environments are case-sensitive"
    );
    assert!(matched(
        &rules,
        gl,
        gitlab("Release", "gitlab.com/platform/lib//.gitlab-ci.yml@refs/heads/main")
    )
    .is_err());
    assert!(matched(
        &rules,
        gl,
        gitlab("Release", "gitlab.internal.example/platform/lib//other.yml@x")
    )
    .is_err());

    let google = |verified: &str| -> BTreeMap<String, String> {
        [
            ("email", "builder@proj.iam.gserviceaccount.com"),
            ("email_verified", verified),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    };
    assert!(matched(&rules, "https://accounts.google.com", google("true")).is_ok());
    assert!(matched(&rules, "https://accounts.google.com", google("false")).is_err());

    let bk: BTreeMap<String, String> = [("organization_slug", "acme"), ("pipeline_slug", "release")]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    assert!(matched(&rules, "https://agent.buildkite.com", bk.clone()).is_ok());
    let mut other = bk;
    other.insert("pipeline_slug".into(), "nightly".into());
    assert!(matched(&rules, "https://agent.buildkite.com", other).is_err());
}

#[test]
fn invalid_issuers_and_publishers_name_their_field() {
    let cases = [
        ("[issuers.x]\nurl = \"http://insecure.example\"\nkind = \"generic\"\naudience = \"a\"\nalgorithms = [\"RS256\"]\n", "issuers.x.url"),
        ("[issuers.x]\nurl = \"https://x.example\"\nkind = \"generic\"\naudience = \"sigstore\"\nalgorithms = [\"RS256\"]\n", "issuers.x.audience"),
        ("[issuers.x]\nurl = \"https://x.example\"\nkind = \"generic\"\naudience = \"a\"\nalgorithms = [\"HS256\"]\n", "issuers.x.algorithms"),
        ("[issuers.x]\nurl = \"https://x.example\"\nkind = \"generic\"\naudience = \"a\"\n", "issuers.x.algorithms"),
        ("[[registries.pypi.publishers]]\nid = \"p\"\nissuer = \"nope\"\nprojects = [\"a\"]\n", "registries.pypi.publishers[0].issuer"),
        ("[[registries.pypi.publishers]]\nid = \"p\"\nissuer = \"github\"\nprojects = [\"a\"]\nrepository = \"a/b\"\nrepository_owner_id = \"1\"\nworkflow = \"r.yml\"\nproject_path = \"x/y\"\n", "registries.pypi.publishers[0].project_path"),
        ("[[registries.pypi.publishers]]\nid = \"p\"\nissuer = \"github\"\nprojects = [\"a\"]\nrepository = \"a/b\"\nrepository_owner_id = \"one\"\nworkflow = \"r.yml\"\n", "registries.pypi.publishers[0].repository_owner_id"),
        ("[[registries.pypi.publishers]]\nid = \"p\"\nissuer = \"github\"\nprojects = [\"a\"]\nrepository = \"a/b\"\nrepository_owner_id = \"1\"\nworkflow = \"r.yml\"\nallowed_events = [\"pull_request_target\"]\n", "registries.pypi.publishers[0].allowed_events"),
        ("[[registries.pypi.publishers]]\nid = \"p\"\nissuer = \"google\"\nprojects = [\"-bad-\"]\nemail = \"e@x\"\n", "registries.pypi.publishers[0].projects"),
    ];
    for (text, field) in cases {
        let err = rules(text).expect_err(field);
        assert_eq!(err.field, field, "{err}");
    }
}

#[test]
fn audiences_come_from_the_issuer_or_the_registry_and_are_checked() {
    let known = [
        KnownRegistry {
            name: "pypi".into(),
            protocol: Protocol::Pypi,
        },
        KnownRegistry {
            name: "npm".into(),
            protocol: Protocol::Npm,
        },
    ];
    let compile_text = |text: &str| {
        compile(
            &[RuleSource {
                name: "r.toml".into(),
                text: text.to_owned(),
            }],
            &known,
        )
    };
    let issuer = "[issuers.gh]\nurl = \"https://token.actions.githubusercontent.com\"\nkind = \"github\"\n";
    let publisher = |registry: &str| {
        format!(
            "[[registries.{registry}.publishers]]\nid = \"p\"\nissuer = \"gh\"\nprojects = [\"a\"]\nrepository = \"a/b\"\nrepository_owner_id = \"1\"\nworkflow = \"r.yml\"\n"
        )
    };
    // A publisher without any audience to check is refused.
    let err = compile_text(&format!("{issuer}{}", publisher("pypi"))).expect_err("no audience");
    assert_eq!(err.field, "registries.pypi.audience", "{err}");
    // The registry's audience applies, the issuer's overrides it.
    let rules = compile_text(&format!(
        "{issuer}[registries.pypi]\naudience = \"upload.example.org\"\n{}",
        publisher("pypi")
    ))
    .expect("compiles");
    let gh = rules
        .issuer_by_url("https://token.actions.githubusercontent.com")
        .expect("issuer");
    assert_eq!(rules.audience("pypi", gh), Some("upload.example.org"));
    assert_eq!(rules.registry_audience("pypi"), Some("upload.example.org"));
    assert!(rules.has_publishers("pypi"));
    let rules = compile_text(&format!(
        "{issuer}audience = \"mine\"\n[registries.pypi]\naudience = \"upload.example.org\"\n{}",
        publisher("pypi")
    ))
    .expect("compiles");
    let gh = rules
        .issuer_by_url("https://token.actions.githubusercontent.com")
        .expect("issuer");
    assert_eq!(rules.audience("pypi", gh), Some("mine"));
    // npm audiences are what the npm CLI asks for: npm:<host>, no port.
    for bad in [
        "npm.example.org",
        "npm:npm.example.org:8443",
        "npm:",
        "sigstore",
        "npm:NPM.example",
    ] {
        let err = compile_text(&format!("{issuer}[registries.npm]\naudience = \"{bad}\"\n")).expect_err(bad);
        assert_eq!(err.field, "registries.npm.audience", "{bad}: {err}");
    }
    assert!(compile_text(&format!(
        "{issuer}[registries.npm]\naudience = \"npm:npm.example.org\"\n"
    ))
    .is_ok());
}

#[test]
fn a_disabled_issuer_is_reported_as_such() {
    let rules = rules("").expect("compiles");
    assert!(rules.issuer_by_url(GH).is_some_and(|i| i.enabled));
    let off = crate::compile::compile(
        &[RuleSource {
            name: "r.toml".into(),
            text: "[issuers.gh]\nurl = \"https://token.actions.githubusercontent.com\"\nkind = \"github\"\naudience = \"a\"\nenabled = false\n".into(),
        }],
        &[],
    )
    .expect("compiles");
    assert!(off.issuer_by_url(GH).is_some_and(|i| !i.enabled));
    assert!(off.issuer_by_url("https://unknown.example").is_none());
}
