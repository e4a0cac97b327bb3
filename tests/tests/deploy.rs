//! The deployment material in `deploy/`, each file checked by the real tool that understands it:
//! a real Prometheus server scraping a running gateway and answering PromQL, promtool on the
//! alert rules and their unit tests, `systemd-analyze` on the unit, hadolint on the
//! Containerfile (and its HEALTHCHECK run against a gateway), kustomize and
//! kubernetes-validate on the Kubernetes manifests, and every metric named by the Grafana
//! dashboard and the alerts compared with what a running gateway exports.
//!
//! System tools (prometheus, promtool, systemd-analyze) come from Debian packages that
//! `scripts/env.sh` installs; the Python-wheel tools from `tests/tools/install.sh --deploy`.
//! A missing tool fails the test: nothing here skips.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use portcullis_e2e::gateway::{self, check_config, check_config_with_env, Gateway, RegistrySpec};
use portcullis_e2e::http::{self, Form};
use portcullis_e2e::pep740::TOB_RELEASE_PUBLISHER;
use portcullis_e2e::process::Managed;
use portcullis_e2e::sink::Sink;
use portcullis_e2e::tools::deploy_tools;
use portcullis_e2e::{fixtures, free_port, repo_root, wait_until};
use serde_json::Value;

fn deploy() -> PathBuf {
    repo_root().join("deploy")
}

/// A system tool on `PATH`; fails (never skips) when it is missing.
fn system_tool(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: install the Debian package {package} (scripts/env.sh ensure_system_packages does)"
            )
        })
}

fn run(command: &mut Command) -> Output {
    command.output().unwrap_or_else(|e| panic!("running {command:?}: {e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Parses a YAML file (every document) into JSON with PyYAML from the deploy tools' venv.
fn yaml_documents(path: &Path) -> Vec<Value> {
    let python = deploy_tools().join("python");
    let out = run(Command::new(python).arg("-c").arg(
        "import json, sys, yaml\nprint(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))",
    )
    .arg(path));
    assert!(out.status.success(), "yaml {}: {}", path.display(), text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json from yaml")
}

fn yaml_document(path: &Path) -> Value {
    yaml_documents(path).into_iter().next().expect("one YAML document")
}

// ---------------------------------------------------------------------------------------------
// PromQL: the metric names an expression reads.

/// The metric names a PromQL expression selects: identifiers outside label matchers, ranges,
/// strings and grouping lists that are neither functions nor keywords. Grafana's `$variables`
/// and `label_values(metric, label)` are understood.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    if let Some(inner) = expr.trim().strip_prefix("label_values(") {
        let metric = inner.split([',', ')']).next().unwrap_or("").trim();
        return promql_metric_names(metric);
    }
    // Blank out strings, {label matchers} and [ranges].
    let mut cleaned = String::with_capacity(expr.len());
    let mut quote: Option<char> = None;
    let mut depth = 0usize;
    for c in expr.chars() {
        match quote {
            Some(q) => {
                if c == q {
                    quote = None;
                }
                cleaned.push(' ');
                continue;
            }
            None if matches!(c, '"' | '\'' | '`') => {
                quote = Some(c);
                cleaned.push(' ');
                continue;
            }
            None => {}
        }
        match c {
            '{' | '[' => {
                depth += 1;
                cleaned.push(' ');
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                cleaned.push(' ');
            }
            _ if depth > 0 => cleaned.push(' '),
            _ => cleaned.push(c),
        }
    }
    // Tokens: identifiers (with a leading `$` kept so variables can be told apart), numbers,
    // parentheses; everything else separates.
    let mut tokens: Vec<String> = Vec::new();
    let chars: Vec<char> = cleaned.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_ascii_alphabetic() || c == '_' || c == ':' || c == '$' {
            let start = i;
            i += 1;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':') {
                i += 1;
            }
            tokens.push(chars[start..i].iter().collect());
        } else if c.is_ascii_digit() || c == '.' {
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
        } else {
            if c == '(' || c == ')' {
                tokens.push(c.to_string());
            }
            i += 1;
        }
    }
    const GROUPING: &[&str] = &["by", "without", "on", "ignoring", "group_left", "group_right"];
    const KEYWORDS: &[&str] = &["and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"];
    let mut names = BTreeSet::new();
    let mut k = 0;
    while k < tokens.len() {
        let token = tokens[k].as_str();
        let next_is_paren = tokens.get(k + 1).is_some_and(|t| t == "(");
        // An aggregation written `sum by (...) (...)` is followed by its grouping, not `(`.
        let next_is_grouping = tokens.get(k + 1).is_some_and(|t| t == "by" || t == "without")
            && tokens.get(k + 2).is_some_and(|t| t == "(");
        if GROUPING.contains(&token) && next_is_paren {
            // Skip the label list.
            while k < tokens.len() && tokens[k] != ")" {
                k += 1;
            }
        } else if token != "("
            && token != ")"
            && !next_is_paren
            && !next_is_grouping
            && !token.starts_with('$')
            && !KEYWORDS.contains(&token)
        {
            names.insert(token.to_owned());
        }
        k += 1;
    }
    names
}

