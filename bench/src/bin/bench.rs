//! `bench`: Portcullis side by side with the direct backend and nginx, on this machine, in one
//! run. Starts every target itself on loopback (the bench's own sink as the backend, nginx from
//! the system package, the release-built gateway in pass-through and full-policy modes), pins
//! targets and backend to core 0 and the load generator to core 1, runs the targets
//! interleaved round by round, and writes `bench/results/bench.{json,md}` and PNG plots.
//!
//! Run with `bench/run` (`--rounds N`, `--seconds S`, `--quick`, `--only SUBSTRING`). A run
//! with `--only` writes into `bench/results/partial/` (not kept in git). `bench report` rewrites
//! the markdown and the plots from `bench/results/bench.json`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use portcullis_bench::load::{self, Limit, RequestSpec};
use portcullis_bench::report::{self, IdleRow, MemoryRow, ReloadRow, Results};
use portcullis_bench::sink::READ_PATH;
use portcullis_bench::stats::{Row, Run};
use portcullis_bench::targets::{self, GatewayMode, Placement, LOAD_CPU};
use portcullis_bench::{procfs, sink};
use portcullis_e2e::gateway::Gateway;
use portcullis_e2e::http::Form;

const MIB: usize = 1 << 20;
const SDIST: &str = "pypi_attestations-0.0.19.tar.gz";

/// Options from the command line.
struct Options {
    rounds: usize,
    seconds: f64,
    only: Option<String>,
    idle_connections: usize,
    placement: Placement,
}

impl Options {
    fn parse() -> Options {
        let mut options = Options {
            rounds: 5,
            seconds: 2.0,
            only: None,
            idle_connections: 10_000,
            placement: Placement::PINNED,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--rounds" => options.rounds = args.next().and_then(|v| v.parse().ok()).unwrap_or(5),
                "--seconds" => options.seconds = args.next().and_then(|v| v.parse().ok()).unwrap_or(2.0),
                "--only" => options.only = args.next(),
                "--threads" => {
                    let threads = args.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                    if threads == 0 {
                        eprintln!("bench: --threads needs a number of threads, at least 1");
                        std::process::exit(2);
                    }
                    options.placement = Placement { threads };
                }
                "--quick" => {
                    options.rounds = 2;
                    options.seconds = 0.5;
                    options.idle_connections = 1000;
                }
                other => {
                    eprintln!("bench: unknown option {other}; use --rounds N, --seconds S, --quick, --only SUBSTRING, --threads N");
                    std::process::exit(2);
                }
            }
        }
        options
    }

    fn wants(&self, scenario: &str) -> bool {
        self.only.as_deref().is_none_or(|o| scenario.contains(o))
    }
}

/// An upload scenario: name, targets, how to build its request, clients, limit.
type UploadScenario<'a> = (&'a str, &'a [&'a str], fn() -> RequestSpec, usize, Limit);

/// A target as the load sees it.
struct Target {
    name: &'static str,
    addr: SocketAddr,
    /// The process tree whose CPU and memory are the target's.
    pid: u32,
}

/// Every target's processes (dropping this stops them all).
struct Running {
    sink: targets::Process,
    backend: SocketAddr,
    nginx: (targets::Process, SocketAddr),
    baseline: (targets::Process, SocketAddr),
    passthrough: Gateway,
    policy: Gateway,
    uncached: Gateway,
}

impl Running {
    /// Starts the sink and every target in front of it, in fresh folders under `dir`.
    fn start(dir: &Path, placement: Placement) -> Running {
        let (sink, backend) = targets::start_sink(placement).expect("sink");
        let gateway = |name: &str, mode| targets::start_gateway(&dir.join(name), backend, mode, &fixtures(), placement);
        Running {
            backend,
            nginx: targets::start_nginx(&dir.join("nginx"), backend, placement).expect("nginx"),
            baseline: targets::start_pingora_baseline(backend, placement).expect("pingora baseline"),
            passthrough: gateway("pass", GatewayMode::PassThrough),
            policy: gateway("policy", GatewayMode::Policy),
            uncached: gateway("uncached", GatewayMode::PolicyUncached),
            sink,
        }
    }

