//! Error codes and the refusals they become.

use std::collections::HashSet;

use crate::error::Refusal;

use super::*;

#[test]
fn codes_are_distinct_bounded_snake_case() {
    let s = String::new;
    let errors = [
        PublishError::Empty,
        PublishError::Syntax { offset: 0, reason: "" },
        PublishError::Truncated,
        PublishError::NotAnObject,
        PublishError::InvalidUnicode { path: s(), reason: "" },
        PublishError::DuplicateKey { path: s(), key: s() },
        PublishError::TooDeep { path: s(), limit: 0 },
        PublishError::TooManyKeys { path: s(), limit: 0 },
        PublishError::StringTooLong { path: s(), limit: 0 },
        PublishError::MetadataTooLarge { limit: 0 },
        PublishError::ProvenanceTooLarge { limit: 0 },
        PublishError::WrongType {
            path: s(),
            expected: "",
        },
        PublishError::NameMissing { expected: s() },
        PublishError::NameMismatch {
            found: s(),
            expected: s(),
        },
        PublishError::IdMismatch {
            found: s(),
            expected: s(),
        },
        PublishError::UnexpectedAttachment { name: s() },
        PublishError::MultipleTarballs,
        PublishError::MultipleProvenance,
        PublishError::AttachmentName {
            found: s(),
            expected: s(),
        },
        PublishError::ProvenanceWithoutTarball { name: s() },
        PublishError::AttachmentDataMissing { name: s() },
        PublishError::VersionCount { found: 0 },
        PublishError::VersionField {
            version: s(),
            field: "name",
            found: s(),
            expected: s(),
        },
        PublishError::BadBase64 { reason: s() },
        PublishError::BadLength { name: s() },
        PublishError::LengthMismatch { declared: 0, actual: 0 },
        PublishError::IntegrityMissing { version: s() },
        PublishError::IntegrityMismatch {
            version: s(),
            actual: s(),
        },
        PublishError::ShasumMismatch {
            version: s(),
            found: s(),
            actual: s(),
        },
    ];
    let codes: HashSet<&str> = errors.iter().map(PublishError::code).collect();
    assert_eq!(codes.len(), errors.len(), "codes are distinct");
    for code in codes {
        assert!(
            code.len() <= 40
                && code.starts_with(|c: char| c.is_ascii_lowercase())
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
            "{code}"
        );
    }
    let refusal: Refusal = PublishError::IntegrityMismatch {
        version: s(),
        actual: s(),
    }
    .into();
    assert_eq!(refusal.code(), "digest_mismatch");
    let refusal: Refusal = PublishError::MultipleTarballs.into();
    assert_eq!(refusal.code(), "malformed_upload");
}