#[test]
fn the_promql_name_extractor_finds_metrics_and_only_metrics() {
    let names = promql_metric_names(
        "histogram_quantile(0.99, sum by (le, registry) (rate(portcullis_x_bucket{instance=~\"$instance\",le!=\"1\"}[$__rate_interval]))) / on (registry) group_left (code) made_up_metric > bool 0.5 and up offset 5m",
    );
    let expected: BTreeSet<String> = ["portcullis_x_bucket", "made_up_metric", "up"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, expected);
    assert_eq!(
        promql_metric_names("label_values(portcullis_build_info, instance)"),
        BTreeSet::from(["portcullis_build_info".to_owned()])
    );
}

/// The expressions of every alert in `deploy/prometheus/alerts.yml`, by alert name.
fn alert_expressions() -> BTreeMap<String, String> {
    let rules = yaml_document(&deploy().join("prometheus/alerts.yml"));
    let mut out = BTreeMap::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            out.insert(
                rule["alert"].as_str().expect("alert name").to_owned(),
                rule["expr"].as_str().expect("expr").to_owned(),
            );
        }
    }
    out
}

/// The queries of the Grafana dashboard (panel targets, template variables, annotations), by
/// where they are.
fn dashboard_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(deploy().join("grafana/portcullis.json")).expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("panel {:?}", panel["title"].as_str().unwrap_or("")),
                target["expr"].as_str().expect("target expr").to_owned(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"].as_array().expect("templating") {
        if let Some(query) = variable["query"]["query"].as_str() {
            out.push((format!("variable {}", variable["name"]), query.to_owned()));
        }
    }
    for annotation in dashboard["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(expr) = annotation["expr"].as_str() {
            out.push((format!("annotation {}", annotation["name"]), expr.to_owned()));
        }
    }
    out
}

/// A dashboard query with Grafana's variables replaced so Prometheus can run it.
fn grafana_to_promql(query: &str) -> String {
    query
        .replace("$__rate_interval", "1m")
        .replace("$instance", ".*")
        .replace("$registry", ".*")
}

#[test]
fn the_dashboard_uses_a_datasource_variable_and_covers_the_operations_views() {
    let text = std::fs::read_to_string(deploy().join("grafana/portcullis.json")).expect("dashboard");
    let dashboard: Value = serde_json::from_str(&text).expect("JSON");
    let variables = dashboard["templating"]["list"].as_array().expect("variables");
    assert!(
        variables
            .iter()
            .any(|v| v["type"] == "datasource" && v["name"] == "datasource" && v["query"] == "prometheus"),
        "a datasource variable"
    );
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] != "row" {
            assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {}", panel["title"]);
            for target in panel["targets"].as_array().expect("targets") {
                assert_eq!(target["datasource"]["uid"], "${datasource}", "panel {}", panel["title"]);
            }
        }
    }
    let used: BTreeSet<String> = dashboard_queries()
        .iter()
        .flat_map(|(_, q)| promql_metric_names(q))
        .collect();
    for needed in [
        "portcullis_requests_total",
        "portcullis_refusals_total",
        "portcullis_decisions_total",
        "portcullis_verify_duration_seconds_bucket",
        "portcullis_verify_cache_lookups_total",
        "portcullis_upstream_up",
        "portcullis_upstream_errors_total",
        "portcullis_rules_reloads_total",
    ] {
        assert!(used.contains(needed), "the dashboard shows {needed}");
    }
}

// ---------------------------------------------------------------------------------------------
// Every metric the dashboard and the alerts name is one a running gateway exports.

fn provenance_rules() -> String {
    format!(
        r#"
[issuers.github]
url = "https://token.actions.githubusercontent.com"
kind = "github"

[registries.pypi]
audience = "portcullis-test"
default = "allow"

[[registries.pypi.projects]]
id = "no-internal-names"
names = ["internal-*"]
action = "deny"
message = "internal packages are published elsewhere"

[[registries.pypi.provenance_rules]]
id = "attested"
names = ["pypi-attestations"]
mode = "required"

{TOB_RELEASE_PUBLISHER}
[registries.dead]
"#
    )
}

fn pypi_upload(addr: SocketAddr, name: &str, version: &str, content: &[u8], extra: &[(&str, &str)]) -> http::Response {
    let form = Form::pypi_upload_with(name, version, &format!("{name}-{version}.tar.gz"), content, extra);
    http::request(
        addr,
        "POST",
        "/",
        &[
            ("content-type", &form.content_type()),
            ("authorization", &http::basic_auth("alice", "secret")),
        ],
        &form.body,
    )
}

/// The metric names in a Prometheus text exposition, histograms with their series suffixes.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        let mut fields = line.split_whitespace();
        if fields.next() == Some("#") && fields.next() == Some("TYPE") {
            let (Some(name), Some(kind)) = (fields.next(), fields.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            if kind == "histogram" || kind == "summary" {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
        }
    }
    names
}

