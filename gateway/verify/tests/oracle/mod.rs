//! The Sigstore project's own Rust verifier (`sigstore-verify`) run beside this crate's on the
//! same inputs: the real cases (the conformance suite's `bundle-verify`, the real PEP 740 and
//! npm provenance bundles) and mutations of them. Used by the differential test and by the
//! comparison table in docs/provenance.md.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Who must have signed.
#[derive(Debug, Clone)]
pub enum Signer {
    /// A Fulcio certificate for this SAN from this OIDC issuer.
    Identity { san: String, issuer: String },
    /// A managed key (PEM SPKI).
    Key(String),
}

/// One verification input and whether it must verify.
#[derive(Debug, Clone)]
pub struct Case {
    /// Suite and case name, e.g. `conformance/happy-path-v0.3`.
    pub name: String,
    /// The bundle's JSON.
    pub bundle: Vec<u8>,
    /// The artifact's bytes.
    pub artifact: Vec<u8>,
    /// The trusted root's JSON.
    pub root: Vec<u8>,
    /// The signer.
    pub signer: Signer,
    /// Whether a correct verifier accepts it.
    pub must_verify: bool,
}

/// `tests/fixtures` in the repository (this file is also built into the fuzz crate, one
/// level up from here, so both depths are tried).
pub fn fixtures() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    ["../../tests/fixtures", "../tests/fixtures"]
        .iter()
        .map(|rel| manifest.join(rel))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| manifest.join("../../tests/fixtures"))
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|s| s.trim().to_owned())
}

/// The conformance suite's signing identity (its default `identity`).
pub const BEACON: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
/// GitHub Actions' OIDC issuer (the conformance suite's default `issuer`).
pub const GITHUB: &str = "https://token.actions.githubusercontent.com";

fn load(suite: &str, dir: &Path, default_artifact: Option<&Path>) -> Case {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let signer = match trimmed(&dir.join("key.pub")) {
        Some(pem) => Signer::Key(pem),
        None => Signer::Identity {
            san: trimmed(&dir.join("identity")).unwrap_or_else(|| BEACON.to_owned()),
            issuer: trimmed(&dir.join("issuer")).unwrap_or_else(|| GITHUB.to_owned()),
        },
    };
    let root = if dir.join("trusted_root.json").exists() {
        read(&dir.join("trusted_root.json"))
    } else {
        read(&fixtures().join("trusted-roots/public-good-production.trusted_root.json"))
    };
    let artifact = match (dir.join("artifact"), default_artifact) {
        (own, _) if own.exists() => read(&own),
        (_, Some(shared)) => read(shared),
        (_, None) => Vec::new(),
    };
    Case {
        must_verify: !name.ends_with("_fail"),
        name: format!("{suite}/{name}"),
        bundle: read(&dir.join("bundle.sigstore.json")),
        artifact,
        root,
        signer,
    }
}

fn suite(suite: &str, dir: &Path, default_artifact: Option<&Path>) -> Vec<Case> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("bundle.sigstore.json").exists())
        .collect();
    dirs.sort();
    dirs.iter().map(|d| load(suite, d, default_artifact)).collect()
}

/// The conformance suite's `bundle-verify` cases.
pub fn conformance() -> Vec<Case> {
    let dir = fixtures().join("sigstore-conformance/bundle-verify");
    suite("conformance", &dir, Some(&dir.join("a.txt")))
}

/// The real PEP 740 and npm provenance bundles (each must verify).
pub fn provenance() -> Vec<Case> {
    let mut cases = suite("pep740", &fixtures().join("pep740"), None);
    cases.extend(suite("npm", &fixtures().join("npm-provenance"), None));
    cases
}

