//! Where an upload's CPU goes, in instructions (callgrind counts instructions, not time, so the
//! figures repeat whatever else the machine does): bare pingora, the gateway in pass-through
//! and in full policy (verification cached) each run under `valgrind --tool=callgrind` in
//! front of the bench's sink; after a warm-up the counters are zeroed, a fixed number of
//! uploads is sent one connection each, and the counts are dumped. Reports instructions per
//! upload for each target and, for the gateway, the functions that account for them. The same
//! for a small read (the bench's `GET` scenarios' page), sent over one kept-alive connection as
//! the load generator does.
//!
//! `upload_instructions [--uploads N] [--only TEXT] [--keep DIR] [--out FILE.md]`: `--only` runs
//! the targets and uploads whose names contain TEXT, `--keep` keeps the callgrind dumps there
//! (for `callgrind_annotate` by hand). Run it through `bench/callgrind.sh`, which builds the
//! release binaries first.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_bench::sink::READ_PATH;
use portcullis_bench::targets::{self, GatewayMode, Placement};
use portcullis_e2e::http::{self, Form};

const SDIST: &str = "pypi_attestations-0.0.19.tar.gz";
const WARM_UP: usize = 20;

/// One request to count: an upload (a connection each) or a read (one kept-alive connection).
struct Upload {
    name: &'static str,
    form: Option<Form>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn uploads() -> Vec<Upload> {
    let case = fixtures().join("pep740/github-publish-pypi-attestations-0.0.19");
    let sdist = std::fs::read(case.join("artifact")).expect("sdist");
    let attestation = std::fs::read_to_string(case.join(format!("{SDIST}.publish.attestation"))).expect("attestation");
    let wheel: Vec<u8> = (0..1 << 20).map(|i: usize| (i % 251) as u8).collect();
    vec![
        Upload {
            name: "29 KiB sdist + PEP 740 attestation",
            form: Some(Form::pypi_upload_with(
                "pypi-attestations",
                "0.0.19",
                SDIST,
                &sdist,
                &[("attestations", &format!("[{attestation}]"))],
            )),
        },
        Upload {
            name: "1 MiB wheel",
            form: Some(Form::pypi_upload(
                "demo-mib",
                "1.0",
                "demo_mib-1.0-py3-none-any.whl",
                &wheel,
            )),
        },
        Upload {
            name: "small GET, kept-alive connection",
            form: None,
        },
    ]
}

/// Sends `count` of `upload`: each upload on its own connection, reads on one kept-alive one.
fn send(addr: SocketAddr, upload: &Upload, count: usize) {
    let Some(form) = &upload.form else {
        let mut stream = http::connect(addr);
        let head = format!("GET {READ_PATH} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        for _ in 0..count {
            stream.write_all(head.as_bytes()).expect("write read");
            let response = http::read_response(&mut stream).expect("read answer");
            assert_eq!(response.status, 200, "{}: {}", upload.name, response.text());
        }
        return;
    };
    let auth = http::basic_auth("bench", "bench");
    for _ in 0..count {
        let response = http::request(
            addr,
            "POST",
            "/",
            &[("content-type", &form.content_type()), ("authorization", &auth)],
            &form.body,
        );
        assert_eq!(response.status, 200, "{}: {}", upload.name, response.text());
    }
}

/// The callgrind command line for a program writing its counts into `dir`.
fn valgrind(dir: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        format!("--callgrind-out-file={}/callgrind.out.%p", dir.display()),
        "--dump-instr=no".into(),
        "--collect-systime=no".into(),
        "--trace-children=no".into(),
    ]
}

fn callgrind_control(flag: &str, pid: u32) {
    let status = Command::new("callgrind_control")
        .arg(flag)
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .status()
        .expect("callgrind_control");
    assert!(status.success(), "callgrind_control {flag} {pid}");
}