#[test]
fn every_metric_in_the_dashboard_and_the_alerts_is_exported_by_the_gateway() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let dead: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let gateway = Gateway::builder()
        .registry({
            // A TUF feed to an RSTUF API that is down: its events wait and are counted.
            let mut r = RegistrySpec::new("pypi", "pypi", sink.addr());
            r.extra = format!("[registry.tuf]\napi = \"http://127.0.0.1:{}\"\n", free_port());
            r
        })
        .registry({
            let mut r = RegistrySpec::new("dead", "pypi", dead);
            r.extra = "path_prefix = \"/dead\"".into();
            r
        })
        .rules(&provenance_rules())
        .config(&format!(
            "[provenance]\ntrusted_root = {:?}\n",
            fixtures()
                .join("trusted-roots/public-good-production.trusted_root.json")
                .display()
                .to_string()
        ))
        .without_waiting_for_ready()
        .start(dir.path());

    // Traffic that makes every family appear: a genuine attested upload twice (an uncached
    // verification, then a cache hit), a denied one, a backend that refuses connections and a
    // rules file that does not validate.
    let case = fixtures().join("pep740/github-publish-pypi-attestations-0.0.19");
    let artifact = std::fs::read(case.join("artifact")).expect("artifact");
    let attestation =
        std::fs::read_to_string(case.join("pypi_attestations-0.0.19.tar.gz.publish.attestation")).expect("attestation");
    let attestations = format!("[{attestation}]");
    for _ in 0..2 {
        let form = Form::pypi_upload_with(
            "pypi-attestations",
            "0.0.19",
            "pypi_attestations-0.0.19.tar.gz",
            &artifact,
            &[("attestations", &attestations)],
        );
        let r = http::request(
            gateway.addr(),
            "POST",
            "/",
            &[
                ("content-type", &form.content_type()),
                ("authorization", &http::basic_auth("alice", "secret")),
            ],
            &form.body,
        );
        assert_eq!(r.status, 200, "attested upload: {}", r.text());
    }
    assert_eq!(
        pypi_upload(gateway.addr(), "internal-thing", "1.0", b"x", &[]).status,
        403
    );
    assert_eq!(http::get(gateway.addr(), "/dead/simple/").status, 502);
    std::fs::write(gateway.rules_path(), "[registries.nope]\n").expect("bad rules");
    gateway.signal_hup();
    gateway.metric_reaching("portcullis_rules_reloads_total{result=\"error\"}", 1.0);
    gateway.metric_reaching("portcullis_verify_cache_lookups_total{result=\"hit\"}", 1.0);
    let fed = portcullis_e2e::wait_until(std::time::Duration::from_secs(30), || {
        let names = exported_names(&gateway.metrics());
        names.contains("portcullis_tuf_feed_events_total") && names.contains("portcullis_tuf_feed_unavailable_total")
    });
    assert!(fed, "the TUF feed's counters appear: {}", gateway.metrics());

    let exported = exported_names(&gateway.metrics());
    // `up` is the scraping Prometheus' own series for each target.
    let mut known = exported.clone();
    known.insert("up".to_owned());
    let mut missing = Vec::new();
    let mut used = BTreeSet::new();
    for (place, query) in dashboard_queries() {
        for name in promql_metric_names(&query) {
            if !known.contains(&name) {
                missing.push(format!("dashboard {place}: {name}"));
            }
            used.insert(name);
        }
    }
    for (alert, expr) in alert_expressions() {
        for name in promql_metric_names(&expr) {
            if !known.contains(&name) {
                missing.push(format!("alert {alert}: {name}"));
            }
            used.insert(name);
        }
    }
    assert!(
        missing.is_empty(),
        "metrics the gateway does not export:\n{}\nexported: {exported:?}",
        missing.join("\n")
    );
    assert!(used.len() >= 18, "the dashboard and alerts read {used:?}");
    assert!(
        !exported.contains("portcullis_made_up_total"),
        "the comparison would catch an invented name"
    );
}

// ---------------------------------------------------------------------------------------------
// A real Prometheus scraping a gateway during an upload run.

fn percent_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

struct Prometheus {
    addr: SocketAddr,
    _process: Managed,
}

