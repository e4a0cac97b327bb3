//! The PyPI legacy upload API: `POST` multipart forms whose `:action` says what they do; and,
//! on registries configured for it, devpi-server's `DELETE`s ([`devpi`]).
//!
//! The form is read as it streams ([`form::FormInspector`], on the strict reader of
//! [`crate::protocol::multipart`]), so the gateway learns the project, version and file digests
//! without holding the body.

pub mod devpi;
mod digests;
mod filename;
mod form;

use http::Method;
use portcullis_rules::WriteAction;

pub use self::devpi::DeletionApi;
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

/// Classifies a request on a PyPI registry whose backend serves `deletion_api`: reads pass,
/// every `POST` is a form read as it streams, a devpi `DELETE` is a change of the project its
/// path names (on registries configured for devpi), and any other method is refused.
pub fn classify(method: &Method, path: &str, deletion_api: DeletionApi) -> Result<RequestClass, Refusal> {
    match *method {
        Method::GET | Method::HEAD | Method::OPTIONS => Ok(RequestClass::Read),
        Method::POST => Ok(RequestClass::PypiForm),
        Method::DELETE if deletion_api == DeletionApi::Devpi => Ok(RequestClass::Write {
            action: WriteAction::Change,
            project: devpi::delete_target(path)?.project,
        }),
        _ => Err(Refusal::UnclassifiedWrite(format!(
            "{method} is not a write this gateway knows for PyPI registries (uploads are multipart POSTs)"
        ))),
    }
}
