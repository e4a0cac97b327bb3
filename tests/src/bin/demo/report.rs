//! What the demo prints: numbered steps with a few indented lines each, and at the end one
//! table of what was tried, what the gateway decided and why, and what the backend stored.
//! Every expectation the demo checks is kept: a surprise is printed where it happens and makes
//! the demo exit non-zero.

use std::time::Instant;

/// One row of the summary table.
pub struct Row {
    /// `pypi` or `npm`.
    pub registry: &'static str,
    /// What was tried.
    pub tried: String,
    /// With which client.
    pub client: &'static str,
    /// What the gateway answered (`accepted`, `refused 400`...).
    pub decision: String,
    /// Why: the rule, publisher or refusal code.
    pub why: String,
    /// What the backend holds afterwards.
    pub stored: String,
}

/// The demo's output so far.
pub struct Report {
    started: Instant,
    steps: usize,
    rows: Vec<Row>,
    surprises: Vec<String>,
}

impl Report {
    /// An empty report; the clock starts now.
    pub fn new() -> Report {
        Report {
            started: Instant::now(),
            steps: 0,
            rows: Vec::new(),
            surprises: Vec::new(),
        }
    }

    /// Starts a numbered step.
    pub fn step(&mut self, title: &str) {
        self.steps += 1;
        println!("\n{}. {title}", self.steps);
    }

    /// Indented lines under the current step, long ones wrapped at word boundaries.
    pub fn line(&self, text: impl AsRef<str>) {
        for line in text.as_ref().lines() {
            for piece in wrap(line, WIDTH) {
                println!("   {piece}");
            }
        }
    }

    /// Checks an expectation; a failed one is printed and remembered.
    pub fn expect(&mut self, holds: bool, what: impl AsRef<str>) {
        if !holds {
            let what = what.as_ref().to_owned();
            println!("   !! unexpected: {what}");
            self.surprises.push(what);
        }
    }

    /// Adds a row to the summary table.
    pub fn row(&mut self, row: Row) {
        self.rows.push(row);
    }

    /// Prints the summary table and the elapsed time; `true` when every expectation held.
    pub fn finish(&self) -> bool {
        println!("\nSummary");
        let header = Row {
            registry: "registry",
            tried: "what was tried".into(),
            client: "client",
            decision: "gateway".into(),
            why: "why".into(),
            stored: "backend stored".into(),
        };
        let cells = |r: &Row| -> [String; 6] {
            [
                r.registry.to_owned(),
                r.tried.clone(),
                r.client.to_owned(),
                r.decision.clone(),
                r.why.clone(),
                r.stored.clone(),
            ]
        };
        let all: Vec<[String; 6]> = std::iter::once(cells(&header))
            .chain(self.rows.iter().map(cells))
            .collect();
        let mut widths = [0usize; 6];
        for row in &all {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        for (i, row) in all.iter().enumerate() {
            let line: Vec<String> = row.iter().zip(widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
            println!("  {}", line.join(" | ").trim_end());
            if i == 0 {
                let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
                println!("  {}", rule.join("-+-"));
            }
        }
        println!("\nDone in {:.1} s.", self.started.elapsed().as_secs_f64());
        if self.surprises.is_empty() {
            true
        } else {
            println!("{} expectation(s) did not hold:", self.surprises.len());
            for s in &self.surprises {
                println!("  - {s}");
            }
            false
        }
    }
}

/// Where [`Report::line`] wraps.
const WIDTH: usize = 110;

/// `line` cut into pieces of at most `width` characters at spaces (a longer word stays whole);
/// continuation pieces are indented by two spaces.
fn wrap(line: &str, width: usize) -> Vec<String> {
    let mut pieces = vec![String::new()];
    for word in line.split(' ') {
        let current = pieces.last_mut().expect("one piece");
        if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > width {
            pieces.push(format!("  {word}"));
        } else {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
    }
    pieces
}

/// The first `max` characters of `text` on one line, with an ellipsis when cut.
pub fn clip(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        format!("{}…", one_line.chars().take(max.saturating_sub(1)).collect::<String>())
    }
}
