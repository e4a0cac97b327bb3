use std::sync::Arc;

use super::super::tuf::{FailureKind, Fetched, RoleVersion, TufError, TufRoles};
use super::*;
use crate::test_fixtures;

const NOW: i64 = 1_800_000_000;

fn production() -> Vec<u8> {
    test_fixtures::read("trusted-roots/public-good-production.trusted_root.json")
}

fn staging() -> Vec<u8> {
    test_fixtures::read("trusted-roots/public-good-staging.trusted_root.json")
}

fn roles(timestamp_version: u64, timestamp_expires: i64) -> TufRoles {
    let far = RoleVersion {
        version: 1,
        expires: NOW + 365 * 86_400,
    };
    TufRoles {
        root: far,
        timestamp: RoleVersion {
            version: timestamp_version,
            expires: timestamp_expires,
        },
        snapshot: far,
        targets: far,
    }
}

fn tuf_handle() -> (TrustHandle, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::new());
    let handle = TrustHandle::new(
        TrustSource::Tuf {
            repository: "https://tuf.example".to_owned(),
            anchor_source: "test anchor".to_owned(),
            cache_dir: "/tmp/unused".into(),
        },
        metrics.clone(),
    );
    (handle, metrics)
}

/// Adopts `trusted_root` as if a refresh had verified it under `roles`.
fn adopt(
    handle: &TrustHandle,
    trusted_root: Vec<u8>,
    roles: TufRoles,
    arrival: Arrival,
    now: i64,
) -> Result<bool, TufError> {
    handle.adopt(Fetched { trusted_root, roles }, arrival, now)
}

fn rendered(metrics: &Metrics) -> String {
    String::from_utf8(metrics.render()).expect("utf-8")
}

fn unreachable() -> TufError {
    TufError {
        kind: FailureKind::Unreachable,
        message: "GET https://tuf.example/timestamp.json failed".to_owned(),
    }
}

#[test]
fn nothing_is_usable_before_the_first_root_and_the_reason_is_the_last_failure() {
    let (handle, metrics) = tuf_handle();
    let err = handle.current(NOW).expect_err("nothing loaded");
    assert_eq!(err.code(), "provenance_trust_unavailable");
    assert!(err.to_string().contains("no refresh has completed yet"), "{err}");
    handle.failed(&unreachable(), NOW);
    let err = handle.current(NOW).expect_err("nothing loaded");
    assert!(err.to_string().contains("timestamp.json failed (unreachable)"), "{err}");
    let text = rendered(&metrics);
    assert!(text.contains("portcullis_trust_root_loaded 0"), "{text}");
    assert!(
        text.contains("portcullis_trust_refreshes_total{outcome=\"unreachable\"} 1"),
        "{text}"
    );
    let described = handle.describe(NOW);
    assert_eq!(described["verifies"], false);
    assert_eq!(described["unavailable"]["code"], "provenance_trust_unavailable");
    assert_eq!(described["refresh"]["consecutive_failures"], 1);
}

