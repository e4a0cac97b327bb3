//! The differential test of issue 17's first class: every PyPI upload form the gateway would
//! forward is read the same way — same parts, names, file names and bytes — by each Python
//! reader a real backend uses (pypiserver's bottle/cgi, the standard library's `cgi` and
//! `email`, `multipart`, webob as devpi-server and Warehouse use it, werkzeug), given the
//! `Content-Type` the gateway forwards. Forms on which the readers disagree must be refused.
//!
//! The corpus: `tests/tools/multipart_corpus.py` (hand-made ambiguous forms around the bytes
//! twine and uv send), structural mutations of its twine and uv baselines made here (each
//! CRLF, quote, `;` and delimiter line broken in several ways), the committed fuzz seeds, and
//! the local fuzz corpus when `scripts/fuzz` has run in this clone. The readers run in the
//! test tools' venv (`tests/tools/multipart_readers.py`).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use portcullis::protocol::multipart::{FormContentType, MultipartError, PartHead, PartSink, StrictMultipart};
use portcullis::protocol::pypi::FormInspector;
use portcullis_e2e::repo_root;
use portcullis_e2e::tools::tools;
use serde_json::{json, Value};

/// One form: the request's `Content-Type` and body.
struct Case {
    id: String,
    content_type: String,
    body: Vec<u8>,
}

/// (name, filename, sha256 hex) of each part, in order.
type Reading = Vec<(String, Option<String>, String)>;

/// The gateway's reading of a form it accepts.
#[derive(Default)]
struct Recorder {
    parts: Reading,
    data: Vec<u8>,
}

impl PartSink for Recorder {
    type Error = MultipartError;
    fn start_part(&mut self, head: PartHead) -> Result<(), MultipartError> {
        self.parts.push((head.name, head.filename, String::new()));
        self.data.clear();
        Ok(())
    }
    fn data(&mut self, bytes: &[u8]) -> Result<(), MultipartError> {
        self.data.extend_from_slice(bytes);
        Ok(())
    }
    fn end_part(&mut self) -> Result<(), MultipartError> {
        if let Some(last) = self.parts.last_mut() {
            last.2 = portcullis_e2e::sha256_hex(&self.data);
        }
        Ok(())
    }
}

/// What the gateway does with a case: `Ok((forwarded Content-Type, reading))` when it would
/// forward the form, `Err(code)` when it refuses it.
fn gateway(case: &Case) -> Result<(String, Reading), String> {
    let mut inspector = FormInspector::start(Some(&case.content_type)).map_err(|e| e.code().to_owned())?;
    inspector.feed(&case.body).map_err(|e| e.code().to_owned())?;
    let forwarded = inspector.canonical_content_type();
    match inspector.finish() {
        Ok(_) => {}
        // Refused for what the upload is, not for how it is read: still never forwarded.
        Err(e) => return Err(e.code().to_owned()),
    }
    let content_type = FormContentType::parse(&forwarded).map_err(|e| e.to_string())?;
    let mut reader = StrictMultipart::new(&content_type);
    let mut recorder = Recorder::default();
    reader.feed(&case.body, &mut recorder).map_err(|e| e.to_string())?;
    reader.finish().map_err(|e| e.to_string())?;
    Ok((forwarded, recorder.parts))
}

fn python_corpus() -> Vec<Case> {
    let output = Command::new("python3")
        .arg(repo_root().join("tests/tools/multipart_corpus.py"))
        .output()
        .expect("run multipart_corpus.py");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("corpus line");
            Case {
                id: v["id"].as_str().expect("id").to_owned(),
                content_type: v["content_type"].as_str().expect("content_type").to_owned(),
                body: STANDARD.decode(v["body_b64"].as_str().expect("body")).expect("base64"),
            }
        })
        .collect()
}

/// Every position of `needle` in `body`.
fn positions(body: &[u8], needle: &[u8]) -> Vec<usize> {
    (0..body.len().saturating_sub(needle.len() - 1))
        .filter(|&i| body[i..].starts_with(needle))
        .collect()
}

