//! Protocol adapters: turn a request on a registry into typed facts — is it a read, a write on
//! a project (and which), or something the gateway must refuse to guess about.

pub mod headers;
pub mod multipart;
pub mod npm;
pub mod npm_body;
pub mod path;
pub mod pypi;

use http::Method;
use portcullis_rules::{ProjectName, Protocol, WriteAction};

use crate::error::Refusal;

/// Whether two versions are the same release: exactly for npm, under PEP 440's light
/// normalisation for PyPI (`1.0` is `1.0.0`).
pub fn same_version(protocol: Protocol, a: &str, b: &str) -> bool {
    match protocol {
        Protocol::Npm => a == b,
        Protocol::Pypi => pypi::normalize_version(a) == pypi::normalize_version(b),
    }
}

/// What a request is, as far as the head (method and path) tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestClass {
    /// Downloads, index pages, metadata reads: passed through untouched.
    Read,
    /// A write whose project is known from the path (npm).
    Write {
        /// What the write does.
        action: WriteAction,
        /// The project it targets.
        project: ProjectName,
    },
    /// A PyPI form post: the action and project are in the body, read as it streams.
    PypiForm,
    /// Writes that touch no project (login, token and audit endpoints): passed through, logged.
    Account,
}

impl RequestClass {
    /// The method class used in metric labels.
    pub fn method_class(&self) -> &'static str {
        match self {
            RequestClass::Read => "read",
            RequestClass::Write { .. } | RequestClass::PypiForm => "write",
            RequestClass::Account => "other",
        }
    }

    /// Whether the body goes through the decision path (hashing, hold-back, rules).
    pub fn is_decided_write(&self) -> bool {
        matches!(self, RequestClass::Write { .. } | RequestClass::PypiForm)
    }
}

/// Classifies a request by protocol, method and the path below the registry's prefix; on PyPI
/// registries `pypi_deletion_api` says which deletion requests the backend serves.
pub fn classify(
    protocol: Protocol,
    pypi_deletion_api: pypi::DeletionApi,
    method: &Method,
    path: &str,
) -> Result<RequestClass, Refusal> {
    match protocol {
        Protocol::Pypi => pypi::classify(method, path, pypi_deletion_api),
        Protocol::Npm => npm::classify(method, path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pypi_versions_compare_normalised_npm_exactly() {
        assert!(same_version(Protocol::Pypi, "1.0", "1.0.0"));
        assert!(same_version(Protocol::Pypi, "V1.0", "1.0"));
        assert!(!same_version(Protocol::Pypi, "1.0", "1.0.1"));
        assert!(!same_version(Protocol::Npm, "1.0", "1.0.0"));
        assert!(same_version(Protocol::Npm, "1.0.0", "1.0.0"));
    }
}