    fn targets(&mut self) -> Vec<Target> {
        vec![
            Target {
                name: "direct",
                addr: self.backend,
                pid: self.sink.pid(),
            },
            Target {
                name: "nginx",
                addr: self.nginx.1,
                pid: self.nginx.0.pid(),
            },
            Target {
                name: "bare pingora",
                addr: self.baseline.1,
                pid: self.baseline.0.pid(),
            },
            Target {
                name: "gateway pass-through",
                addr: self.passthrough.addr(),
                pid: self.passthrough.process().pid(),
            },
            Target {
                name: "gateway full policy",
                addr: self.policy.addr(),
                pid: self.policy.process().pid(),
            },
            Target {
                name: "gateway full policy, uncached",
                addr: self.uncached.addr(),
                pid: self.uncached.process().pid(),
            },
        ]
    }
}

struct Bench {
    options: Options,
    runtime: tokio::runtime::Runtime,
    work: tempfile::TempDir,
    started: usize,
    running: Option<Running>,
    backend_pid: u32,
    targets: Vec<Target>,
    rows: Vec<Row>,
}

impl Bench {
    /// Stops every target and starts them again, so that each scenario's memory figures are
    /// its own (allocators keep what earlier scenarios used) and its state store starts empty.
    fn fresh(&mut self) {
        self.running = None;
        self.started += 1;
        let mut running = Running::start(&self.work.path().join(self.started.to_string()), self.options.placement);
        self.targets = running.targets();
        self.backend_pid = running.sink.pid();
        self.running = Some(running);
    }

    /// Runs `specs` against each of `targets` (names), interleaved, `rounds` times.
    fn scenario(&mut self, name: &str, names: &[&str], specs: &[RequestSpec], concurrency: usize, limit: Limit) {
        if !self.options.wants(name) {
            return;
        }
        eprintln!("== {name}");
        self.fresh();
        let chosen: Vec<usize> = names
            .iter()
            .filter_map(|n| self.targets.iter().position(|t| t.name == *n))
            .collect();
        let mut runs: Vec<(Vec<Run>, Vec<u32>)> = vec![(Vec::new(), Vec::new()); chosen.len()];
        for round in 0..self.options.rounds {
            for (slot, &index) in chosen.iter().enumerate() {
                let target = &self.targets[index];
                let (run, latencies) = measure(
                    &self.runtime,
                    target,
                    self.backend_pid,
                    specs,
                    concurrency,
                    limit,
                    round,
                );
                eprintln!(
                    "   round {round} {:<28} {:>10.0}/s cpu {:>8.1} µs/req {:>5.1} switches/req{} failed {}",
                    target.name,
                    run.per_second,
                    run.cpu_us_per_request(),
                    run.switches_per_request(),
                    run.cpu_ms_per_mib()
                        .map_or(String::new(), |m| format!(" {m:.2} ms/MiB")),
                    run.failed
                );
                runs[slot].0.push(run);
                runs[slot].1.extend(latencies);
            }
        }
        for (slot, (target_runs, latencies)) in runs.into_iter().enumerate() {
            let target = &self.targets[chosen[slot]];
            self.rows
                .push(Row::new(name, target.name, concurrency, target_runs, latencies));
        }
    }
}

fn measure(
    runtime: &tokio::runtime::Runtime,
    target: &Target,
    backend_pid: u32,
    specs: &[RequestSpec],
    concurrency: usize,
    limit: Limit,
    round: usize,
) -> (Run, Vec<u32>) {
    procfs::reset_peak_rss(target.pid);
    let cpu_before = procfs::tree_cpu_seconds(target.pid);
    let switches_before = procfs::tree_context_switches(target.pid);
    let backend_before = procfs::cpu_seconds(backend_pid);
    let outcome = runtime.block_on(load::run(target.addr, specs.to_vec(), concurrency, limit));
    let target_cpu_s = procfs::tree_cpu_seconds(target.pid) - cpu_before;
    let backend_cpu_s = procfs::cpu_seconds(backend_pid) - backend_before;
    let run = Run {
        round,
        ok: outcome.ok,
        failed: outcome.failed,
        first_failure: outcome.first_failure.clone(),
        wall_s: outcome.wall.as_secs_f64(),
        per_second: outcome.per_second(),
        mib: outcome.body_bytes as f64 / MIB as f64,
        target_cpu_s,
        backend_cpu_s,
        peak_rss_mib: procfs::tree_peak_rss_mib(target.pid),
        context_switches: procfs::tree_context_switches(target.pid).saturating_sub(switches_before),
    };
    (run, outcome.latencies_us)
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures")
}