/// Seconds since the epoch.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// This crate's verdict.
pub fn ours(case: &Case) -> Result<(), String> {
    use portcullis_verify::{keys, verify, Artifact, Bundle, Policy, TrustedRoot};
    let root = TrustedRoot::from_json(&case.root).map_err(|e| e.to_string())?;
    let bundle = Bundle::from_json(&case.bundle).map_err(|e| e.to_string())?;
    let policy = match &case.signer {
        Signer::Identity { san, issuer } => Policy::Identity {
            san: san.clone(),
            issuer: issuer.clone(),
        },
        Signer::Key(pem) => {
            let (_, spki_der) = keys::pem_decode(pem).ok_or("the key is not PEM")?;
            Policy::Key { spki_der }
        }
    };
    verify(
        &bundle,
        &Artifact::from_bytes(case.artifact.clone()),
        &root,
        &policy,
        now(),
    )
    .map(|_| ())
    .map_err(|e| e.to_string())
}

/// `sigstore-verify`'s verdict.
pub fn theirs(case: &Case) -> Result<(), String> {
    use sigstore_verify::trust_root::TrustedRoot;
    use sigstore_verify::types::{Bundle, DerPublicKey};
    use sigstore_verify::{verify, PublicKeyVerificationPolicy, VerificationPolicy};
    let root_text = std::str::from_utf8(&case.root).map_err(|e| e.to_string())?;
    let root = TrustedRoot::from_json(root_text).map_err(|e| format!("trusted root: {e}"))?;
    let bundle_text = std::str::from_utf8(&case.bundle).map_err(|e| e.to_string())?;
    let bundle = Bundle::from_json(bundle_text).map_err(|e| format!("bundle: {e}"))?;
    let outcome = match &case.signer {
        Signer::Identity { san, issuer } => verify(
            case.artifact.as_slice(),
            &bundle,
            &VerificationPolicy::new(san.as_str(), issuer.as_str()),
            &root,
        ),
        Signer::Key(pem) => {
            let key = DerPublicKey::from_pem(pem).map_err(|e| format!("key: {e}"))?;
            verify(
                case.artifact.as_slice(),
                &bundle,
                &PublicKeyVerificationPolicy::new(key),
                &root,
            )
        }
    };
    outcome.map(|_| ()).map_err(|e| e.to_string())
}

