//! Throwaway PKI for tests: a CA and server certificates it signs, as PEM files.

use std::path::{Path, PathBuf};

/// A test CA's files and a server certificate signed by it.
pub struct TestPki {
    /// The CA certificate (PEM), for clients to trust.
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

/// Makes a CA named `name` and a server certificate for `hosts` (DNS names or IP addresses),
/// written to `dir/<name>-{ca,cert,key}.pem`.
pub fn test_pki(dir: &Path, name: &str, hosts: &[&str]) -> TestPki {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key).expect("ca cert");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let mut params =
        rcgen::CertificateParams::new(hosts.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>()).expect("params");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test server"));
    let cert = params.signed_by(&key, &issuer).expect("server cert");
    let pki = TestPki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::create_dir_all(dir).expect("pki dir");
    std::fs::write(&pki.ca, ca.pem()).expect("write ca");
    std::fs::write(&pki.cert, cert.pem()).expect("write cert");
    std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
    pki
}
