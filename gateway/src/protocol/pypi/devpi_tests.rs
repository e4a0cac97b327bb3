use http::Method;

use super::*;
use crate::protocol::pypi::classify;
use crate::protocol::RequestClass;

fn target(path: &str) -> (String, String, Option<String>) {
    let t = delete_target(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    (t.index, t.project.as_str().to_owned(), t.version)
}

fn code(path: &str) -> &'static str {
    match delete_target(path) {
        Ok(t) => panic!("{path} accepted as {t:?}"),
        Err(e) => e.code(),
    }
}

#[test]
fn releases_and_projects_are_read_as_devpi_reads_them() {
    assert_eq!(
        target("/alice/dev/demo-pkg/1.0"),
        ("/alice/dev".into(), "demo-pkg".into(), Some("1.0".into()))
    );
    assert_eq!(
        target("/alice/dev/demo-pkg"),
        ("/alice/dev".into(), "demo-pkg".into(), None)
    );
    // devpi normalises the project segment; so does the gateway, to the same name.
    assert_eq!(target("/alice/dev/Demo_Pkg/1.0").1, "demo-pkg");
    assert_eq!(target("/alice/dev/demo..PKG/1.0").1, "demo-pkg");
    // devpi strips one trailing '/' from the segment it matched.
    assert_eq!(
        target("/alice/dev/demo-pkg/1.0/"),
        ("/alice/dev".into(), "demo-pkg".into(), Some("1.0".into()))
    );
    assert_eq!(target("/alice/dev/demo-pkg/").2, None);
    // Versions are decoded as devpi decodes them, and compared exactly by devpi.
    assert_eq!(
        target("/alice/dev/demo-pkg/1.0%2Blocal").2.as_deref(),
        Some("1.0+local")
    );
    assert_eq!(
        target("/alice/dev/demo-pkg/1!2.0.post1").2.as_deref(),
        Some("1!2.0.post1")
    );
    assert_eq!(target("/root/my_index.v2/x/0").0, "/root/my_index.v2");
}

#[test]
fn names_devpi_would_read_as_another_are_refused() {
    // `demo!pkg` and `demo pkg` are `demo-pkg` to devpi: never decided as anything.
    for path in [
        "/alice/dev/demo%21pkg/1.0",
        "/alice/dev/demo%20pkg/1.0",
        "/alice/dev/demo%20pkg",
        "/alice/dev/demo-pkg-/1.0",
        "/alice/dev/-demo-pkg",
        "/alice/dev/@demo%2fpkg/1.0",
        "/alice/dev/d%C3%A9mo/1.0",
        "/alice/dev/%ff/1.0",
    ] {
        assert_eq!(code(path), "bad_path", "{path}");
    }
    for path in [
        "/alice/dev/demo-pkg/%2B1.0",
        "/alice/dev/demo-pkg/1.0%20",
        "/alice/dev/demo-pkg/.1",
        "/alice/dev/demo-pkg/1.0%3F",
        "/alice/dev/demo-pkg/+f",
    ] {
        assert_eq!(code(path), "bad_path", "{path}");
    }
    let long = format!("/alice/dev/demo-pkg/{}", "1".repeat(MAX_VERSION_BYTES + 1));
    assert_eq!(code(&long), "bad_path");
}

#[test]
fn other_deletes_are_not_guessed() {
    for path in [
        "/",
        "",
        "/alice",
        "/alice/",
        "/alice/dev",
        "/alice/dev/",
        "/alice/dev/+f/8e1/ad555bac2f312/demo_pkg-1.0.tar.gz",
        "/alice/dev/+e/x",
        "/alice/dev/+simple/demo-pkg",
        "/alice/dev/%2Bsimple/demo-pkg",
        "/alice/dev/+api",
        "/alice/dev/demo-pkg/1.0/demo_pkg-1.0.tar.gz",
        "/alice/dev/demo-pkg/1.0//",
        "/alice//demo-pkg/1.0",
        "/+api/dev/demo-pkg/1.0",
        "/alice/%40dev/demo-pkg/1.0",
        "/alice/d+v/demo-pkg/1.0",
        "alice/dev/demo-pkg/1.0",
    ] {
        assert_eq!(code(path), "unclassified_write", "{path}");
    }
}

#[test]
fn deletes_are_writes_only_where_devpi_is_configured() {
    assert_eq!(
        classify(&Method::DELETE, "/alice/dev/Demo.Pkg/1.0", DeletionApi::Devpi),
        Ok(RequestClass::Write {
            action: portcullis_rules::WriteAction::Change,
            project: ProjectName::parse(Protocol::Pypi, "demo-pkg").expect("name"),
        })
    );
    let refused = classify(&Method::DELETE, "/alice/dev/demo-pkg/1.0", DeletionApi::RemovePkg);
    assert_eq!(refused.map_err(|e| e.code()), Err("unclassified_write"));
    for method in [Method::PUT, Method::PATCH, Method::from_bytes(b"PUSH").expect("method")] {
        for api in [DeletionApi::RemovePkg, DeletionApi::Devpi] {
            let r = classify(&method, "/alice/dev/demo-pkg/1.0", api);
            assert_eq!(r.map_err(|e| e.code()), Err("unclassified_write"), "{method} {api:?}");
        }
    }
    // Uploads stay path-agnostic: twine posts to devpi's `/<user>/<index>/`.
    assert_eq!(
        classify(&Method::POST, "/alice/dev/", DeletionApi::Devpi),
        Ok(RequestClass::PypiForm)
    );
    assert_eq!(
        classify(&Method::GET, "/alice/dev/+simple/demo-pkg/", DeletionApi::Devpi),
        Ok(RequestClass::Read)
    );
}
