//! Tests of the deletion policy: compiling the rules, the decisions and their messages.

use super::words::{human_age, human_exact, short};
use super::*;
use crate::compile::{compile, CompiledRules, KnownRegistry, RuleSource, RulesError};
use crate::name::{ProjectName, Protocol};
use crate::schema::RawRules;

const H: u64 = HOUR;

/// Compiles `text` with registries `npm` and `open` (npm) and `pypi` (PyPI).
fn rules(text: &str) -> Result<CompiledRules, RulesError> {
    let known = [
        KnownRegistry {
            name: "npm".into(),
            protocol: Protocol::Npm,
        },
        KnownRegistry {
            name: "open".into(),
            protocol: Protocol::Npm,
        },
        KnownRegistry {
            name: "pypi".into(),
            protocol: Protocol::Pypi,
        },
    ];
    compile(
        &[RuleSource {
            name: "r.toml".into(),
            text: text.into(),
        }],
        &known,
    )
}

fn compiled(text: &str) -> CompiledRules {
    rules(text).expect("compiles")
}

/// One request, with owned-free defaults: an npm version 80 hours old, unused, one owner.
#[derive(Clone, Copy)]
struct Ask {
    registry: &'static str,
    project: &'static str,
    action: DeleteAction,
    version: Option<&'static str>,
    age: Option<u64>,
    downloads: Option<u64>,
    dependents: Option<u64>,
    owners: Option<u64>,
    last: Option<bool>,
    admin: Option<&'static str>,
}

impl Ask {
    fn npm(project: &'static str) -> Self {
        Ask {
            registry: "npm",
            project,
            action: DeleteAction::DeleteVersion,
            version: Some("1.0.0"),
            age: Some(80 * H),
            downloads: Some(0),
            dependents: Some(0),
            owners: Some(1),
            last: Some(false),
            admin: None,
        }
    }

    fn decide(&self, rules: &CompiledRules) -> DeletionDecision {
        let protocol = if self.registry == "pypi" {
            Protocol::Pypi
        } else {
            Protocol::Npm
        };
        let project = ProjectName::parse(protocol, self.project).expect("valid name");
        rules.decide_deletion(&DeletionFacts {
            registry: self.registry,
            project: &project,
            action: self.action,
            version: self.version,
            age_seconds: self.age,
            weekly_downloads: self.downloads,
            dependents: self.dependents,
            owners: self.owners,
            is_last_version: self.last,
            admin_override: self.admin,
        })
    }
}