/// Why `sigstore-verify` accepts a mutation that this crate refuses, for each kind of
/// mutation where that is expected: (path with every number written `N`, mutation, text this
/// crate's refusal contains (its step, `tlog:`, or words of its reason), why). In each, `sigstore-verify` ignores a field the bundle carries
/// twice or that it does not need, and this crate refuses a bundle whose fields disagree (one
/// reading). docs/provenance.md ("Measured against sigstore-verify") explains each.
pub const EXPLAINED: [(&str, &str, &str, &str); 16] = [
    (
        "/mediaType",
        "removed",
        "bundle:",
        "no media type: sigstore-verify guesses the bundle version, this crate refuses an unknown format",
    ),
    (
        "/verificationMaterial/tlogEntries/N/inclusionProof/logIndex",
        "removed",
        "bundle:",
        "the proof's own index missing: sigstore-verify uses the entry's",
    ),
    (
        "/verificationMaterial/tlogEntries/N/inclusionProof/logIndex",
        "char",
        "inclusion-proof:",
        "the proof's index changed: sigstore-verify uses the entry's index",
    ),
    (
        "/verificationMaterial/tlogEntries/N/inclusionProof/treeSize",
        "char",
        "inclusion-proof:",
        "the proof's tree size changed: sigstore-verify uses the checkpoint's",
    ),
    (
        "/verificationMaterial/tlogEntries/N/inclusionProof/rootHash",
        "char",
        "inclusion-proof:",
        "the proof's root hash changed: sigstore-verify uses the checkpoint's",
    ),
    (
        "/verificationMaterial/tlogEntries/N/logId/keyId",
        "char",
        "tlog:",
        "the entry names another log: sigstore-verify finds the log by the checkpoint's key hint",
    ),
    (
        "/verificationMaterial/tlogEntries/N/inclusionProof/checkpoint/envelope",
        "char",
        "inclusion-proof:",
        "a checkpoint signature line under another key name: sigstore-verify matches by key hint only",
    ),
    (
        "/verificationMaterial/x509CertificateChain/certificates/N/rawBytes",
        "char",
        "certificate-chain:",
        "a changed intermediate in a v0.1 chain: sigstore-verify ignores the bundle's intermediates",
    ),
    (
        "/verificationMaterial/tlogEntries/N/inclusionPromise",
        "removed",
        "timestamp:",
        "a managed-key bundle left with no verified time: sigstore-verify needs none for a key",
    ),
    (
        "/verificationMaterial/tlogEntries/N/logIndex",
        "removed",
        "bundle:",
        "the entry's index missing where no signed entry timestamp covers it: sigstore-verify does not need it",
    ),
    (
        "/verificationMaterial/timestampVerificationData/rfc3161Timestamps/N/signedTimestamp",
        "char",
        "SignerInfo version",
        "a SignerInfo version that does not fit its signer identifier (RFC 5652 5.3): sigstore-verify does not read it",
    ),
    (
        "/verificationMaterial/timestampVerificationData/rfc3161Timestamps/N/signedTimestamp",
        "char",
        "unsupported signature algorithm",
        "an unknown signature algorithm declared in the SignerInfo (unsigned): sigstore-verify takes the algorithm from the TSA's key",
    ),
    (
        "/verificationMaterial/timestampVerificationData/rfc3161Timestamps/N/signedTimestamp",
        "char",
        "revocation lists",
        "revocation lists in the token (or its certificate set retagged as them): sigstore-verify ignores them, this crate refuses fields it does not read",
    ),
    (
        "/verificationMaterial/timestampVerificationData/rfc3161Timestamps/N/signedTimestamp",
        "char",
        "certificate format other than X.509",
        "an embedded certificate of another format: sigstore-verify skips it, this crate refuses it",
    ),
    (
        "/verificationMaterial/timestampVerificationData/rfc3161Timestamps/N/signedTimestamp",
        "char",
        "is not well-formed DER",
        "an embedded certificate that does not decode: sigstore-verify does not need it, this crate refuses it",
    ),
    (
        "/verificationMaterial/timestampVerificationData/rfc3161Timestamps/N/signedTimestamp",
        "char",
        "SignedData version",
        "a SignedData version other than 3 (RFC 5652 5.1): sigstore-verify does not read it",
    ),
];

/// Refusals of this crate that `sigstore-verify` does not share, for the targeted mutations of
/// `tests/mutations.rs` (whole-bundle changes rather than one field): (text this crate's
/// refusal contains, why). docs/provenance.md lists them with [`EXPLAINED`].
pub const EXPLAINED_REFUSALS: [(&str, &str); 3] = [
    (
        "a root certificate that is not in the trusted root",
        "a bundle that carries its own root certificate: sigstore-verify ignores the bundle's chain and builds it from the trusted root",
    ),
    (
        "too many transparency log entries",
        "more than 32 log entries: sigstore-go's limit, which sigstore-verify does not have",
    ),
    (
        "too many signed timestamps",
        "more than 32 RFC 3161 timestamps: sigstore-go's limit, which sigstore-verify does not have",
    ),
];

