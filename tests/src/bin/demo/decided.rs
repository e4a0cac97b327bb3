//! What the gateway itself recorded about a step: its decision log lines (one JSON object per
//! decided request) and, for deletions, its audit records. The summary table is built from
//! these, not from what the demo expected.

use serde_json::Value;

use crate::stack::Stack;

/// One decision log line, the fields the table shows.
pub struct Decided {
    /// `allow` or `refuse`.
    pub outcome: String,
    /// The HTTP status answered.
    pub status: u64,
    /// The refusal code (empty when allowed).
    pub code: String,
    /// The trusted publisher whose upload token was used (empty for other credentials).
    pub publisher: String,
    /// The trusted publisher the provenance's signer matched, if any.
    pub signer_publisher: Option<String>,
    /// The request id (`explain` finds it).
    pub request_id: String,
    /// The facts a deletion was judged on (`age 2s < window 72h`, ...); empty for uploads.
    pub facts: Vec<String>,
}

/// How many decision lines are logged now; [`since`] looks after this mark.
pub fn mark(stack: &Stack) -> usize {
    stack.gateway.decisions(0).len()
}

/// The last decision logged about `project` after `mark` (waiting up to 5 s for one).
pub fn since(stack: &Stack, mark: usize, project: &str) -> Option<Decided> {
    let lines = stack.gateway.decisions(mark + 1);
    lines
        .get(mark..)?
        .iter()
        .rev()
        .find(|line| line["project"] == project)
        .map(|line| Decided {
            outcome: text(line, "outcome"),
            status: line["status"].as_u64().unwrap_or_default(),
            code: text(line, "code"),
            publisher: text(line, "publisher"),
            signer_publisher: text(line, "detail")
                .split_whitespace()
                .find_map(|word| word.strip_prefix("signer_publisher="))
                .map(str::to_owned),
            request_id: text(line, "request_id"),
            facts: Vec::new(),
        })
}

impl Decided {
    /// `accepted 200`, `refused 400`, ...
    pub fn verdict(&self) -> String {
        let word = match self.outcome.as_str() {
            "allow" if !self.facts.is_empty() => "allowed",
            "allow" => "accepted",
            "refuse" => "refused",
            other => other,
        };
        format!("{word} {}", self.status)
    }

    /// The refusal code (with the facts that failed, for a deletion), else what let it pass:
    /// the facts of a deletion, who vouched for an upload.
    pub fn why(&self) -> String {
        if !self.facts.is_empty() {
            let failed: Vec<&str> = self
                .facts
                .iter()
                .map(String::as_str)
                .filter(|f| f.contains(" > "))
                .collect();
            return match (self.code.is_empty(), failed.is_empty()) {
                (true, _) => self.facts.join("; "),
                (false, true) => self.code.clone(),
                (false, false) => format!("{}: {}", self.code, failed.join("; ")),
            };
        }
        if !self.code.is_empty() {
            return self.code.clone();
        }
        let signer = self.signer_publisher.as_deref().filter(|s| !s.is_empty());
        match (signer, self.publisher.as_str()) {
            (Some(signer), "") => format!("provenance signed by publisher {signer}"),
            (Some(signer), token) if signer == token => format!("publisher {token}: its token, its provenance"),
            (Some(signer), token) => format!("token of publisher {token}, provenance by {signer}"),
            (None, "") => "the rules allow it".into(),
            (None, token) => format!("token of publisher {token}"),
        }
    }
}

/// The deletion rules' decision on `action` of `target`, from its newest audit record.
pub fn deletion(stack: &Stack, registry: &str, project: &str, action: &str, target: &str) -> Option<Decided> {
    stack
        .gateway
        .audit(registry, project, 1)
        .into_iter()
        .find(|r| r["action"] == action && r["target"] == target)
        .map(|r| Decided {
            outcome: text(&r, "outcome"),
            status: r["status"].as_u64().unwrap_or_default(),
            code: text(&r, "code"),
            publisher: String::new(),
            signer_publisher: None,
            request_id: text(&r, "request_id"),
            facts: r["facts"]
                .as_array()
                .map(|f| f.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        })
}

/// Whom the gateway's last exchange minted a token for (its log line), e.g.
/// `publisher pypi/tob-release, projects pypi-attestations`.
pub fn last_exchange(stack: &Stack) -> String {
    stack
        .gateway
        .log_events()
        .iter()
        .rev()
        .find(|e| e["message"] == "trusted publishing exchange" && e["outcome"] == "minted")
        .map_or("no exchange logged".into(), |e| {
            format!(
                "publisher {} for {}",
                e["publishers"].as_str().unwrap_or("?"),
                e["projects"].as_str().unwrap_or("?")
            )
        })
}

fn text(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_default().to_owned()
}