impl Prometheus {
    /// `GET /api/v1/<path>`, the JSON answer.
    fn api(&self, path_and_query: &str) -> Value {
        let r = http::get(self.addr, &format!("/api/v1/{path_and_query}"));
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("prometheus {path_and_query}: {e}: {}", r.text()))
    }

    /// An instant query's answer (`data.result`), after asserting it succeeded.
    fn query(&self, promql: &str) -> Vec<Value> {
        let answer = self.api(&format!("query?query={}", percent_encode(promql)));
        assert_eq!(answer["status"], "success", "{promql}: {answer}");
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// An instant query's samples as (label values joined by `,` in `labels` order, value).
    fn samples(&self, promql: &str, labels: &[&str]) -> BTreeMap<String, f64> {
        self.query(promql)
            .iter()
            .map(|s| {
                let key = labels
                    .iter()
                    .map(|l| s["metric"][*l].as_str().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(",");
                let value = s["value"][1].as_str().and_then(|v| v.parse().ok()).unwrap_or(f64::NAN);
                (key, value)
            })
            .collect()
    }
}

/// Starts Prometheus with `deploy/prometheus/prometheus.yml`, its target and intervals replaced
/// for the test (1 s) and its rule file given by absolute path.
fn start_prometheus(work: &Path, admin: SocketAddr) -> Prometheus {
    let binary = system_tool("prometheus", "prometheus");
    let shipped = std::fs::read_to_string(deploy().join("prometheus/prometheus.yml")).expect("prometheus.yml");
    let mut config = shipped.clone();
    for (from, to) in [
        ("scrape_interval: 15s", "scrape_interval: 1s".to_owned()),
        ("evaluation_interval: 15s", "evaluation_interval: 1s".to_owned()),
        ("- 127.0.0.1:9090", format!("- {admin}")),
        (
            "- alerts.yml",
            format!("- {}", deploy().join("prometheus/alerts.yml").display()),
        ),
    ] {
        assert!(config.contains(from), "prometheus.yml has {from:?}");
        config = config.replace(from, &to);
    }
    std::fs::create_dir_all(work).expect("prometheus dir");
    let config_path = work.join("prometheus.yml");
    std::fs::write(&config_path, config).expect("write prometheus.yml");
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let mut command = Command::new(binary);
    command
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!("--storage.tsdb.path={}", work.join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--log.level=warn");
    let mut process = Managed::spawn("prometheus", command, &work.join("prometheus.log"));
    let ready = wait_until(Duration::from_secs(30), || {
        process.try_exit().is_none()
            && std::net::TcpStream::connect(addr).is_ok()
            && http::get(addr, "/-/ready").status == 200
    });
    assert!(ready, "prometheus did not become ready:\n{}", process.log());
    Prometheus {
        addr,
        _process: process,
    }
}

#[test]
fn a_real_prometheus_scrapes_the_admin_listener_and_counts_the_uploads_and_decisions() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", sink.addr()))
        .rules(
            "[registries.pypi]\ndefault = \"allow\"\n[[registries.pypi.projects]]\nid = \"no-internal-names\"\nnames = [\"internal-*\"]\naction = \"deny\"\n",
        )
        .start(&dir.path().join("gateway"));
    let prometheus = start_prometheus(&dir.path().join("prometheus"), gateway.admin());

    // The first scrape happens before any upload.
    assert!(
        wait_until(Duration::from_secs(30), || {
            prometheus
                .samples("up{job=\"portcullis\"}", &["instance"])
                .get(&gateway.admin().to_string())
                == Some(&1.0)
        }),
        "prometheus never scraped {}: {:?}",
        gateway.admin(),
        prometheus.api("targets")
    );

    // The run: three accepted uploads, one refused.
    let mut statuses = BTreeMap::new();
    for (name, version) in [
        ("acme-widgets", "1.0"),
        ("acme-widgets", "1.1"),
        ("acme-gadgets", "0.1"),
        ("internal-secrets", "1.0"),
    ] {
        let r = pypi_upload(
            gateway.addr(),
            name,
            version,
            format!("{name} {version}").as_bytes(),
            &[],
        );
        *statuses.entry(r.status.to_string()).or_insert(0.0) += 1.0;
    }
    assert_eq!(
        statuses,
        BTreeMap::from([("200".to_owned(), 3.0), ("403".to_owned(), 1.0)])
    );
    let complete =
        |s: &portcullis_e2e::sink::Seen| s.method == "POST" && s.ending == portcullis_e2e::sink::Ending::Complete;
    assert_eq!(
        sink.seen().iter().filter(|s| complete(s)).count(),
        3,
        "the refused upload never completed upstream"
    );

    let requests =
        "sum by (status) (portcullis_requests_total{job=\"portcullis\",registry=\"pypi\",method_class=\"write\"})";
    let decisions = "sum by (rule, outcome) (portcullis_decisions_total{job=\"portcullis\",registry=\"pypi\"})";
    let refusals = "sum by (code) (portcullis_refusals_total{job=\"portcullis\",registry=\"pypi\"})";
    let want_decisions = BTreeMap::from([
        ("default,allow".to_owned(), 3.0),
        ("no-internal-names,refuse".to_owned(), 1.0),
    ]);
    let want_refusals = BTreeMap::from([("project_denied".to_owned(), 1.0)]);
    let mut answers = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let settled = wait_until(Duration::from_secs(30), || {
        answers = (
            prometheus.samples(requests, &["status"]),
            prometheus.samples(decisions, &["rule", "outcome"]),
            prometheus.samples(refusals, &["code"]),
        );
        answers.0 == statuses && answers.1 == want_decisions && answers.2 == want_refusals
    });
    eprintln!("PromQL {requests}\n  => {:?}", answers.0);
    eprintln!("PromQL {decisions}\n  => {:?}", answers.1);
    eprintln!("PromQL {refusals}\n  => {:?}", answers.2);
    assert!(
        settled,
        "prometheus answered requests {:?}, decisions {:?}, refusals {:?}; the gateway exports:\n{}",
        answers.0,
        answers.1,
        answers.2,
        gateway.metrics()
    );

    // The shipped alert rules load and evaluate in the real server.
    let mut rules = Vec::new();
    let evaluated = wait_until(Duration::from_secs(20), || {
        rules = prometheus.api("rules")["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        rules.len() == alert_expressions().len()
            && rules
                .iter()
                .all(|r| r["health"] == "ok" && r["lastEvaluation"].as_str().is_some_and(|t| !t.starts_with("0001")))
    });
    assert!(evaluated, "alert rules in prometheus: {rules:?}");
    // Nothing is wrong in this run, so none of them fires.
    let firing: Vec<_> = rules.iter().filter(|r| r["state"] == "firing").collect();
    assert!(firing.is_empty(), "{firing:?}");

    // Every dashboard query is valid PromQL for this server, and the traffic panel shows the run.
    for (_, query) in dashboard_queries() {
        if !query.starts_with("label_values(") {
            prometheus.query(&grafana_to_promql(&query));
        }
    }
    let instances = prometheus.samples("portcullis_build_info", &["instance"]);
    assert_eq!(instances.len(), 1, "{instances:?}");
}

// ---------------------------------------------------------------------------------------------
// promtool.

#[test]
fn promtool_checks_the_config_and_rules_and_the_rule_unit_tests_pass() {
    let promtool = system_tool("promtool", "prometheus");
    let dir = deploy().join("prometheus");
    let check = run(Command::new(&promtool)
        .args(["check", "rules", "alerts.yml"])
        .current_dir(&dir));
    assert!(check.status.success(), "{}{}", text(&check.stdout), text(&check.stderr));
    let want = format!("SUCCESS: {} rules found", alert_expressions().len());
    assert!(text(&check.stdout).contains(&want), "{}", text(&check.stdout));

    let config = run(Command::new(&promtool)
        .args(["check", "config", "prometheus.yml"])
        .current_dir(&dir));
    assert!(
        config.status.success(),
        "{}{}",
        text(&config.stdout),
        text(&config.stderr)
    );

    let tests = run(Command::new(&promtool)
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(&dir));
    assert!(tests.status.success(), "{}{}", text(&tests.stdout), text(&tests.stderr));
    assert!(text(&tests.stdout).contains("SUCCESS"), "{}", text(&tests.stdout));

    // The unit tests bite: with the refusal threshold raised they fail.
    let work = tempfile::tempdir().expect("tempdir");
    let alerts = std::fs::read_to_string(dir.join("alerts.yml")).expect("alerts.yml");
    assert!(alerts.contains(") > 0.2"));
    std::fs::write(work.path().join("alerts.yml"), alerts.replace(") > 0.2", ") > 0.9")).expect("write");
    std::fs::copy(dir.join("alerts.test.yml"), work.path().join("alerts.test.yml")).expect("copy");
    let mutated = run(Command::new(&promtool)
        .args(["test", "rules", "alerts.test.yml"])
        .current_dir(work.path()));
    assert!(
        !mutated.status.success(),
        "the unit tests did not notice a changed threshold"
    );
    let report = format!("{}{}", text(&mutated.stdout), text(&mutated.stderr));
    assert!(report.contains("PortcullisRefusalSpike"), "{report}");
}

// ---------------------------------------------------------------------------------------------
// systemd.

fn unit_directive<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}="))
}