/// The refusal code and message, asserting the outcome is `Refused`.
fn refused(decision: &DeletionDecision) -> (DeletionRefusal, &str) {
    match &decision.outcome {
        DeletionOutcome::Refused { code, message } => (*code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn allowed(decision: &DeletionDecision) {
    assert_eq!(decision.outcome, DeletionOutcome::Allowed, "{decision:?}");
    assert!(decision.lets_through());
    assert_eq!(decision.refusal(), None);
}

#[test]
fn built_in_defaults_apply_without_any_rules() {
    let rules = compiled("");
    let ask = Ask {
        registry: "open",
        ..Ask::npm("acme")
    };
    // Inside the window, anything goes.
    let d = Ask {
        age: Some(10 * H),
        downloads: Some(1_000_000),
        dependents: Some(50),
        owners: Some(9),
        ..ask
    }
    .decide(&rules);
    allowed(&d);
    assert_eq!(
        (d.rule.as_str(), d.mode, d.reserve_name),
        (DEFAULT_RULE, DeletionMode::Policy, None)
    );
    assert_eq!(d.facts_used, ["age 10h < window 72h"]);
    // After it, an unused version with one owner.
    let d = ask.decide(&rules);
    allowed(&d);
    assert_eq!(
        d.facts_used,
        [
            "age 80h > window 72h",
            "weekly downloads 0 < 300",
            "number of dependents 0 <= 0",
            "number of owners 1 <= 1"
        ]
    );
    // Exactly at the window's end counts as outside it.
    let d = Ask {
        age: Some(72 * H),
        downloads: Some(300),
        ..ask
    }
    .decide(&rules);
    assert_eq!(refused(&d).0, DeletionRefusal::OutsideWindow);
    assert_eq!(d.facts_used[0], "age 72h = window 72h");
    // Downloads: fewer than 300.
    let d = Ask {
        downloads: Some(300),
        ..ask
    }
    .decide(&rules);
    let (code, message) = refused(&d);
    assert_eq!(code.code(), "deletion_refused");
    assert_eq!(
        message,
        "unpublishing acme@1.0.0 is not allowed: it was published 80 hours ago (self-service deletion is allowed within 72 hours) and had 300 downloads in the last 7 days (fewer than 300 are required); deprecate it instead (npm deprecate), or ask an administrator"
    );
    assert!(d.facts_used.contains(&"weekly downloads 300 >= 300".to_owned()));
    assert!(!d.lets_through());
    allowed(
        &Ask {
            downloads: Some(299),
            ..ask
        }
        .decide(&rules),
    );
    // Dependents: none.
    let d = Ask {
        dependents: Some(1),
        ..ask
    }
    .decide(&rules);
    assert!(
        refused(&d)
            .1
            .contains("and has 1 dependent (no dependents are allowed)"),
        "{d:?}"
    );
    // Owners: one.
    let d = Ask { owners: Some(2), ..ask }.decide(&rules);
    assert!(refused(&d).1.contains("has 2 owners (at most 1 is allowed)"), "{d:?}");
    // Every failure is listed.
    let d = Ask {
        age: Some(30 * DAY),
        downloads: Some(301),
        dependents: Some(3),
        owners: Some(2),
        ..ask
    }
    .decide(&rules);
    assert!(
        refused(&d).1.contains(
            "it was published 30 days ago (self-service deletion is allowed within 72 hours), had 301 downloads in the last 7 days (fewer than 300 are required), has 3 dependents (no dependents are allowed) and has 2 owners (at most 1 is allowed); "
        ),
        "{d:?}"
    );
    // A registry the configuration does not know gets the same defaults.
    let d = Ask {
        registry: "elsewhere",
        downloads: Some(5000),
        ..ask
    }
    .decide(&rules);
    let (code, message) = refused(&d);
    assert_eq!(code, DeletionRefusal::OutsideWindow);
    assert!(
        message.starts_with("deleting version acme 1.0.0 is not allowed: "),
        "{message}"
    );
    assert!(
        message.ends_with("; deprecate or yank it instead, or ask an administrator"),
        "{message}"
    );
}

#[test]
fn pypi_refusals_point_to_yanking() {
    let rules = compiled("");
    let ask = Ask {
        registry: "pypi",
        downloads: Some(312),
        ..Ask::npm("Acme_Widgets")
    };
    let d = ask.decide(&rules);
    assert_eq!(
        refused(&d).1,
        "deleting release acme-widgets 1.0.0 is not allowed: it was published 80 hours ago (self-service deletion is allowed within 72 hours) and had 312 downloads in the last 7 days (fewer than 300 are required); yank it instead, or ask an administrator"
    );
    let d = Ask {
        action: DeleteAction::DeleteFile,
        ..ask
    }
    .decide(&rules);
    assert!(
        refused(&d)
            .1
            .starts_with("deleting a file of acme-widgets 1.0.0 is not allowed"),
        "{d:?}"
    );
    let d = Ask {
        action: DeleteAction::DeleteProject,
        version: None,
        ..ask
    }
    .decide(&rules);
    assert_eq!(
        refused(&d).1,
        "deleting project acme-widgets is not allowed: its oldest version was published 80 hours ago (self-service deletion is allowed within 72 hours) and had 312 downloads in the last 7 days (fewer than 300 are required); yank its releases instead, or ask an administrator"
    );
}

#[test]
fn unknown_age_counts_as_outside_the_window_or_refuses() {
    let ask = Ask {
        age: None,
        ..Ask::npm("acme")
    };
    let lenient = compiled("");
    let d = ask.decide(&lenient);
    allowed(&d);
    assert_eq!(d.facts_used[0], "age unknown: treated as outside the window");
    let d = Ask {
        downloads: Some(400),
        ..ask
    }
    .decide(&lenient);
    assert!(
        refused(&d).1.contains(
            "the publish time of the version is unknown, so it counts as outside the self-service window of 72 hours and had 400 downloads"
        ),
        "{d:?}"
    );

    let strict = compiled("[registries.npm.deletion]\nunknown_age = \"refuse\"\n");
    let d = ask.decide(&strict);
    let (code, message) = refused(&d);
    assert_eq!(code, DeletionRefusal::UnknownFacts);
    assert_eq!(code.code(), "deletion_unknown_facts");
    assert_eq!(
        message,
        "unpublishing acme@1.0.0 is not allowed: the publish time of the version is unknown, so it cannot be shown to be within the self-service window of 72 hours; deprecate it instead (npm deprecate), or ask an administrator"
    );
    assert_eq!(d.facts_used, ["age unknown (unknown_age = refuse)"]);
    // A known age still decides.
    allowed(&Ask { age: Some(H), ..ask }.decide(&strict));
}

#[test]
fn unknown_usage_facts_refuse_or_are_ignored() {
    let ask = Ask {
        downloads: None,
        dependents: None,
        ..Ask::npm("acme")
    };
    let strict = compiled("");
    let d = ask.decide(&strict);
    let (code, message) = refused(&d);
    assert_eq!(code, DeletionRefusal::UnknownFacts);
    assert!(
        message.contains(
            "it was published 80 hours ago (self-service deletion is allowed within 72 hours), and its downloads in the last 7 days and number of dependents are unknown, so the deletion policy cannot be checked; "
        ),
        "{message}"
    );
    assert!(d.facts_used.contains(&"weekly downloads unknown".to_owned()));
    assert!(d.facts_used.contains(&"number of dependents unknown".to_owned()));
    // Only unknown downloads.
    let d = Ask {
        dependents: Some(0),
        ..ask
    }
    .decide(&strict);
    assert!(refused(&d).1.contains("its downloads in the last 7 days is unknown"));
    // A known failing bound is the stronger refusal.
    let d = Ask { owners: Some(3), ..ask }.decide(&strict);
    assert_eq!(refused(&d).0, DeletionRefusal::OutsideWindow);
    // Inside the window, unknown usage does not matter.
    allowed(&Ask { age: Some(H), ..ask }.decide(&strict));

    let lenient = compiled("[registries.npm.deletion]\nunknown_facts = \"ignore\"\n");
    let d = ask.decide(&lenient);
    allowed(&d);
    assert!(d.facts_used.contains(&"weekly downloads unknown (ignored)".to_owned()));
    let d = Ask { owners: Some(3), ..ask }.decide(&lenient);
    assert_eq!(refused(&d).0, DeletionRefusal::OutsideWindow);
}

#[test]
fn the_last_version_is_judged_as_the_project() {
    let rules = compiled("[registries.npm.deletion]\nreserve_deleted_names = \"30d\"\n");
    let last = Ask {
        last: Some(true),
        ..Ask::npm("acme")
    };
    let d = last.decide(&rules);
    allowed(&d);
    assert_eq!(d.reserve_name, Some(NameReservation::For(30 * DAY)));
    assert_eq!(d.facts_used[0], "last remaining version: judged as a project deletion");
    let d = Ask {
        downloads: Some(1000),
        ..last
    }
    .decide(&rules);
    assert!(
        refused(&d)
            .1
            .starts_with("unpublishing acme@1.0.0 (the last remaining version, so the whole package) is not allowed: "),
        "{d:?}"
    );
    assert_eq!(d.reserve_name, Some(NameReservation::For(30 * DAY)));
    // Not the last, or not known to be: a version deletion, no reservation.
    for last in [Some(false), None] {
        let d = Ask {
            last,
            ..Ask::npm("acme")
        }
        .decide(&rules);
        assert_eq!(d.reserve_name, None);
    }
    // Yanks never reserve the name.
    let d = Ask {
        action: DeleteAction::Yank,
        ..last
    }
    .decide(&rules);
    assert_eq!(d.reserve_name, None);
}

#[test]
fn project_deletions_reserve_the_name() {
    let project = Ask {
        action: DeleteAction::DeleteProject,
        version: None,
        ..Ask::npm("acme")
    };
    let defaults = compiled("");
    let d = project.decide(&defaults);
    allowed(&d);
    assert_eq!(d.reserve_name, Some(NameReservation::Forever));
    let name = ProjectName::parse(Protocol::Npm, "acme").expect("valid");
    assert_eq!(defaults.name_reservation("npm", &name), NameReservation::Forever);
    assert_eq!(defaults.name_reservation("elsewhere", &name), NameReservation::Forever);
    // Refused or not, the reservation is what would apply.
    let d = Ask {
        dependents: Some(4),
        ..project
    }
    .decide(&defaults);
    assert!(refused(&d)
        .1
        .starts_with("unpublishing acme is not allowed: its oldest version was published"));
    assert_eq!(d.reserve_name, Some(NameReservation::Forever));

    let configured = compiled(
        "[registries.npm.deletion]\nreserve_deleted_names = \"7d\"\n\
         [[registries.npm.deletion_rules]]\nid = \"scratch\"\nnames = [\"scratch-*\"]\nreserve_deleted_names = \"1h30m\"\n",
    );
    let d = project.decide(&configured);
    assert_eq!(d.reserve_name, Some(NameReservation::For(7 * DAY)));
    assert_eq!(configured.name_reservation("npm", &name), NameReservation::For(7 * DAY));
    let scratch = ProjectName::parse(Protocol::Npm, "scratch-pad").expect("valid");
    assert_eq!(
        configured.name_reservation("npm", &scratch),
        NameReservation::For(90 * MINUTE)
    );
    let d = Ask {
        project: "scratch-pad",
        ..project
    }
    .decide(&configured);
    assert_eq!(
        (d.rule.as_str(), d.reserve_name),
        ("scratch", Some(NameReservation::For(5400)))
    );
    // Other registries keep theirs.
    assert_eq!(configured.name_reservation("open", &name), NameReservation::Forever);
}

#[test]
fn never_mode_refuses_deletions_and_yanks() {
    let rules = compiled("[registries.npm.deletion]\nmode = \"never\"\n[registries.pypi.deletion]\nmode = \"never\"\n");
    for action in [
        DeleteAction::DeleteVersion,
        DeleteAction::DeleteFile,
        DeleteAction::DeleteProject,
        DeleteAction::Yank,
        DeleteAction::Unyank,
    ] {
        let d = Ask {
            action,
            age: Some(0),
            ..Ask::npm("acme")
        }
        .decide(&rules);
        assert_eq!(d.mode, DeletionMode::Never);
        let (code, message) = refused(&d);
        assert_eq!(code.code(), "deletion_never", "{action}");
        assert!(
            message.contains("package acme is immutable on this registry"),
            "{message}"
        );
    }
    let d = Ask {
        action: DeleteAction::Yank,
        ..Ask::npm("acme")
    }
    .decide(&rules);
    assert_eq!(
        refused(&d).1,
        "yanking acme@1.0.0 is not allowed: package acme is immutable on this registry: it cannot be deleted, yanked or un-yanked; ask an administrator"
    );
    assert!(refused(&Ask::npm("acme").decide(&rules))
        .1
        .ends_with("; deprecate it instead (npm deprecate), or ask an administrator"));
    // On PyPI yanking is refused too, so it is not offered.
    let d = Ask {
        registry: "pypi",
        ..Ask::npm("acme")
    }
    .decide(&rules);
    assert!(refused(&d).1.ends_with("un-yanked; ask an administrator"), "{d:?}");
}

#[test]
fn yank_only_mode_allows_yanks_and_refuses_deletions() {
    let rules = compiled("[registries.pypi.deletion]\nmode = \"yank_only\"\n");
    let ask = Ask {
        registry: "pypi",
        age: Some(60),
        ..Ask::npm("acme")
    };
    for action in [DeleteAction::Yank, DeleteAction::Unyank] {
        allowed(&Ask { action, ..ask }.decide(&rules));
    }
    for action in [
        DeleteAction::DeleteVersion,
        DeleteAction::DeleteFile,
        DeleteAction::DeleteProject,
    ] {
        let d = Ask { action, ..ask }.decide(&rules);
        let (code, message) = refused(&d);
        assert_eq!((code, code.code()), (DeletionRefusal::YankOnly, "deletion_yank_only"));
        assert!(
            message.contains("project acme can be yanked but not deleted on this registry; yank"),
            "{message}"
        );
    }
}

#[test]
fn allow_mode_lets_everything_through() {
    let rules = compiled("[registries.npm.deletion]\nmode = \"allow\"\n");
    for action in [
        DeleteAction::DeleteVersion,
        DeleteAction::DeleteProject,
        DeleteAction::Yank,
        DeleteAction::Unyank,
    ] {
        let d = Ask {
            action,
            age: None,
            downloads: Some(1 << 40),
            dependents: None,
            owners: Some(40),
            ..Ask::npm("acme")
        }
        .decide(&rules);
        allowed(&d);
        assert_eq!(d.mode, DeletionMode::Allow);
        assert_eq!(d.facts_used, ["mode allow"]);
    }
    // Policy mode allows yanks whatever the facts.
    let d = Ask {
        action: DeleteAction::Yank,
        age: None,
        downloads: None,
        ..Ask::npm("acme")
    }
    .decide(&compiled(""));
    allowed(&d);
}

#[test]
fn an_admin_override_passes_and_records_what_the_policy_said() {
    let rules = compiled(
        "[[registries.npm.deletion_rules]]\nid = \"core\"\nnames = [\"core-*\"]\nmode = \"never\"\nmessage = \"core packages are never deleted\"\n",
    );
    let reason = "legal takedown LEGAL-123";
    let d = Ask {
        downloads: Some(5000),
        admin: Some(reason),
        ..Ask::npm("acme")
    }
    .decide(&rules);
    assert!(d.lets_through());
    match &d.outcome {
        DeletionOutcome::Overridden {
            reason: given,
            would_refuse: Some((DeletionRefusal::OutsideWindow, message)),
        } => {
            assert_eq!(given, reason);
            assert!(message.contains("had 5000 downloads"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.refusal().map(|r| r.0), Some(DeletionRefusal::OutsideWindow));
    assert_eq!(d.facts_used.last().map(String::as_str), Some("admin override"));
    // In never mode too, yanks included.
    for action in [DeleteAction::DeleteProject, DeleteAction::Yank] {
        let d = Ask {
            project: "core-lib",
            action,
            admin: Some(reason),
            ..Ask::npm("acme")
        }
        .decide(&rules);
        assert_eq!((d.rule.as_str(), d.mode), ("core", DeletionMode::Never));
        match &d.outcome {
            DeletionOutcome::Overridden {
                would_refuse: Some((DeletionRefusal::Never, message)),
                ..
            } => assert!(message.ends_with(". core packages are never deleted"), "{message}"),
            other => panic!("{other:?}"),
        }
    }
    // An override of something the policy allows records no refusal.
    let d = Ask {
        admin: Some(reason),
        ..Ask::npm("acme")
    }
    .decide(&rules);
    assert_eq!(
        d.outcome,
        DeletionOutcome::Overridden {
            reason: reason.to_owned(),
            would_refuse: None
        }
    );
    assert_eq!(d.refusal(), None);
}

#[test]
fn shadow_records_refusals_and_leaves_allowed_requests_alone() {
    let rules = compiled("[registries.npm.deletion]\nshadow = true\n");
    let d = Ask {
        owners: Some(5),
        ..Ask::npm("acme")
    }
    .decide(&rules);
    assert!(d.lets_through());
    match &d.outcome {
        DeletionOutcome::Shadowed {
            would_refuse: (DeletionRefusal::OutsideWindow, message),
        } => assert!(message.contains("has 5 owners"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(d.refusal().map(|r| r.0), Some(DeletionRefusal::OutsideWindow));
    allowed(&Ask::npm("acme").decide(&rules));
    // An override beats shadow.
    let d = Ask {
        owners: Some(5),
        admin: Some("ok"),
        ..Ask::npm("acme")
    }
    .decide(&rules);
    assert!(matches!(d.outcome, DeletionOutcome::Overridden { .. }), "{d:?}");
    // A rule may turn shadow off again.
    let rules = compiled(
        "[registries.npm.deletion]\nshadow = true\n[[registries.npm.deletion_rules]]\nid = \"enforced\"\nnames = [\"acme\"]\nshadow = false\n",
    );
    let d = Ask {
        owners: Some(5),
        ..Ask::npm("acme")
    }
    .decide(&rules);
    assert_eq!(refused(&d).0, DeletionRefusal::OutsideWindow);
}

#[test]
fn the_first_matching_rule_decides_and_inherits_the_registry_settings() {
    let rules = compiled(
        r#"
[registries.npm.deletion]
window = "24h"
max_weekly_downloads = 1000
max_owners = 3
reserve_deleted_names = "90d"

[[registries.npm.deletion_rules]]
id = "core-packages"
names = ["core-*", "@acme/*"]
mode = "never"
message = "core packages are never deleted; deprecate instead"

[[registries.npm.deletion_rules]]
id = "sandbox"
names = ["sandbox-*", "core-sandbox"]
mode = "allow"

[[registries.npm.deletion_rules]]
id = "popular"
names = ["*"]
max_weekly_downloads = 10
"#,
    );
    let d = Ask::npm("core-sandbox").decide(&rules);
    assert_eq!(d.rule.as_str(), "core-packages");
    assert_eq!(
        refused(&d).1,
        "unpublishing core-sandbox@1.0.0 is not allowed: package core-sandbox is immutable on this registry: it cannot be deleted, yanked or un-yanked; deprecate it instead (npm deprecate), or ask an administrator. core packages are never deleted; deprecate instead"
    );
    assert_eq!(Ask::npm("@acme/widget").decide(&rules).rule.as_str(), "core-packages");
    let d = Ask::npm("sandbox-1").decide(&rules);
    assert_eq!((d.rule.as_str(), d.mode), ("sandbox", DeletionMode::Allow));
    // "popular" sets only its download bound: window 24h, 3 owners and 90 days inherited.
    let ask = Ask {
        age: Some(30 * H),
        downloads: Some(9),
        owners: Some(3),
        ..Ask::npm("left-pad")
    };
    let d = ask.decide(&rules);
    allowed(&d);
    assert_eq!(d.rule.as_str(), "popular");
    assert_eq!(d.facts_used[0], "age 30h > window 24h");
    let d = Ask {
        downloads: Some(10),
        ..ask
    }
    .decide(&rules);
    assert!(refused(&d).1.contains("(fewer than 10 are required)"), "{d:?}");
    allowed(
        &Ask {
            age: Some(23 * H),
            downloads: Some(10),
            ..ask
        }
        .decide(&rules),
    );
    let name = ProjectName::parse(Protocol::Npm, "left-pad").expect("valid");
    assert_eq!(rules.name_reservation("npm", &name), NameReservation::For(90 * DAY));
    // Without the catch-all the registry settings decide, reported as the default rule.
    let d = Ask {
        registry: "npm",
        ..ask
    }
    .decide(&compiled(
        "[registries.npm.deletion]\nwindow = \"24h\"\nmax_owners = 3\n[[registries.npm.deletion_rules]]\nid = \"sandbox\"\nnames = [\"sandbox-*\"]\nmode = \"allow\"\n",
    ));
    assert_eq!(d.rule.as_str(), DEFAULT_RULE);
    allowed(&d);
}

#[test]
fn pypi_rule_names_are_normalised() {
    let rules =
        compiled("[[registries.pypi.deletion_rules]]\nid = \"frozen\"\nnames = [\"Acme_Core*\"]\nmode = \"never\"\n");
    let d = Ask {
        registry: "pypi",
        ..Ask::npm("acme.core.utils")
    }
    .decide(&rules);
    assert_eq!((d.rule.as_str(), d.mode), ("frozen", DeletionMode::Never));
}

#[test]
fn invalid_deletion_settings_name_their_field() {
    let rule = |body: &str| format!("[[registries.npm.deletion_rules]]\nid = \"r\"\nnames = [\"x\"]\n{body}\n");
    let cases = [
        (
            "[registries.npm.deletion]\nwindow = \"72 hours\"\n".to_owned(),
            "registries.npm.deletion.window",
            "not a duration",
        ),
        (
            "[registries.npm.deletion]\nwindow = \"\"\n".to_owned(),
            "registries.npm.deletion.window",
            "empty",
        ),
        (
            "[registries.npm.deletion]\nmode = \"sometimes\"\n".to_owned(),
            "registries.npm.deletion.mode",
            "unknown mode \"sometimes\" (use policy, allow, yank_only or never)",
        ),
        (
            "[registries.npm.deletion]\nunknown_age = \"allow\"\n".to_owned(),
            "registries.npm.deletion.unknown_age",
            "use outside_window or refuse",
        ),
        (
            "[registries.npm.deletion]\nunknown_facts = \"allow\"\n".to_owned(),
            "registries.npm.deletion.unknown_facts",
            "use refuse or ignore",
        ),
        (
            "[registries.npm.deletion]\nreserve_deleted_names = \"always\"\n".to_owned(),
            "registries.npm.deletion.reserve_deleted_names",
            "must be \"forever\" or a duration",
        ),
        (
            rule("mode = \"Never\""),
            "registries.npm.deletion_rules[0].mode",
            "unknown mode",
        ),
        (
            rule("window = \"-1h\""),
            "registries.npm.deletion_rules[0].window",
            "negative",
        ),
        (
            rule("reserve_deleted_names = \"1y\""),
            "registries.npm.deletion_rules[0].reserve_deleted_names",
            "unknown unit \"y\"",
        ),
        (
            "[[registries.npm.deletion_rules]]\nid = \"r\"\nnames = []\n".to_owned(),
            "registries.npm.deletion_rules[0].names",
            "at least one name pattern",
        ),
        (
            "[[registries.npm.deletion_rules]]\nid = \"r\"\nnames = [\"a[\"]\n".to_owned(),
            "registries.npm.deletion_rules[0].names[0]",
            "",
        ),
        (
            "[[registries.npm.deletion_rules]]\nid = \"Bad Id\"\nnames = [\"x\"]\n".to_owned(),
            "registries.npm.deletion_rules[0].id",
            "must be 1 to 64 characters",
        ),
        (
            "[[registries.npm.deletion_rules]]\nid = \"deletion.default\"\nnames = [\"x\"]\n".to_owned(),
            "registries.npm.deletion_rules[0].id",
            "is reserved",
        ),
        (
            format!("{}{}", rule(""), rule("")),
            "registries.npm.deletion_rules[1].id",
            "duplicate rule id \"r\"",
        ),
        (
            format!(
                "[[registries.npm.projects]]\nid = \"r\"\nnames = [\"x\"]\naction = \"allow\"\n{}",
                rule("")
            ),
            "registries.npm.deletion_rules[0].id",
            "duplicate rule id \"r\"",
        ),
        (
            format!(
                "[[registries.npm.provenance_rules]]\nid = \"r\"\nnames = [\"x\"]\nmode = \"audit\"\n{}",
                rule("")
            ),
            "registries.npm.deletion_rules[0].id",
            "duplicate rule id \"r\"",
        ),
    ];
    for (text, field, reason) in cases {
        let err = rules(&text).expect_err(field);
        assert_eq!(err.field, field, "{err}");
        assert_eq!(err.source_name, "r.toml");
        assert!(err.reason.contains(reason), "{err}");
    }
    // Unknown keys are refused by the parser, which names them with their line.
    for text in [
        "[registries.npm.deletion]\ngrace = \"1h\"\n".to_owned(),
        rule("grace = \"1h\""),
        "[registries.npm.deletion]\nmessage = \"no\"\n".to_owned(),
    ] {
        let err = rules(&text).expect_err("unknown field");
        assert!(err.field.starts_with("line "), "{err}");
        assert!(err.reason.contains("unknown field"), "{err}");
    }
    // A project rule may not take the reserved id either.
    let err = rules("[[registries.npm.projects]]\nid = \"deletion.default\"\nnames = [\"x\"]\naction = \"allow\"\n")
        .expect_err("reserved");
    assert_eq!(err.field, "registries.npm.projects[0].id");
}

#[test]
fn the_raw_schema_round_trips() {
    let text = r#"
[registries.npm.deletion]
mode = "policy"
window = "72h"
max_weekly_downloads = 300
max_dependents = 0
max_owners = 1
unknown_age = "outside_window"
unknown_facts = "refuse"
reserve_deleted_names = "forever"
shadow = false

[[registries.npm.deletion_rules]]
id = "core-packages"
names = ["core-*", "@acme/*"]
mode = "never"
message = "core packages are never deleted; deprecate instead"
"#;
    let raw: RawRules = toml::from_str(text).expect("parses");
    let npm = &raw.registries["npm"];
    assert_eq!(npm.deletion.window.as_deref(), Some("72h"));
    assert_eq!(npm.deletion.max_weekly_downloads, Some(300));
    assert_eq!(npm.deletion.shadow, Some(false));
    let rule = &npm.deletion_rules[0];
    assert_eq!(
        (
            rule.id.as_str(),
            rule.names.len(),
            rule.mode.as_deref(),
            rule.window.as_deref()
        ),
        ("core-packages", 2, Some("never"), None)
    );
    assert!(compiled(text).policy("npm").deletion.rules.len() == 1);
    // A negative bound is refused by the parser.
    assert!(rules("[registries.npm.deletion]\nmax_owners = -1\n").is_err());
}

#[test]
fn reserved_names_expire_unless_forever() {
    let deleted_at = 1_700_000_000;
    assert!(name_still_reserved(NameReservation::Forever, deleted_at, deleted_at));
    assert!(name_still_reserved(NameReservation::Forever, deleted_at, i64::MAX));
    assert!(name_still_reserved(NameReservation::Forever, i64::MIN, i64::MAX));
    let day = NameReservation::For(DAY);
    assert!(name_still_reserved(day, deleted_at, deleted_at));
    assert!(name_still_reserved(day, deleted_at, deleted_at + 86_399));
    assert!(!name_still_reserved(day, deleted_at, deleted_at + 86_400));
    // A tombstone from the future (clock skew) still blocks.
    assert!(name_still_reserved(day, deleted_at, deleted_at - 10));
    assert!(!name_still_reserved(NameReservation::For(0), deleted_at, deleted_at));
    // No overflow at the edges.
    assert!(name_still_reserved(NameReservation::For(u64::MAX), i64::MAX, i64::MAX));
    assert!(!name_still_reserved(NameReservation::For(1), i64::MIN, i64::MAX));
    assert_eq!(NameReservation::parse("forever"), Ok(NameReservation::Forever));
    assert_eq!(NameReservation::parse("2d"), Ok(NameReservation::For(2 * DAY)));
    assert!(NameReservation::parse("Forever").is_err());
}

#[test]
fn durations_read_back_in_words() {
    assert_eq!(short(80 * H), "80h");
    assert_eq!(short(90 * MINUTE + 5), "1h30m5s");
    assert_eq!(short(45), "45s");
    assert_eq!(short(0), "0s");
    assert_eq!(human_exact(72 * H), "72 hours");
    assert_eq!(human_exact(H), "1 hour");
    assert_eq!(human_exact(14 * DAY), "14 days");
    assert_eq!(human_exact(90 * MINUTE), "90 minutes");
    assert_eq!(human_exact(61), "61 seconds");
    assert_eq!(human_age(80 * H + 59 * MINUTE), "80 hours");
    assert_eq!(human_age(400 * DAY), "400 days");
    assert_eq!(human_age(5 * MINUTE), "5 minutes");
    assert_eq!(human_age(1), "1 second");
}

#[test]
fn names_and_codes_are_stable() {
    let actions: Vec<&str> = [
        DeleteAction::DeleteVersion,
        DeleteAction::DeleteFile,
        DeleteAction::DeleteProject,
        DeleteAction::Yank,
        DeleteAction::Unyank,
    ]
    .iter()
    .map(|a| a.as_str())
    .collect();
    assert_eq!(
        actions,
        ["delete_version", "delete_file", "delete_project", "yank", "unyank"]
    );
    assert!(DeleteAction::DeleteFile.is_deletion());
    assert!(!DeleteAction::Unyank.is_deletion());
    let codes: Vec<&str> = [
        DeletionRefusal::Never,
        DeletionRefusal::YankOnly,
        DeletionRefusal::OutsideWindow,
        DeletionRefusal::UnknownFacts,
    ]
    .iter()
    .map(DeletionRefusal::code)
    .collect();
    assert_eq!(
        codes,
        [
            "deletion_never",
            "deletion_yank_only",
            "deletion_refused",
            "deletion_unknown_facts"
        ]
    );
    let modes: Vec<String> = [
        DeletionMode::Policy,
        DeletionMode::Allow,
        DeletionMode::YankOnly,
        DeletionMode::Never,
    ]
    .iter()
    .map(ToString::to_string)
    .collect();
    assert_eq!(modes, ["policy", "allow", "yank_only", "never"]);
}

#[test]
fn foreign_versions_are_clipped_in_messages() {
    let long = format!("1.0.0\n{}", "x".repeat(5000));
    let project = ProjectName::parse(Protocol::Npm, "acme").expect("valid");
    let d = compiled("").decide_deletion(&DeletionFacts {
        registry: "npm",
        project: &project,
        action: DeleteAction::DeleteVersion,
        version: Some(&long),
        age_seconds: Some(100 * H),
        weekly_downloads: Some(1000),
        dependents: Some(0),
        owners: Some(1),
        is_last_version: Some(false),
        admin_override: None,
    });
    let message = refused(&d).1;
    assert!(message.chars().count() < 600, "{}", message.chars().count());
    assert!(!message.contains('\n'));
}