fn wheel_form(mib: usize, chunked: bool) -> RequestSpec {
    let content: Vec<u8> = (0..mib * MIB).map(|i| (i % 251) as u8).collect();
    let form = Form::pypi_upload("bench-pkg", "1.0", "bench_pkg-1.0-py3-none-any.whl", &content);
    RequestSpec::post("/", &form.content_type(), Bytes::from(form.body), chunked)
}

fn attested_form() -> RequestSpec {
    let case_dir = fixtures().join("pep740/github-publish-pypi-attestations-0.0.19");
    let sdist = std::fs::read(case_dir.join("artifact")).expect("the real sdist fixture");
    let attestation = std::fs::read_to_string(case_dir.join(format!("{SDIST}.publish.attestation")))
        .expect("the real attestation fixture");
    let form = Form::pypi_upload_with(
        "pypi-attestations",
        "0.0.19",
        SDIST,
        &sdist,
        &[("attestations", &format!("[{attestation}]"))],
    );
    RequestSpec::post("/", &form.content_type(), Bytes::from(form.body), false)
}

/// 10 000 idle keep-alive connections per target: memory they cost, CPU while idle, reads at
/// 64 clients while they are held, and how many still answer afterwards.
fn idle(bench: &mut Bench, names: &[&str]) -> Vec<IdleRow> {
    let mut rows = Vec::new();
    if !bench.options.wants("idle") {
        return rows;
    }
    eprintln!("== idle keep-alive connections");
    bench.fresh();
    let count = bench.options.idle_connections;
    let seconds = bench.options.seconds.max(1.0);
    for name in names {
        let Some(target) = bench.targets.iter().find(|t| t.name == *name) else {
            continue;
        };
        let rss_before = procfs::tree_rss_mib(target.pid);
        let started = Instant::now();
        let (mut connections, failed_to_open) =
            bench
                .runtime
                .block_on(load::open_idle(target.addr, count, 256, READ_PATH));
        let open_seconds = started.elapsed().as_secs_f64();
        let rss_held = procfs::tree_rss_mib(target.pid);
        let cpu_before = procfs::tree_cpu_seconds(target.pid);
        std::thread::sleep(Duration::from_secs_f64(seconds));
        let idle_cpu_percent = (procfs::tree_cpu_seconds(target.pid) - cpu_before) * 100.0 / seconds;
        let mut load = bench.runtime.block_on(load::run(
            target.addr,
            vec![RequestSpec::get(READ_PATH)],
            64,
            Limit::For(Duration::from_secs_f64(seconds)),
        ));
        let still_answering = bench.runtime.block_on(load::probe_idle(&mut connections, READ_PATH));
        let row = IdleRow {
            target: target.name.to_owned(),
            connections: count,
            opened: connections.len(),
            failed_to_open,
            open_seconds,
            rss_before_mib: rss_before,
            rss_held_mib: rss_held,
            kib_per_connection: (rss_held - rss_before) * 1024.0 / (connections.len().max(1) as f64),
            idle_cpu_percent,
            reads_per_second_while_held: load.per_second(),
            read_p99_ms_while_held: load.latency_ms(0.99),
            read_failures_while_held: load.failed,
            still_answering,
        };
        eprintln!("   {row:?}");
        drop(connections);
        rows.push(row);
        // Let the target close its side before the next one starts.
        std::thread::sleep(Duration::from_secs(1));
    }
    rows
}

