//! The admin listener, backend failures as clients see them, and `portcullis check-config`.

use std::time::Duration;

use portcullis_e2e::gateway::{check_config, npm_over_sink, Gateway, RegistrySpec};
use portcullis_e2e::sink::Sink;
use portcullis_e2e::{free_port, http, repo_root, wait_until};

#[test]
fn admin_endpoints_report_health_rules_and_metrics() {
    let (_sink, _dir, gateway) = npm_over_sink("[registries.npm]\n");
    let admin = gateway.admin();
    assert_eq!(http::get(admin, "/healthz").status, 200);
    let ready = http::get(admin, "/readyz");
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["upstreams"]["npm"], true);
    let rules = http::get(admin, "/rules").json();
    assert_eq!(rules["revision"].as_str().map(str::len), Some(16));
    assert!(rules["loaded_at"].as_str().is_some_and(|t| t.contains('T')));
    assert!(rules["sources"][0].as_str().is_some_and(|s| s.ends_with("rules.toml")));
    assert_eq!(http::get(admin, "/nope").status, 404);
    assert_eq!(http::request(admin, "POST", "/rules", &[], b"").status, 405);

    let publish = http::npm_publish_doc("some-pkg", 10);
    assert_eq!(
        http::request(gateway.addr(), "PUT", "/some-pkg", &[], &publish).status,
        200
    );
    assert_eq!(http::get(gateway.addr(), "/some-pkg").status, 200);
    gateway.metric_reaching(
        "portcullis_requests_total{method_class=\"read\",registry=\"npm\",status=\"200\"}",
        1.0,
    );
    let metrics = gateway.metrics();
    let body_bytes = format!(
        "portcullis_request_body_bytes_total{{method_class=\"write\",registry=\"npm\"}} {}",
        publish.len()
    );
    assert!(metrics.contains(&body_bytes), "missing {body_bytes} in:\n{metrics}");
    for name in [
        "portcullis_requests_total{method_class=\"write\",registry=\"npm\",status=\"200\"} 1",
        "portcullis_requests_total{method_class=\"read\",registry=\"npm\",status=\"200\"} 1",
        "portcullis_decisions_total{outcome=\"allow\",registry=\"npm\",rule=\"default\"} 1",
        "portcullis_upstream_latency_seconds_count{registry=\"npm\"} 2",
        "portcullis_request_duration_seconds_bucket",
        "portcullis_upload_size_bytes_count{registry=\"npm\"} 1",
        "portcullis_uploads_in_flight{registry=\"npm\"} 0",
        "portcullis_upstream_up{registry=\"npm\"} 1",
        "portcullis_rules_revision_info{revision=",
        "portcullis_rules_loaded_timestamp_seconds",
        "portcullis_build_info{version=",
    ] {
        assert!(metrics.contains(name), "missing {name} in:\n{metrics}");
    }
}

#[test]
fn a_dead_backend_is_not_ready_and_requests_get_a_json_502() {
    let dead: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = Gateway::builder()
        .registry(RegistrySpec::new("pypi", "pypi", dead))
        .rules("")
        .without_waiting_for_ready()
        .start(dir.path());
    let ready = http::get(gateway.admin(), "/readyz");
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["upstreams"]["pypi"], false);
    let r = http::get(gateway.addr(), "/simple/");
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["code"], "upstream_unavailable");
    assert!(wait_until(Duration::from_secs(3), || {
        gateway.metric("portcullis_upstream_errors_total{kind=\"connect\",registry=\"pypi\"}") >= 1.0
    }));
}

#[test]
fn unrouted_paths_and_tricks_get_json_refusals() {
    let sink = Sink::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let gateway = Gateway::builder()
        .registry({
            let mut r = RegistrySpec::new("pypi", "pypi", sink.addr());
            r.extra = "path_prefix = \"/pypi\"".into();
            r
        })
        .rules("")
        .start(dir.path());
    let addr = gateway.addr();
    let r = http::get(addr, "/elsewhere");
    assert_eq!((r.status, r.json()["code"].as_str()), (404, Some("no_route")));
    for path in ["/pypi/../admin", "/pypi/%2e%2e/x", "/pypi/a%00b"] {
        let r = http::get(addr, path);
        assert_eq!((r.status, r.json()["code"].as_str()), (400, Some("bad_path")), "{path}");
    }
    let r = http::request(addr, "DELETE", "/pypi/packages/x.whl", &[], b"");
    assert_eq!((r.status, r.json()["code"].as_str()), (405, Some("unclassified_write")));
    let r = http::request(addr, "POST", "/pypi/", &[("Content-Type", "application/json")], b"{}");
    assert_eq!((r.status, r.json()["code"].as_str()), (405, Some("unclassified_write")));
    // The prefix is stripped before forwarding.
    assert_eq!(http::get(addr, "/pypi/simple/").status, 200);
    assert!(sink.seen().iter().any(|s| s.path == "/simple/"));
    assert!(
        sink.seen().iter().all(|s| s.method == "GET"),
        "no refused request reached the backend"
    );
}

#[test]
fn check_config_accepts_the_examples_and_names_file_field_and_reason() {
    for example in ["deploy/examples/pypiserver.toml", "deploy/examples/verdaccio.toml"] {
        let (code, stdout, stderr) = check_config(&repo_root().join(example));
        assert_eq!(code, Some(0), "{example}: {stderr}");
        assert!(stdout.contains("ok"), "{example}: {stdout}");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("bad.toml");
    let valid = "[[listener]]\naddress = \"127.0.0.1:1\"\n[rules]\nfiles = [\"r.toml\"]\n[[registry]]\nname = \"pypi\"\nprotocol = \"pypi\"\n[registry.upstream]\naddress = \"127.0.0.1:2\"\n";
    std::fs::write(&config, format!("{valid}read_timeout = \"forever\"\n")).expect("write");
    let (code, _, stderr) = check_config(&config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.toml")
            && stderr.contains("registry[0].upstream.read_timeout")
            && stderr.contains("forever"),
        "{stderr}"
    );

    // A TUF feed whose target path would leave the registry's tree is named by field.
    std::fs::write(
        &config,
        format!("{valid}[registry.tuf]\napi = \"http://127.0.0.1:3\"\ntarget_path = \"../{{filename}}\"\n"),
    )
    .expect("write");
    let (code, _, stderr) = check_config(&config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("registry[0].tuf.target_path"), "{stderr}");

    // A valid config whose rules file is invalid fails too, naming the rules file.
    std::fs::write(&config, valid).expect("write");
    std::fs::write(dir.path().join("r.toml"), "[registries.npm]\n").expect("write");
    let (code, _, stderr) = check_config(&config);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("r.toml") && stderr.contains("registries.npm") && stderr.contains("known: pypi"),
        "{stderr}"
    );
}
