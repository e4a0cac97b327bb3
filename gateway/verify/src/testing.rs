//! Certificates shaped like Fulcio's, for tests (here and, with the `testing` feature, in the
//! gateway): a code-signing certificate with the SANs and `1.3.6.1.4.1.57264.1.*` extensions
//! a test names, self-signed or issued by a test CA.

use crate::cert::{self, CertificateIdentity};

/// The arc of Fulcio's extensions under `1.3.6.1.4.1.57264.1`.
const FULCIO_ARCS: [u64; 8] = [1, 3, 6, 1, 4, 1, 57264, 1];

/// A Fulcio-like certificate to build.
#[derive(Debug, Clone, Default)]
pub struct FulcioCert {
    sans: Vec<String>,
    extensions: Vec<(u64, Vec<u8>)>,
}

impl FulcioCert {
    /// A certificate with no SAN and no Fulcio extension yet.
    pub fn new() -> Self {
        FulcioCert::default()
    }

    /// Adds a URI SAN.
    pub fn uri(mut self, san: &str) -> Self {
        self.sans.push(san.to_owned());
        self
    }

    /// Adds Fulcio extension `1.3.6.1.4.1.57264.1.{arc}` with `value`, encoded as Fulcio does:
    /// raw bytes for the deprecated arcs 1 to 6, a DER UTF8String from 8 on.
    pub fn ext(mut self, arc: u64, value: &str) -> Self {
        let content = if arc < 8 {
            value.as_bytes().to_vec()
        } else {
            crate::der_walk::encode(0x0c, value.as_bytes())
        };
        self.extensions.push((arc, content));
        self
    }

    fn params(&self) -> Result<rcgen::CertificateParams, rcgen::Error> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        for san in &self.sans {
            params
                .subject_alt_names
                .push(rcgen::SanType::URI(rcgen::string::Ia5String::try_from(san.as_str())?));
        }
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::CodeSigning];
        for (arc, content) in &self.extensions {
            let mut oid = FULCIO_ARCS.to_vec();
            oid.push(*arc);
            params
                .custom_extensions
                .push(rcgen::CustomExtension::from_oid_content(&oid, content.clone()));
        }
        Ok(params)
    }

    /// The DER of the certificate, self-signed with a new P-256 key.
    pub fn der(&self) -> Result<Vec<u8>, rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        Ok(self.params()?.self_signed(&key)?.der().to_vec())
    }

    /// The DER of the certificate, issued by `ca` with a new P-256 key.
    pub fn issued_by(&self, ca: &TestCa) -> Result<Vec<u8>, rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        Ok(self.params()?.signed_by(&key, &ca.issuer)?.der().to_vec())
    }

    /// The identity the verifier reads from the certificate.
    pub fn identity(&self) -> crate::error::Result<CertificateIdentity> {
        let der = self
            .der()
            .map_err(|e| crate::VerifyError::new(crate::Step::CertificateChain, e.to_string()))?;
        cert::identity(&cert::parse(&der)?)
    }
}

/// A test certificate authority (P-256, self-signed).
pub struct TestCa {
    /// The CA certificate's DER.
    pub der: Vec<u8>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Result<Self, rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let der = params.self_signed(&key)?.der().to_vec();
        Ok(TestCa {
            der,
            issuer: rcgen::Issuer::new(params, key),
        })
    }

    /// The CA's signature (DER ECDSA P-256 with SHA-256) over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        use rcgen::SigningKey;
        self.issuer.key().sign(message)
    }
}