fn splice(body: &[u8], at: usize, remove: usize, insert: &[u8]) -> Vec<u8> {
    [&body[..at], insert, &body[at + remove..]].concat()
}

/// Structural mutations of a baseline: each CRLF, quote, `;` and delimiter broken.
fn mutations(base: &Case) -> Vec<Case> {
    let boundary = base
        .content_type
        .split("boundary=")
        .nth(1)
        .expect("baseline boundary")
        .trim_matches('"')
        .to_owned();
    let dash = format!("--{boundary}").into_bytes();
    let body = &base.body;
    let mut out = Vec::new();
    let mut add = |what: String, body: Vec<u8>| {
        out.push(Case {
            id: format!("mut-{}-{what}", base.id),
            content_type: base.content_type.clone(),
            body,
        })
    };
    for at in positions(body, b"\r\n") {
        add(format!("lf@{at}"), splice(body, at, 2, b"\n"));
        add(format!("cr@{at}"), splice(body, at, 2, b"\r"));
        add(format!("nocrlf@{at}"), splice(body, at, 2, b""));
        add(format!("crlfcrlf@{at}"), splice(body, at, 2, b"\r\n\r\n"));
        add(format!("fold@{at}"), splice(body, at, 2, b"\r\n "));
    }
    for at in positions(body, b"\"").into_iter().filter(|&at| at < body.len()) {
        add(format!("noquote@{at}"), splice(body, at, 1, b""));
        add(format!("escquote@{at}"), splice(body, at, 0, b"\\"));
    }
    for at in positions(body, b"; ") {
        add(format!("nosemi@{at}"), splice(body, at, 1, b""));
        add(format!("twosemi@{at}"), splice(body, at, 1, b";;"));
    }
    for at in positions(body, &dash) {
        let end = at + dash.len();
        add(format!("pad@{at}"), splice(body, end, 0, b" "));
        add(format!("short@{at}"), splice(body, end - 1, 1, b""));
        add(format!("longer@{at}"), splice(body, end, 0, b"x"));
        add(
            format!("lfbefore@{at}"),
            splice(body, at.saturating_sub(2), 2.min(at), b"\n"),
        );
    }
    out
}

/// The committed fuzz seeds and, when present, the local fuzz corpus (2 chunking bytes, then
/// a form with the fuzz target's boundary).
fn fuzz_cases() -> Vec<Case> {
    let mut files = Vec::new();
    for dir in ["fuzz/seeds/multipart", "fuzz/corpus/multipart"] {
        let Ok(entries) = std::fs::read_dir(repo_root().join(dir)) else {
            continue;
        };
        let mut names: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        names.sort();
        files.extend(names.into_iter().take(2_000));
    }
    files
        .into_iter()
        .filter_map(|path| {
            let bytes = std::fs::read(&path).ok()?;
            Some(Case {
                id: format!("fuzz-{}", path.file_name()?.to_string_lossy()),
                content_type: "multipart/form-data; boundary=PortcullisFuzzBoundary".into(),
                body: bytes.get(2..)?.to_vec(),
            })
        })
        .collect()
}

/// Runs the Python readers over `(id, content type, body)`; returns each case's readings.
fn python_readings(inputs: &[(String, String, &[u8])]) -> BTreeMap<String, Value> {
    let mut child = Command::new(tools().python())
        .arg(repo_root().join("tests/tools/multipart_readers.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run multipart_readers.py");
    let mut stdin = child.stdin.take().expect("stdin");
    let lines: Vec<String> = inputs
        .iter()
        .map(|(id, ct, body)| json!({"id": id, "content_type": ct, "body_b64": STANDARD.encode(body)}).to_string())
        .collect();
    let writer = std::thread::spawn(move || {
        for line in lines {
            writeln!(stdin, "{line}").expect("write case");
        }
    });
    let output = child.wait_with_output().expect("readers");
    writer.join().expect("writer");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).expect("reader line");
            (v["id"].as_str().expect("id").to_owned(), v["readers"].clone())
        })
        .collect()
}

