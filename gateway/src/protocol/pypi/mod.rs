//! The PyPI legacy upload API: `POST` multipart forms whose `:action` says what they do.
//!
//! The form is read as it streams ([`form::FormInspector`], on the strict reader of
//! [`crate::protocol::multipart`]), so the gateway learns the project, version and file digests
//! without holding the body.

mod digests;
mod filename;
mod form;

use http::Method;

pub use self::digests::{ClaimedDigests, FileDigests};
pub use self::filename::{check_filename, normalize_version, split_filename};
pub use self::form::{FormAction, FormInspector, UploadFacts, MAX_FIELD_BYTES};
use super::RequestClass;
use crate::error::Refusal;

/// The normalised project name a PEP 508 requirement names (`requests[socks] (>=2.0); extra ==
/// "x"` names `requests`); `None` when it does not start with a valid name.
pub fn requirement_name(requirement: &str) -> Option<String> {
    let name: String = requirement
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    let name = name.trim_end_matches(['-', '_', '.']);
    (!name.is_empty()).then(|| portcullis_rules::name::normalize_pypi(name))
}

/// Classifies a request on a PyPI registry.
pub fn classify(method: &Method, _path: &str) -> Result<RequestClass, Refusal> {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Ok(RequestClass::Read),
        Method::POST => Ok(RequestClass::PypiForm),
        _ => Err(Refusal::UnclassifiedWrite(format!(
            "{method} is not a write this gateway knows for PyPI registries (uploads are multipart POSTs)"
        ))),
    }
}