fn seconds(duration: &str) -> u64 {
    duration
        .trim_end_matches('s')
        .parse()
        .unwrap_or_else(|_| panic!("{duration:?} is not N s"))
}

#[test]
fn systemd_analyze_verifies_the_unit_and_its_commands_work() {
    let analyze = system_tool("systemd-analyze", "systemd");
    let unit = std::fs::read_to_string(deploy().join("systemd/portcullis.service")).expect("unit");
    let binary = gateway::binary();
    let work = tempfile::tempdir().expect("tempdir");
    // verify needs the ExecStart binaries to exist: point the copy at the built one.
    let local = work.path().join("portcullis.service");
    std::fs::write(
        &local,
        unit.replace("/usr/local/bin/portcullis", &binary.display().to_string()),
    )
    .expect("write");
    let verify = run(Command::new(&analyze).arg("verify").arg(&local));
    let complaints: Vec<_> = text(&verify.stderr)
        .lines()
        .chain(text(&verify.stdout).lines())
        .filter(|l| l.contains("portcullis.service"))
        .map(String::from)
        .collect::<Vec<_>>();
    assert!(verify.status.success() && complaints.is_empty(), "{complaints:?}");

    // The check bites: a misspelt directive and a bad value are reported.
    let broken = work.path().join("broken.service");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&local)
            .expect("read")
            .replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
            .replace("ProtectSystem=strict", "ProtectSystem=strictly"),
    )
    .expect("write");
    let verify = text(&run(Command::new(&analyze).arg("verify").arg(&broken)).stderr);
    assert!(
        verify.contains("NoNewPrivilege") && verify.contains("strictly"),
        "{verify}"
    );

    // Exposure score from `systemd-analyze security` (0 = most locked down, 10 = unprotected).
    let security = run(Command::new(&analyze).args(["security", "--offline=true"]).arg(&local));
    let report = text(&security.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| l.split("Overall exposure level for portcullis.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{report}{}", text(&security.stderr)));
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score <= 2.0, "exposure {score}:\n{report}");

    // ExecStartPre is a real check-config command line: it passes on the shipped example.
    let pre = unit_directive(&unit, "ExecStartPre");
    let mut words = pre.split_whitespace();
    assert_eq!(words.next(), Some("/usr/local/bin/portcullis"));
    let args: Vec<&str> = words.collect();
    assert_eq!(args, ["check-config", "/etc/portcullis/portcullis.toml"]);
    let (code, stdout, stderr) = check_config(&deploy().join("examples/pypiserver.toml"));
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(
        unit_directive(&unit, "ExecStart"),
        "/usr/local/bin/portcullis run --config /etc/portcullis/portcullis.toml"
    );
    assert_eq!(unit_directive(&unit, "ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(unit_directive(&unit, "KillSignal"), "SIGTERM");
    // Stopping waits longer than the examples' drain.
    let example = std::fs::read_to_string(deploy().join("examples/pypiserver.toml")).expect("example");
    let drain: u64 = ["grace_period", "shutdown_timeout"]
        .iter()
        .map(|key| {
            let line = example
                .lines()
                .find(|l| l.starts_with(&format!("{key} =")))
                .expect("setting");
            seconds(line.split('"').nth(1).expect("quoted"))
        })
        .sum();
    assert!(seconds(unit_directive(&unit, "TimeoutStopSec")) > drain);
    for directive in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "StateDirectory=portcullis",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "SystemCallFilter=@system-service",
    ] {
        assert!(unit.lines().any(|l| l == directive), "{directive}");
    }
}

