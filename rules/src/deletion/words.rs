//! Deletion decisions in words: the stable names and codes of actions, modes and refusals,
//! the refusal messages a requester reads, and durations and counts as people write them.

use std::fmt;

use super::decide::Request;
use super::{DeleteAction, DeletionMode, DeletionRefusal, DAY, HOUR, MINUTE};
use crate::name::Protocol;
use crate::publishers::foreign;

impl DeleteAction {
    /// Stable lower-case name for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteAction::DeleteVersion => "delete_version",
            DeleteAction::DeleteFile => "delete_file",
            DeleteAction::DeleteProject => "delete_project",
            DeleteAction::Yank => "yank",
            DeleteAction::Unyank => "unyank",
        }
    }
}

impl fmt::Display for DeleteAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DeletionMode {
    /// Stable lower-case name, as written in rules files.
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionMode::Policy => "policy",
            DeletionMode::Allow => "allow",
            DeletionMode::YankOnly => "yank_only",
            DeletionMode::Never => "never",
        }
    }
}

impl fmt::Display for DeletionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DeletionRefusal {
    /// The stable code the gateway reports.
    pub fn code(&self) -> &'static str {
        match self {
            DeletionRefusal::Never => "deletion_never",
            DeletionRefusal::YankOnly => "deletion_yank_only",
            DeletionRefusal::OutsideWindow => "deletion_refused",
            DeletionRefusal::UnknownFacts => "deletion_unknown_facts",
        }
    }
}

impl fmt::Display for DeletionRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl Request<'_, '_> {
    /// `"<subject> is not allowed: <reason>; <alternative>"`, with the rule's message appended.
    pub(super) fn refusal(&self, reason: &str) -> String {
        let mut message = format!("{} is not allowed: {reason}; {}", self.subject(), self.alternative());
        if let Some(extra) = &self.rule.message {
            message.push_str(". ");
            message.push_str(extra);
        }
        message
    }

    /// What the request does, e.g. `unpublishing acme@1.0.0`.
    fn subject(&self) -> String {
        let facts = self.facts;
        let project = facts.project;
        let target = match (facts.version, self.protocol) {
            (Some(version), Some(Protocol::Npm)) => format!("{project}@{}", foreign(version)),
            (Some(version), _) => format!("{project} {}", foreign(version)),
            (None, _) => project.to_string(),
        };
        let npm = self.protocol == Some(Protocol::Npm);
        let mut subject = match facts.action {
            DeleteAction::DeleteVersion if npm => format!("unpublishing {target}"),
            DeleteAction::DeleteVersion if self.protocol == Some(Protocol::Pypi) => {
                format!("deleting release {target}")
            }
            DeleteAction::DeleteVersion => format!("deleting version {target}"),
            DeleteAction::DeleteFile => format!("deleting a file of {target}"),
            DeleteAction::DeleteProject if npm => format!("unpublishing {target}"),
            DeleteAction::DeleteProject => format!("deleting {} {target}", self.project_word()),
            DeleteAction::Yank => format!("yanking {target}"),
            DeleteAction::Unyank => format!("un-yanking {target}"),
        };
        if self.removes_project && facts.action != DeleteAction::DeleteProject {
            subject.push_str(&format!(
                " (the last remaining version, so the whole {})",
                self.project_word()
            ));
        }
        subject
    }

    /// `package` on npm, `project` elsewhere.
    pub(super) fn project_word(&self) -> &'static str {
        if self.protocol == Some(Protocol::Npm) {
            "package"
        } else {
            "project"
        }
    }

    /// What the requester can do instead.
    fn alternative(&self) -> &'static str {
        let action = self.facts.action;
        let never = self.rule.settings.mode == DeletionMode::Never;
        match self.protocol {
            _ if !action.is_deletion() => "ask an administrator",
            Some(Protocol::Npm) => "deprecate it instead (npm deprecate), or ask an administrator",
            _ if never => "ask an administrator",
            Some(Protocol::Pypi) if action == DeleteAction::DeleteProject || self.removes_project => {
                "yank its releases instead, or ask an administrator"
            }
            Some(Protocol::Pypi) => "yank it instead, or ask an administrator",
            None => "deprecate or yank it instead, or ask an administrator",
        }
    }
}

/// `"a"`, `"a and b"`, `"a, b and c"`.
pub(super) fn join_and<S: AsRef<str>>(items: &[S]) -> String {
    match items {
        [] => String::new(),
        [only] => only.as_ref().to_owned(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(AsRef::as_ref).collect();
            format!("{} and {}", init.join(", "), last.as_ref())
        }
    }
}

pub(super) fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A configured duration in words, exactly: days from a week on when whole, else hours,
/// minutes or seconds.
pub(super) fn human_exact(secs: u64) -> String {
    if secs >= 7 * DAY && secs.is_multiple_of(DAY) {
        plural(secs / DAY, "day", "days")
    } else if secs >= HOUR && secs.is_multiple_of(HOUR) {
        plural(secs / HOUR, "hour", "hours")
    } else if secs >= MINUTE && secs.is_multiple_of(MINUTE) {
        plural(secs / MINUTE, "minute", "minutes")
    } else {
        plural(secs, "second", "seconds")
    }
}

/// An age in words, rounded down to a readable unit.
pub(super) fn human_age(secs: u64) -> String {
    if secs >= 7 * DAY {
        plural(secs / DAY, "day", "days")
    } else if secs >= 2 * HOUR {
        plural(secs / HOUR, "hour", "hours")
    } else if secs >= 2 * MINUTE {
        plural(secs / MINUTE, "minute", "minutes")
    } else {
        plural(secs, "second", "seconds")
    }
}

/// A duration in the rules' own notation, e.g. `80h`, `1h30m`, `45s`.
pub(super) fn short(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (value, unit) in [(secs / HOUR, "h"), (secs % HOUR / MINUTE, "m"), (secs % MINUTE, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}