/// The explanation for a disagreement where this crate refused (`ours`, its error text) and
/// `sigstore-verify` accepted the mutation `name` (`<case><path> <mutation>`), if it is one
/// of [`EXPLAINED`]; `None` for any other disagreement.
pub fn explained(name: &str, ours: &Result<(), String>, theirs: &Result<(), String>) -> Option<&'static str> {
    let (Err(ours), Ok(())) = (ours, theirs) else {
        return None;
    };
    let (location, mutation) = name.rsplit_once(' ')?;
    let path = location
        .find("/verificationMaterial")
        .or_else(|| location.find("/mediaType"))
        .map(|i| &location[i..])?;
    let shape = path
        .split('/')
        .map(|segment| {
            if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
                "N"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    EXPLAINED
        .iter()
        .find(|(p, m, refusal, _)| *p == shape && *m == mutation && ours.contains(refusal))
        .map(|(_, _, _, why)| *why)
}

/// The places a mutation can hit in a bundle: every object member (removed) and every
/// string and number leaf (changed), as JSON pointers.
pub fn places(bundle: &serde_json::Value) -> Vec<(String, Leaf)> {
    let mut out = Vec::new();
    leaves(bundle, &mut String::new(), &mut out);
    out
}

/// Applies one mutation at `path` (a place of kind `leaf`): a string gets the character at
/// `at` (modulo its length) changed to the next in its alphabet, a number moves by one, a
/// member is removed. Returns the mutation's name (`char`, `+1`, `removed`), or `None` when
/// the place is gone (an earlier mutation removed it) or nothing changed.
pub fn apply(bundle: &mut serde_json::Value, path: &str, leaf: &Leaf, at: usize) -> Option<&'static str> {
    match leaf {
        Leaf::Str => {
            let target = bundle.pointer_mut(path)?;
            let mut chars: Vec<char> = target.as_str()?.chars().collect();
            if chars.is_empty() {
                return None;
            }
            let i = at % chars.len();
            chars[i] = next_char(chars[i]);
            *target = serde_json::Value::String(chars.into_iter().collect());
            Some("char")
        }
        Leaf::Num => {
            let target = bundle.pointer_mut(path)?;
            let n = target.as_i64()?;
            *target = serde_json::Value::from(n.wrapping_add(1));
            Some("+1")
        }
        Leaf::Member => {
            let (parent, key) = path.rsplit_once('/')?;
            let object = bundle.pointer_mut(parent)?.as_object_mut()?;
            object.remove(&key.replace("~1", "/").replace("~0", "~"))?;
            Some("removed")
        }
    }
}

/// `case` with `bundle` as its bundle, named `name`, expected to be refused.
pub fn mutated(case: &Case, name: String, bundle: &serde_json::Value) -> Case {
    Case {
        name,
        bundle: serde_json::to_vec(bundle).unwrap_or_default(),
        must_verify: false,
        ..case.clone()
    }
}

/// Every single-point mutation of `case`'s bundle: each string leaf with its middle character
/// changed to the next in its alphabet, each number moved by one, each object member removed.
/// Named `<case><JSON pointer> <mutation>`.
pub fn mutations(case: &Case) -> Vec<(String, Case)> {
    let Ok(bundle) = serde_json::from_slice::<serde_json::Value>(&case.bundle) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (path, leaf) in places(&bundle) {
        let mut changed = bundle.clone();
        let middle = changed
            .pointer(&path)
            .and_then(|v| v.as_str())
            .map_or(0, |t| t.chars().count() / 2);
        let Some(what) = apply(&mut changed, &path, &leaf, middle) else {
            continue;
        };
        if changed == bundle {
            continue;
        }
        let name = format!("{}{path} {what}", case.name);
        out.push((name.clone(), mutated(case, name, &changed)));
    }
    out
}

/// What a place in a bundle is.
pub enum Leaf {
    /// A string.
    Str,
    /// A number.
    Num,
    /// An object member (as a whole).
    Member,
}

fn leaves(value: &serde_json::Value, path: &mut String, out: &mut Vec<(String, Leaf)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let len = path.len();
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                out.push((path.clone(), Leaf::Member));
                leaves(child, path, out);
                path.truncate(len);
            }
        }
        serde_json::Value::Array(list) => {
            for (i, child) in list.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                leaves(child, path, out);
                path.truncate(len);
            }
        }
        serde_json::Value::String(_) => out.push((path.clone(), Leaf::Str)),
        serde_json::Value::Number(_) => out.push((path.clone(), Leaf::Num)),
        _ => {}
    }
}

/// The next character in the same class (base64, hex, digits, letters), so that the mutated
/// text usually still decodes and the fault reaches the verification steps.
fn next_char(c: char) -> char {
    match c {
        'z' => 'a',
        'Z' => 'A',
        '9' => '0',
        'f' => '0',
        'a'..='y' | 'A'..='Y' | '0'..='8' => char::from(c as u8 + 1),
        '+' => '/',
        '/' => '+',
        _ => 'A',
    }
}
