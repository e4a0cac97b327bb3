//! Throwaway PKI for tests: a CA and a server certificate it signs, in memory or as PEM files.

use std::path::{Path, PathBuf};

/// A test CA and one server certificate it signed.
pub struct TestCerts {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
    /// The server certificate, PEM.
    pub cert_pem: String,
    /// The server certificate, DER.
    pub cert_der: Vec<u8>,
    /// The server's PKCS#8 private key, PEM.
    pub key_pem: String,
    /// The server's PKCS#8 private key, DER.
    pub key_der: Vec<u8>,
}

/// Makes a CA named `name` and a server certificate for `hosts` (DNS names or IP addresses).
pub fn test_certs(name: &str, hosts: &[&str]) -> TestCerts {
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
    TestCerts {
        ca_pem: ca.pem(),
        ca_der: ca.der().to_vec(),
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pem: key.serialize_pem(),
        key_der: key.serialize_der(),
    }
}

/// The PEM files of a test CA and a server certificate.
pub struct TestPki {
    /// The CA certificate (PEM), for clients to trust.
    pub ca: PathBuf,
    /// The server certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM).
    pub key: PathBuf,
}

/// [`test_certs`] written to `dir/<name>-{ca,cert,key}.pem`.
pub fn test_pki(dir: &Path, name: &str, hosts: &[&str]) -> TestPki {
    let certs = test_certs(name, hosts);
    let pki = TestPki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::create_dir_all(dir).expect("pki dir");
    std::fs::write(&pki.ca, &certs.ca_pem).expect("write ca");
    std::fs::write(&pki.cert, &certs.cert_pem).expect("write cert");
    std::fs::write(&pki.key, &certs.key_pem).expect("write key");
    pki
}