/// Peak memory of each target while one upload of each size streams through.
fn memory(bench: &mut Bench, names: &[&str], sizes: &[usize]) -> Vec<MemoryRow> {
    let mut rows = Vec::new();
    if !bench.options.wants("memory") {
        return rows;
    }
    eprintln!("== memory against body size");
    bench.fresh();
    for &mib in sizes {
        let spec = wheel_form(mib, false);
        for name in names {
            let Some(target) = bench.targets.iter().find(|t| t.name == *name) else {
                continue;
            };
            std::thread::sleep(Duration::from_millis(200));
            let rss_before = procfs::tree_rss_mib(target.pid);
            procfs::reset_peak_rss(target.pid);
            let outcome = bench
                .runtime
                .block_on(load::run(target.addr, vec![spec.clone()], 1, Limit::Requests(1)));
            let row = MemoryRow {
                target: target.name.to_owned(),
                body_mib: mib,
                rss_before_mib: rss_before,
                peak_rss_mib: procfs::tree_peak_rss_mib(target.pid),
                seconds: outcome.wall.as_secs_f64(),
                failed: outcome.failed,
            };
            eprintln!("   {row:?}");
            rows.push(row);
        }
    }
    rows
}

/// Reads and uploads at 16 clients while the target reloads its configuration every 100 ms:
/// the gateway its rules (file rewritten, then SIGHUP), nginx its configuration (SIGHUP).
fn reloads(bench: &mut Bench) -> Vec<ReloadRow> {
    let mut rows = Vec::new();
    if !bench.options.wants("reload") {
        return rows;
    }
    eprintln!("== reloads every 100 ms under load");
    bench.fresh();
    let Some(running) = bench.running.take() else {
        return rows;
    };
    let (gateway, nginx_pid) = (&running.policy, running.nginx.0.pid());
    let seconds = (bench.options.seconds * 5.0).max(2.0);
    let mut specs = vec![RequestSpec::get(READ_PATH); 3];
    specs.push(wheel_form(1, false));
    for name in ["nginx", "gateway full policy"] {
        let Some(target) = bench.targets.iter().find(|t| t.name == name) else {
            continue;
        };
        let reloads_before = gateway.metric("portcullis_rules_reloads_total{result=\"ok\"}");
        let stop = std::sync::atomic::AtomicBool::new(false);
        let mut signals = 0u64;
        let outcome = std::thread::scope(|scope| {
            let reloader = scope.spawn(|| {
                let mut sent = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(100));
                    if name == "nginx" {
                        let _ = std::process::Command::new("kill")
                            .args(["-HUP", &nginx_pid.to_string()])
                            .status();
                    } else {
                        gateway.write_rules(&format!("{}\n# reload {sent}\n", *targets::POLICY_RULES));
                        gateway.signal_hup();
                    }
                    sent += 1;
                }
                sent
            });
            let outcome = bench.runtime.block_on(load::run(
                target.addr,
                specs.clone(),
                16,
                Limit::For(Duration::from_secs_f64(seconds)),
            ));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            signals = reloader.join().unwrap_or(0);
            outcome
        });
        // Let the last reload land before counting.
        std::thread::sleep(Duration::from_millis(500));
        let applied = if name == "nginx" {
            None
        } else {
            Some((gateway.metric("portcullis_rules_reloads_total{result=\"ok\"}") - reloads_before) as u64)
        };
        let row = ReloadRow {
            target: name.to_owned(),
            seconds,
            reload_signals: signals,
            reloads_applied: applied,
            requests: outcome.ok,
            failed: outcome.failed,
            first_failure: outcome.first_failure.clone(),
        };
        eprintln!("   {row:?}");
        rows.push(row);
    }
    rows
}

