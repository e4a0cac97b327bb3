//! TLS helpers (rustls only): reading PEM material for upstream trust.

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

/// Why a PEM file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file is unreadable or not PEM.
    #[error("{0}")]
    Parse(String),
    /// The file holds no certificate.
    #[error("no certificate in the file")]
    Empty,
}

/// Reads every certificate in a PEM file, as DER.
pub fn read_pem_certificates(path: &Path) -> Result<Vec<Vec<u8>>, PemError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| PemError::Parse(e.to_string()))?
        .map(|c| c.map(|c| c.to_vec()).map_err(|e| PemError::Parse(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(PemError::Empty);
    }
    Ok(certs)
}