// ---------------------------------------------------------------------------------------------
// Container image.

/// The Containerfile's instructions, continuation lines joined and comments dropped.
fn containerfile_instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') && current.is_empty() {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            current.push_str(part.trim());
            current.push(' ');
        } else {
            current.push_str(trimmed);
            if !current.is_empty() {
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

#[test]
fn the_containerfile_passes_hadolint_and_its_healthcheck_probes_healthz() {
    let hadolint = deploy_tools().join("hadolint");
    let file = deploy().join("container/Containerfile");
    let lint = run(Command::new(&hadolint).arg(&file));
    assert!(
        lint.status.success(),
        "hadolint:\n{}{}",
        text(&lint.stdout),
        text(&lint.stderr)
    );

    // The linter bites: an unpinned base image is reported.
    let source = std::fs::read_to_string(&file).expect("Containerfile");
    let work = tempfile::tempdir().expect("tempdir");
    let bad = work.path().join("Containerfile");
    assert!(source.contains("debian:bookworm-slim"));
    std::fs::write(&bad, source.replace("debian:bookworm-slim", "debian:latest")).expect("write");
    let lint = run(Command::new(&hadolint).arg(&bad));
    assert!(
        !lint.status.success() && text(&lint.stdout).contains("DL3007"),
        "{}",
        text(&lint.stdout)
    );

    let instructions = containerfile_instructions(&source);
    let user = instructions
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .expect("a USER");
    assert!(!user.starts_with('0') && !user.starts_with("root"), "runs as {user}");
    let volume = instructions.iter().find(|i| i.starts_with("VOLUME ")).expect("VOLUME");
    assert!(volume.contains("/etc/portcullis") && volume.contains("/var/lib/portcullis"));
    assert_eq!(
        instructions.iter().filter(|i| i.starts_with("FROM ")).count(),
        2,
        "multi-stage"
    );

    // The HEALTHCHECK command, run as the engine would (exec form), against a real gateway's
    // admin listener: healthy; against a port where nothing listens: unhealthy.
    let healthcheck = instructions
        .iter()
        .find(|i| i.starts_with("HEALTHCHECK "))
        .expect("HEALTHCHECK");
    let json = &healthcheck[healthcheck.find("CMD [").expect("exec form") + 4..];
    let argv: Vec<String> = serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"));
    let (_sink, _dir, gateway) = gateway::npm_over_sink("[registries.npm]\n");
    let probe = |port: u16| {
        run(Command::new(&argv[0])
            .args(&argv[1..])
            .env("PORTCULLIS_ADMIN_PORT", port.to_string()))
        .status
        .success()
    };
    assert!(probe(gateway.admin().port()), "healthcheck against a live gateway");
    assert!(!probe(free_port()), "healthcheck against a closed port");
}

// ---------------------------------------------------------------------------------------------
// Kubernetes.

struct Rendered {
    resources: Vec<Value>,
}

impl Rendered {
    fn one(&self, kind: &str) -> &Value {
        let found: Vec<_> = self.resources.iter().filter(|r| r["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "one {kind}");
        found[0]
    }

    fn config_map(&self, prefix: &str) -> &Value {
        self.resources
            .iter()
            .find(|r| r["kind"] == "ConfigMap" && r["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(prefix)))
            .unwrap_or_else(|| panic!("ConfigMap {prefix}"))
    }
}

/// Renders a kustomization with kubectl's kustomize, validates every resource with
/// kubernetes-validate (strict), and returns the resources.
fn render_and_validate(kustomization: &str, work: &Path) -> Rendered {
    let bin = deploy_tools();
    let render = run(Command::new(bin.join("kubectl"))
        .arg("kustomize")
        .arg(deploy().join("kubernetes").join(kustomization)));
    assert!(
        render.status.success(),
        "kustomize {kustomization}: {}",
        text(&render.stderr)
    );
    let file = work.join(format!("{}.yaml", kustomization.replace('/', "-")));
    std::fs::write(&file, &render.stdout).expect("write rendered");
    let validate = run(Command::new(bin.join("kubernetes-validate")).arg("--strict").arg(&file));
    let report = format!("{}{}", text(&validate.stdout), text(&validate.stderr));
    assert!(
        validate.status.success(),
        "kubernetes-validate {kustomization}:\n{report}"
    );
    let resources = yaml_documents(&file);
    // Every resource but the ServiceMonitor (a CRD, without a published schema) passed.
    for r in &resources {
        let kind = r["kind"].as_str().expect("kind");
        let name = r["metadata"]["name"].as_str().expect("name");
        if kind == "ServiceMonitor" {
            assert!(
                report.contains("Couldn't find schema for kind ServiceMonitor"),
                "{report}"
            );
        } else {
            let line = format!("passed for resource {}/{name}", kind.to_lowercase());
            assert!(report.contains(&line), "{line} missing in:\n{report}");
        }
    }
    eprintln!("{kustomization}:\n{report}");
    Rendered { resources }
}

fn is_subset(selector: &Value, labels: &Value) -> bool {
    selector
        .as_object()
        .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| labels[k] == *v))
}

/// The `port` of an `address = "host:port"` line in a TOML table.
fn toml_port(config: &str, table: &str) -> u16 {
    let value: toml_like::Table = toml_like::parse(config);
    value
        .get(table)
        .and_then(|a| a.rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{table} address in:\n{config}"))
}

/// Just enough TOML reading for addresses: `[table]` or `[[table]]` then `address = "..."`.
mod toml_like {
    pub type Table = std::collections::BTreeMap<String, String>;
    pub fn parse(text: &str) -> Table {
        let mut out = Table::new();
        let mut table = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                table = line.trim_matches(['[', ']']).to_owned();
            } else if let Some(rest) = line.strip_prefix("address = \"") {
                out.entry(table.clone())
                    .or_insert_with(|| rest.split('"').next().unwrap_or("").to_owned());
            }
        }
        out
    }
}

fn check_kubernetes_resources(rendered: &Rendered, work: &Path) {
    let deployment = rendered.one("Deployment");
    let pod = &deployment["spec"]["template"];
    let pod_labels = &pod["metadata"]["labels"];
    assert!(is_subset(&deployment["spec"]["selector"]["matchLabels"], pod_labels));
    let spec = &pod["spec"];
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    let container = &spec["containers"][0];
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    let port_of = |name: &str| {
        container["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .find(|p| p["name"] == name)
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("container port {name}"))
    };
    assert_eq!(container["readinessProbe"]["httpGet"]["port"], "admin");
    assert_eq!(container["livenessProbe"]["httpGet"]["port"], "admin");

    // The configuration in the ConfigMap listens where the pod spec says, reads the rules from
    // the rules volume, and passes `portcullis check-config`.
    let config = rendered.config_map("portcullis-config")["data"]["portcullis.toml"]
        .as_str()
        .expect("portcullis.toml");
    assert_eq!(u64::from(toml_port(config, "admin")), port_of("admin"));
    assert_eq!(u64::from(toml_port(config, "listener")), port_of("http"));
    let rules_cm = rendered.config_map("portcullis-rules");
    assert_eq!(
        rules_cm["metadata"]["name"], "portcullis-rules",
        "no hash suffix: edits reach the pods"
    );
    let rules = rules_cm["data"]["rules.toml"].as_str().expect("rules.toml");
    let mounts = container["volumeMounts"].as_array().expect("mounts");
    let mount = |volume: &str| {
        mounts
            .iter()
            .find(|m| m["name"] == volume)
            .and_then(|m| m["mountPath"].as_str())
            .unwrap_or_else(|| panic!("mount {volume}"))
    };
    assert!(
        mounts.iter().all(|m| m.get("subPath").is_none()),
        "subPath mounts never update"
    );
    let rules_path = format!("{}/rules.toml", mount("rules"));
    assert!(config.contains(&format!("files = [\"{rules_path}\"]")), "{config}");
    let config_arg = format!("{}/portcullis.toml", mount("config"));
    assert!(
        container["args"]
            .as_array()
            .expect("args")
            .iter()
            .any(|a| a == config_arg.as_str()),
        "{}",
        container["args"]
    );
    let volumes = spec["volumes"].as_array().expect("volumes");
    assert!(volumes.iter().any(|v| v["name"] == "config"
        && v["configMap"]["name"] == rendered.config_map("portcullis-config")["metadata"]["name"]));
    assert!(
        config.contains(&format!("dir = \"{}\"", mount("state"))),
        "state dir on its volume"
    );
    // The backend's host name resolves in the cluster, not here: check against loopback.
    let sink = Sink::start();
    let upstream = toml_like::parse(config)
        .get("registry.upstream")
        .cloned()
        .expect("upstream address");
    std::fs::create_dir_all(work).expect("dir");
    std::fs::write(work.join("rules.toml"), rules).expect("rules");
    let local_config = config
        .replace(&rules_path, &work.join("rules.toml").display().to_string())
        .replace(&upstream, &sink.addr().to_string())
        .replace(
            &format!("\"{}\"", mount("state")),
            &format!("{:?}", work.join("state").display().to_string()),
        );
    std::fs::write(work.join("portcullis.toml"), &local_config).expect("config");
    // A PostgreSQL state store reads its connection string from a variable the pod spec sets.
    let dsn_var = local_config
        .lines()
        .find_map(|l| l.trim().strip_prefix("url_env = \""))
        .map(|rest| rest.trim_end_matches('"').to_owned());
    let env: Vec<(&str, &str)> = match &dsn_var {
        Some(var) => {
            let set = container["env"]
                .as_array()
                .is_some_and(|env| env.iter().any(|e| e["name"] == var.as_str()));
            assert!(set, "state.url_env names {var}, which the container does not get");
            vec![(var.as_str(), "postgres://portcullis@127.0.0.1:1/portcullis")]
        }
        None => Vec::new(),
    };
    let (code, stdout, stderr) = check_config_with_env(&work.join("portcullis.toml"), &env);
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    // Selectors meet: Service, PDB and NetworkPolicy select the pods, the HPA the Deployment,
    // the ServiceMonitor the Service and one of its ports.
    let service = rendered.one("Service");
    assert!(is_subset(&service["spec"]["selector"], pod_labels));
    assert!(is_subset(
        &rendered.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    assert!(is_subset(
        &rendered.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
        pod_labels
    ));
    let hpa = rendered.one("HorizontalPodAutoscaler");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], deployment["metadata"]["name"]);
    let monitor = rendered.one("ServiceMonitor");
    assert!(is_subset(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
    let monitored_port = &monitor["spec"]["endpoints"][0]["port"];
    assert!(service["spec"]["ports"]
        .as_array()
        .expect("service ports")
        .iter()
        .any(|p| p["name"] == *monitored_port && p["targetPort"] == "admin"));
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
}

#[test]
fn kubernetes_base_and_overlay_render_validate_and_fit_together() {
    let work = tempfile::tempdir().expect("tempdir");
    let base = render_and_validate("base", work.path());
    check_kubernetes_resources(&base, &work.path().join("base-check"));
    let kinds: BTreeSet<&str> = base.resources.iter().filter_map(|r| r["kind"].as_str()).collect();
    for kind in [
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ServiceMonitor",
        "NetworkPolicy",
        "ConfigMap",
        "ServiceAccount",
    ] {
        assert!(kinds.contains(kind), "{kind} in {kinds:?}");
    }

    let overlay = render_and_validate("overlays/example", work.path());
    check_kubernetes_resources(&overlay, &work.path().join("overlay-check"));
    assert!(overlay
        .resources
        .iter()
        .all(|r| r["metadata"]["namespace"] == "registry"));
    let container = &overlay.one("Deployment")["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.org/platform/portcullis:0.1.0");
    let dsn = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .find(|e| e["name"] == "PORTCULLIS_STATE_DSN")
        .expect("the DSN variable");
    assert_eq!(dsn["valueFrom"]["secretKeyRef"]["name"], "portcullis-postgres");
    assert_eq!(dsn["valueFrom"]["secretKeyRef"]["key"], "dsn");
    let egress = overlay.one("NetworkPolicy")["spec"]["egress"]
        .as_array()
        .expect("egress")
        .clone();
    assert!(egress.iter().any(|e| e["ports"][0]["port"] == 5432
        && e["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"] == "postgresql"));
    assert_eq!(overlay.one("HorizontalPodAutoscaler")["spec"]["maxReplicas"], 10);
    // The backend egress rule selects the backend, not the gateway (kustomize labels must not
    // leak into other selectors).
    assert!(egress.iter().any(
        |e| e["to"][0]["podSelector"]["matchLabels"] == serde_json::json!({"app.kubernetes.io/name": "pypiserver"})
    ));
}

/// Lays out `dir/rules.toml` as the kubelet mounts a ConfigMap key: `rules.toml ->
/// ..data/rules.toml`, `..data -> ..<version>`, and swaps `..data` atomically on update.
fn kubelet_swap(dir: &Path, version: &str, rules: &str) {
    let data = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("rules.toml"), rules).expect("rules");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap ..data");
}

#[test]
fn a_configmap_style_symlink_swap_reloads_the_rules_without_a_restart() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let allow = "[registries.pypi]\ndefault = \"allow\"\n";
    let mut gateway = Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", sink.addr()))
        .rules(allow)
        .start(dir.path());
    // Turn the plain rules file into the kubelet's layout, same content first.
    kubelet_swap(&gateway.dir, "2026_11_26_00_00_00.1", allow);
    let link = gateway.dir.join(".rules.toml.link");
    std::os::unix::fs::symlink("..data/rules.toml", &link).expect("symlink");
    std::fs::rename(&link, gateway.rules_path()).expect("rules.toml -> ..data/rules.toml");
    let first = gateway.revision();
    assert_eq!(
        pypi_upload(gateway.addr(), "acme-widgets", "1.0", b"one", &[]).status,
        200
    );

    // The ConfigMap is edited: the kubelet writes a new folder and swaps `..data`.
    kubelet_swap(
        &gateway.dir,
        "2026_11_26_00_01_00.2",
        "[registries.pypi]\ndefault = \"allow\"\n[[registries.pypi.projects]]\nid = \"frozen\"\nnames = [\"acme-*\"]\naction = \"deny\"\nmessage = \"frozen\"\n",
    );
    let _ = std::fs::remove_dir_all(gateway.dir.join("..2026_11_26_00_00_00.1"));
    assert!(
        wait_until(Duration::from_secs(10), || gateway.revision() != first),
        "the swap was not seen:\n{}",
        gateway.log()
    );
    let r = pypi_upload(gateway.addr(), "acme-widgets", "1.1", b"two", &[]);
    assert_eq!((r.status, r.json()["code"].as_str()), (403, Some("project_denied")));
    assert_eq!(gateway.process().try_exit(), None, "no restart");
}