#[test]
fn an_adopted_root_is_used_until_its_tuf_metadata_expires_then_refused_as_expired() {
    let (handle, metrics) = tuf_handle();
    let expires = NOW + 3600;
    let changed = adopt(&handle, production(), roles(7, expires), Arrival::Network, NOW).expect("adopted");
    assert!(changed);
    let root = handle.current(NOW).expect("in force");
    assert!(!root.tlogs.is_empty());
    assert!(handle.current(expires - 1).is_ok());
    handle.failed(&unreachable(), expires);
    let err = handle.current(expires).expect_err("expired");
    assert_eq!(err.code(), "provenance_trust_expired");
    let message = err.to_string();
    assert!(message.contains("timestamp metadata expired at"), "{message}");
    assert!(message.contains("unreachable"), "{message}");
    let text = rendered(&metrics);
    assert!(text.contains("portcullis_trust_root_loaded 1"), "{text}");
    assert!(
        text.contains(&format!("portcullis_trust_expiry_timestamp_seconds {expires}")),
        "{text}"
    );
    assert!(
        text.contains("portcullis_trust_tuf_version{role=\"timestamp\"} 7"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_trust_refreshes_total{outcome=\"updated\"} 1"),
        "{text}"
    );
}

#[test]
fn a_failed_refresh_keeps_the_last_good_root_and_a_renewal_lifts_the_expiry() {
    let (handle, _) = tuf_handle();
    let first = NOW + 60;
    adopt(&handle, production(), roles(1, first), Arrival::Cache, NOW).expect("adopted");
    let before = handle.current(NOW).expect("in force");
    handle.failed(
        &TufError {
            kind: FailureKind::Rollback,
            message: "rollback detected for timestamp".to_owned(),
        },
        NOW + 1,
    );
    let after = handle.current(NOW + 1).expect("still in force");
    assert!(Arc::ptr_eq(&before, &after), "the same root object stays in force");
    // The same root under renewed metadata: unchanged root, later expiry.
    let changed = adopt(&handle, production(), roles(2, NOW + 7200), Arrival::Network, NOW + 2).expect("adopted");
    assert!(!changed, "the root itself did not change");
    assert!(
        handle.current(first + 10).is_ok(),
        "the renewed timestamp lifts the expiry"
    );
    assert_eq!(handle.describe(NOW + 2)["in_force"]["tuf"]["timestamp"]["version"], 2);
}

#[test]
fn a_new_root_replaces_the_old_and_a_verification_in_flight_keeps_the_one_it_took() {
    let (handle, _) = tuf_handle();
    adopt(&handle, production(), roles(1, NOW + 3600), Arrival::Network, NOW).expect("adopted");
    let in_flight = handle.current(NOW).expect("in force");
    let changed = adopt(&handle, staging(), roles(2, NOW + 3600), Arrival::Network, NOW).expect("adopted");
    assert!(changed);
    let now_in_force = handle.current(NOW).expect("in force");
    assert_ne!(in_flight.revision, now_in_force.revision);
    assert!(!in_flight.tlogs.is_empty(), "the old root is whole while held");
}

#[test]
fn a_target_that_is_not_a_trusted_root_is_refused_and_the_last_good_stays() {
    let (handle, metrics) = tuf_handle();
    adopt(&handle, production(), roles(1, NOW + 3600), Arrival::Network, NOW).expect("adopted");
    let err = adopt(
        &handle,
        b"{\"mediaType\": 3}".to_vec(),
        roles(2, NOW + 3600),
        Arrival::Network,
        NOW,
    )
    .expect_err("not a trusted root");
    assert!(
        err.message.contains("trusted_root.json does not parse"),
        "{}",
        err.message
    );
    assert!(handle.current(NOW).is_ok());
    assert_eq!(handle.describe(NOW)["in_force"]["tuf"]["timestamp"]["version"], 1);
    assert!(rendered(&metrics).contains("portcullis_trust_refreshes_total{outcome=\"invalid_root\"} 1"));
}

#[test]
fn a_file_root_never_expires_and_describes_its_logs_and_authorities() {
    let metrics = Arc::new(Metrics::new());
    let root = Arc::new(portcullis_verify::TrustedRoot::from_json(&production()).expect("root"));
    let handle = TrustHandle::from_file("/etc/portcullis/trusted_root.json".into(), root, metrics, NOW);
    assert!(handle.current(i64::MAX).is_ok());
    let described = handle.describe(NOW);
    assert_eq!(described["source"]["kind"], "file");
    assert_eq!(described["verifies"], true);
    assert_eq!(described["in_force"]["arrival"], "file");
    assert!(described["in_force"]["tuf"].is_null());
    let logs = described["in_force"]["transparency_logs"].as_array().expect("logs");
    assert!(
        logs.iter().any(|l| l["base_url"] == "https://rekor.sigstore.dev"),
        "{logs:?}"
    );
    assert!(!described["in_force"]["certificate_authorities"]
        .as_array()
        .expect("CAs")
        .is_empty());
}