/// Runs the trusted-publishing exchange bench (`exchange`, beside this executable) and reads
/// its results.
fn exchange(options: &Options) -> Option<serde_json::Value> {
    if !options.wants("exchange") {
        return None;
    }
    eprintln!("== OIDC exchange (bench/src/bin/exchange.rs)");
    let exe = std::env::current_exe().ok()?.with_file_name("exchange");
    let status = std::process::Command::new(exe).status().ok()?;
    if !status.success() {
        eprintln!("exchange bench failed: {status}");
        return None;
    }
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("results/exchange.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn main() {
    let mut args = std::env::args().skip(1);
    if args.next().as_deref() == Some("sink") {
        let addr = args.next().and_then(|a| a.parse().ok()).expect("bench sink ADDR");
        if let Err(e) = sink::serve(addr) {
            eprintln!("sink: {e}");
            std::process::exit(1);
        }
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("report") {
        // Rewrites bench.md and the plots from bench.json (after a change to the report).
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        let results: Results = std::fs::read_to_string(dir.join("bench.json"))
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| {
                eprintln!("bench report: reading bench/results/bench.json: {e}");
                std::process::exit(1);
            });
        match report::write(&results, &dir) {
            Ok(files) => files.iter().for_each(|f| eprintln!("wrote {}", f.display())),
            Err(e) => {
                eprintln!("bench report: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let options = Options::parse();
    assert!(procfs::available(), "bench reads /proc: run it on Linux");
    if options.placement.pinned() {
        targets::pin(std::process::id(), LOAD_CPU);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut bench = Bench {
        options,
        runtime,
        work: tempfile::tempdir().expect("tempdir"),
        started: 0,
        running: None,
        backend_pid: 0,
        targets: Vec::new(),
        rows: Vec::new(),
    };
    let proxies = [
        "direct",
        "nginx",
        "bare pingora",
        "gateway pass-through",
        "gateway full policy",
    ];
    let all = [
        "direct",
        "nginx",
        "bare pingora",
        "gateway pass-through",
        "gateway full policy",
        "gateway full policy, uncached",
    ];
    let seconds = Limit::For(Duration::from_secs_f64(bench.options.seconds));
    let read = [RequestSpec::get(READ_PATH)];
    bench.scenario("GET c=1", &proxies, &read, 1, seconds);
    bench.scenario("GET c=64", &proxies, &read, 64, seconds);
    bench.scenario("GET c=1024", &proxies, &read, 1024, seconds);
    let uploads: [UploadScenario; 4] = [
        (
            "upload 1 MiB, Content-Length, c=4",
            &proxies,
            || wheel_form(1, false),
            4,
            seconds,
        ),
        (
            "upload 1 MiB, chunked, c=4",
            &proxies,
            || wheel_form(1, true),
            4,
            seconds,
        ),
        (
            "upload 100 MiB, Content-Length, c=1",
            &proxies,
            || wheel_form(100, false),
            1,
            Limit::Requests(3),
        ),
        (
            "upload 29 KiB sdist + real PEP 740 attestation, c=4",
            &all,
            attested_form,
            4,
            seconds,
        ),
    ];
    for (name, names, spec, concurrency, limit) in uploads {
        // Bodies are built only for the scenarios that run.
        if bench.options.wants(name) {
            bench.scenario(name, names, &[spec()], concurrency, limit);
        }
    }
    let memory_rows = memory(&mut bench, &proxies, &[1, 10, 100, 500]);
    let idle_rows = idle(&mut bench, &proxies);
    let reload_rows = reloads(&mut bench);
    bench.running = None;
    let exchange = exchange(&bench.options);

    let partial = bench.options.only.is_some();
    let mut results = Results::new(
        bench.options.rounds,
        bench.options.seconds,
        bench.rows,
        idle_rows,
        memory_rows,
        reload_rows,
        exchange,
    );
    results.threads = bench.options.placement.threads;
    // A partial run (--only) must not replace the full run's results.
    let results_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
    let mut out = if partial {
        results_dir.join("partial")
    } else {
        results_dir
    };
    // Runs with more threads keep their own results beside the pinned one-thread run's.
    if !bench.options.placement.pinned() {
        out = out.join(format!("threads-{}", bench.options.placement.threads));
    }
    match report::write(&results, &out) {
        Ok(files) => {
            for f in files {
                eprintln!("wrote {}", f.display());
            }
        }
        Err(e) => {
            eprintln!("bench: writing results: {e}");
            std::process::exit(1);
        }
    }
}