/// A reader's parts as a [`Reading`], grouped by name in a stable order (readers that return
/// a dictionary order parts by name, not by position); `None` when it failed.
fn normalised(reader: &Value) -> Option<Reading> {
    if reader["ok"] != json!(true) {
        return None;
    }
    let mut parts: Reading = reader["parts"]
        .as_array()?
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_owned(),
                p["filename"].as_str().map(str::to_owned),
                p["sha256"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    Some(parts)
}

#[test]
fn every_form_the_gateway_forwards_reads_the_same_in_every_python_reader() {
    let mut corpus = python_corpus();
    let hand_made = corpus.len();
    let baselines: Vec<Case> = corpus
        .iter()
        .filter(|c| c.id.starts_with("baseline-"))
        .map(|c| Case {
            id: c.id.clone(),
            content_type: c.content_type.clone(),
            body: c.body.clone(),
        })
        .collect();
    assert!(baselines.len() >= 2, "the corpus has the twine and uv baselines");
    let mutated: Vec<Case> = baselines.iter().flat_map(mutations).collect();
    let mutated_count = mutated.len();
    corpus.extend(mutated);
    let fuzz = fuzz_cases();
    let fuzz_count = fuzz.len();
    corpus.extend(fuzz);

    let verdicts: Vec<Result<(String, Reading), String>> = corpus.iter().map(gateway).collect();
    // Accepted forms go to the readers as forwarded; refused ones as sent, to count how many
    // of them the readers would have read differently from each other.
    let inputs: Vec<(String, String, &[u8])> = corpus
        .iter()
        .zip(&verdicts)
        .map(|(case, verdict)| {
            let ct = match verdict {
                Ok((forwarded, _)) => forwarded.clone(),
                Err(_) => case.content_type.clone(),
            };
            (case.id.clone(), ct, case.body.as_slice())
        })
        .collect();
    let readings = python_readings(&inputs);

    let mut accepted = 0;
    let mut refused_by_code: BTreeMap<String, usize> = BTreeMap::new();
    let mut refused_where_readers_disagree = 0;
    let mut disagreements = Vec::new();
    for (case, verdict) in corpus.iter().zip(&verdicts) {
        let readers = readings
            .get(&case.id)
            .unwrap_or_else(|| panic!("no reading of {}", case.id));
        let readers = readers.as_object().expect("readers");
        match verdict {
            Ok((_, gateway_reading)) => {
                accepted += 1;
                let mut ours = gateway_reading.clone();
                ours.sort_by(|a, b| a.0.cmp(&b.0));
                for (reader, value) in readers {
                    if normalised(value).as_ref() != Some(&ours) {
                        disagreements.push(format!(
                            "{}: {reader} reads {}; the gateway read {ours:?}",
                            case.id,
                            value.to_string().chars().take(400).collect::<String>()
                        ));
                    }
                }
            }
            Err(code) => {
                *refused_by_code.entry(code.clone()).or_default() += 1;
                let distinct: std::collections::BTreeSet<Option<Reading>> = readers.values().map(normalised).collect();
                if distinct.len() > 1 {
                    refused_where_readers_disagree += 1;
                }
            }
        }
    }
    eprintln!(
        "differential corpus: {} forms ({hand_made} hand-made, {mutated_count} mutations of the twine and uv baselines, \
         {fuzz_count} fuzz); {} readers; gateway accepts {accepted}, refuses {} ({refused_by_code:?}); \
         the readers disagree among themselves on {refused_where_readers_disagree} of the refused; \
         disagreements on accepted forms: {}",
        corpus.len(),
        readings.values().next().and_then(|r| r.as_object()).map_or(0, |r| r.len()),
        corpus.len() - accepted,
        disagreements.len()
    );
    assert!(
        disagreements.is_empty(),
        "the gateway forwards forms that a backend's reader reads differently:\n{}",
        disagreements.join("\n")
    );
    assert!(accepted >= 2, "the baselines themselves are accepted");
    assert!(
        verdicts[..hand_made]
            .iter()
            .zip(&corpus)
            .filter(|(_, c)| c.id.starts_with("baseline-"))
            .all(|(v, _)| v.is_ok()),
        "twine's and uv's forms are accepted"
    );
}