/// The dump callgrind wrote for `pid` after `--dump`, once it is complete.
fn dump_file(dir: &Path, pid: u32) -> PathBuf {
    let path = dir.join(format!("callgrind.out.{pid}.1"));
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        if std::fs::read_to_string(&path).is_ok_and(|t| t.contains("totals:")) {
            return path;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no callgrind dump at {}", path.display());
}

/// Functions with their instruction counts, most first.
type Functions = Vec<(u64, String)>;

/// What a dump says: total instructions, the top functions counted inclusively and by self.
struct Annotated {
    total: u64,
    inclusive: Functions,
    exclusive: Functions,
}

/// Reads a dump: the inclusive view from `callgrind_annotate`, the self view from the dump
/// itself (cost lines count for the function named by the last `fn=`, except the line after a
/// `calls=`, which is the callee's inclusive cost).
fn annotate(file: &Path) -> Annotated {
    let out = Command::new("callgrind_annotate")
        .arg("--inclusive=yes")
        .arg(file)
        .output()
        .expect("callgrind_annotate");
    let text = String::from_utf8_lossy(&out.stdout);
    let number = |s: &str| s.replace(',', "").parse::<u64>().ok();
    let total = text
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .and_then(|l| l.split_whitespace().next().and_then(number))
        .unwrap_or(0);
    let inclusive = text
        .lines()
        .filter_map(|line| {
            let (count, rest) = line.trim().split_once(' ')?;
            let count = number(count)?;
            let name = rest.trim_start().split_once(")  ").map_or(rest, |(_, n)| n);
            let name = name.split_once(':').map_or(name, |(_, f)| f);
            (!name.contains("PROGRAM TOTALS")).then(|| (count, clip(name)))
        })
        .take(60)
        .collect();
    Annotated {
        total,
        inclusive,
        exclusive: self_costs(file),
    }
}

/// The 40 functions with the most self cost in a dump.
fn self_costs(file: &Path) -> Functions {
    let text = std::fs::read_to_string(file).expect("dump");
    let mut names = std::collections::HashMap::new();
    let mut costs: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
    let mut current = String::new();
    let mut after_call = false;
    for line in text.lines() {
        if let Some(spec) = line.strip_prefix("fn=") {
            current = resolve(&mut names, spec);
        } else if let Some(spec) = line.strip_prefix("cfn=") {
            resolve(&mut names, spec);
        } else if line.starts_with("calls=") {
            after_call = true;
        } else if line.starts_with(|c: char| c.is_ascii_digit() || c == '+' || c == '-' || c == '*') {
            if after_call {
                after_call = false;
            } else if let Some(cost) = line.split_whitespace().nth(1).and_then(|c| c.parse::<u64>().ok()) {
                *costs.entry(current.clone()).or_default() += cost;
            }
        }
    }
    let mut sorted: Functions = costs.into_iter().map(|(name, cost)| (cost, clip(&name))).collect();
    sorted.sort_by_key(|entry| std::cmp::Reverse(entry.0));
    sorted.truncate(40);
    sorted
}

/// `(id) name` defines an id, `(id)` refers to one.
fn resolve(names: &mut std::collections::HashMap<String, String>, spec: &str) -> String {
    match spec.split_once(") ") {
        Some((id, name)) => {
            names.insert(id.to_owned(), name.to_owned());
            name.to_owned()
        }
        None => names
            .get(spec.trim_end_matches(')'))
            .cloned()
            .unwrap_or_else(|| spec.to_owned()),
    }
}

fn clip(name: &str) -> String {
    name.chars().take(150).collect()
}

/// A target under callgrind: its pid and how to stop it.
enum Target {
    Gateway(portcullis_e2e::gateway::Gateway),
    Child(Child),
}

impl Target {
    fn pid(&mut self) -> u32 {
        match self {
            Target::Gateway(g) => g.process().pid(),
            Target::Child(c) => c.id(),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Target::Child(c) = self {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(name: &str, work: &Path, backend: SocketAddr) -> (Target, SocketAddr) {
    let dir = work.join(name.replace(' ', "-"));
    std::fs::create_dir_all(&dir).expect("dir");
    if name == "bare pingora" {
        let listen = SocketAddr::from(([127, 0, 0, 1], portcullis_e2e::free_port()));
        let exe = std::env::current_exe().expect("exe").with_file_name("pingora_baseline");
        let mut args = valgrind(&dir);
        args.push(exe.display().to_string());
        args.push(listen.to_string());
        args.push(backend.to_string());
        let child = Command::new(&args[0])
            .args(&args[1..])
            .stderr(Stdio::null())
            .spawn()
            .expect("valgrind pingora_baseline");
        let up = portcullis_e2e::wait_until(Duration::from_secs(60), || std::net::TcpStream::connect(listen).is_ok());
        assert!(up, "pingora_baseline did not start under callgrind");
        return (Target::Child(child), listen);
    }
    // The gateway: the e2e builder runs $PORTCULLIS_BIN, here a wrapper that execs callgrind.
    let real = std::env::var("PORTCULLIS_REAL_BIN").expect("PORTCULLIS_REAL_BIN (set by bench/callgrind.sh)");
    let wrapper = dir.join("portcullis-under-callgrind");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec {} {real} \"$@\"\n", valgrind(&dir).join(" ")),
    )
    .expect("wrapper");
    let _ = Command::new("chmod").arg("+x").arg(&wrapper).status();
    std::env::set_var("PORTCULLIS_BIN", &wrapper);
    let mode = if name.contains("policy") {
        GatewayMode::Policy
    } else {
        GatewayMode::PassThrough
    };
    let gateway = targets::start_gateway(&dir.join("gateway"), backend, mode, &fixtures(), Placement::PINNED);
    let addr = gateway.addr();
    (Target::Gateway(gateway), addr)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let n: usize = arg("--uploads").map_or(100, |v| v.parse().expect("--uploads N"));
    let out = arg("--out");
    let only = arg("--only").unwrap_or_default();
    let temp = tempfile::tempdir().expect("tempdir");
    let kept = arg("--keep").map(PathBuf::from);
    let work = kept.as_deref().unwrap_or(temp.path());
    let (_sink, backend) = targets::start_sink(Placement::PINNED).expect("sink");
    let uploads = uploads();
    let names = ["bare pingora", "gateway pass-through", "gateway full policy"];
    let mut report = format!(
        "# Instructions per request (callgrind)\n\n`bench/callgrind.sh` ({}): each target under `valgrind --tool=callgrind` \
         in front of the bench sink; {WARM_UP} requests to warm up, counters zeroed, then {n} requests: each upload on its own connection, the reads on \
         one kept-alive connection. Instructions of the target process only (all its threads).\n\n| request | target | instructions per request |\n|---|---|---:|\n",
        time::OffsetDateTime::now_utc().date()
    );
    let mut details = String::new();
    for upload in &uploads {
        for name in names {
            if !format!("{name} {}", upload.name).contains(&only) {
                continue;
            }
            let (mut target, addr) = start(name, work, backend);
            send(addr, upload, WARM_UP);
            let pid = target.pid();
            callgrind_control("--zero", pid);
            send(addr, upload, n);
            callgrind_control("--dump", pid);
            let dir = work.join(name.replace(' ', "-"));
            let Annotated {
                total,
                inclusive,
                exclusive,
            } = annotate(&dump_file(&dir, pid));
            let per_upload = total / n as u64;
            eprintln!("{}: {name}: {per_upload} instructions per request", upload.name);
            report.push_str(&format!("| {} | {name} | {per_upload} |\n", upload.name));
            if name != "bare pingora" {
                details.push_str(&format!(
                    "\n## {name}, {}: {per_upload} instructions per request\n\nInclusive (a function and what it calls), per request:\n\n```\n",
                    upload.name
                ));
                for (count, f) in &inclusive {
                    details.push_str(&format!("{:>12}  {f}\n", count / n as u64));
                }
                details.push_str("```\n\nSelf, per request:\n\n```\n");
                for (count, f) in &exclusive {
                    details.push_str(&format!("{:>12}  {f}\n", count / n as u64));
                }
                details.push_str("```\n");
            }
            drop(target);
        }
    }
    report.push_str(&details);
    match out {
        Some(path) => std::fs::write(&path, report).expect("write report"),
        None => print!("{report}"),
    }
}
