//! What a decision may look at: facts the gateway established about one request.

use crate::name::ProjectName;

/// The kind of write a request performs on a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteAction {
    /// A new file or version: PyPI `file_upload`, npm publish.
    Upload,
    /// Any other change to a project: metadata, deprecation, removal.
    Change,
}

impl WriteAction {
    /// Stable lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteAction::Upload => "upload",
            WriteAction::Change => "change",
        }
    }
}

/// Facts about one write request.
#[derive(Debug, Clone, Copy)]
pub struct WriteFacts<'a> {
    /// The registry's configured name.
    pub registry: &'a str,
    /// What the request does.
    pub action: WriteAction,
    /// The project it targets, normalised.
    pub project: &'a ProjectName,
    /// Body bytes seen so far (the whole body once the request is complete).
    pub body_bytes: u64,
}
