//! The bench's output: `bench.json` (every run), `bench.md` (the tables the README shows) and
//! PNG plots, all in `bench/results/`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::{Deserialize, Serialize};

use crate::stats::Row;

/// Idle keep-alive connections held against one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleRow {
    /// Target.
    pub target: String,
    /// Connections asked for.
    pub connections: usize,
    /// Connections opened and answered once.
    pub opened: usize,
    /// Connections that failed to open or answer.
    pub failed_to_open: u64,
    /// Seconds to open them all (256 at a time).
    pub open_seconds: f64,
    /// Target RSS before, MiB.
    pub rss_before_mib: f64,
    /// Target RSS while they are held, MiB.
    pub rss_held_mib: f64,
    /// Memory per held connection, KiB.
    pub kib_per_connection: f64,
    /// Target CPU while they idle, percent of one core.
    pub idle_cpu_percent: f64,
    /// Reads per second at 64 other clients while they are held.
    pub reads_per_second_while_held: f64,
    /// p99 of those reads, ms.
    pub read_p99_ms_while_held: f64,
    /// Failed reads meanwhile.
    pub read_failures_while_held: u64,
    /// Held connections that still answered a read afterwards.
    pub still_answering: u64,
}

/// Peak memory of one target during one upload of one size.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryRow {
    /// Target.
    pub target: String,
    /// Size of the uploaded file, MiB.
    pub body_mib: usize,
    /// RSS before, MiB.
    pub rss_before_mib: f64,
    /// Peak RSS during the upload, MiB.
    pub peak_rss_mib: f64,
    /// Seconds the upload took.
    pub seconds: f64,
    /// Failed uploads (0 or 1).
    pub failed: u64,
}

/// Load during reloads every 100 ms.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReloadRow {
    /// Target.
    pub target: String,
    /// Seconds of load.
    pub seconds: f64,
    /// Reload signals sent.
    pub reload_signals: u64,
    /// Reloads the target reports as applied (the gateway's counter), when it reports them.
    pub reloads_applied: Option<u64>,
    /// Successful requests.
    pub requests: u64,
    /// Failed requests.
    pub failed: u64,
    /// The first failure.
    pub first_failure: Option<String>,
}

/// Everything one run of the bench measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Results {
    /// When (UTC, RFC 3339).
    pub date: String,
    /// Machine facts: CPUs, model, kernel.
    pub machine: serde_json::Value,
    /// Rounds per scenario.
    pub rounds: usize,
    /// Seconds per timed run.
    pub seconds: f64,
    /// Proxy threads (nginx workers) per target; 1 is the pinned layout.
    #[serde(default = "one_thread")]
    pub threads: usize,
    /// Load scenarios.
    pub rows: Vec<Row>,
    /// Idle keep-alive connections.
    pub idle: Vec<IdleRow>,
    /// Memory against body size.
    pub memory: Vec<MemoryRow>,
    /// Reloads under load.
    pub reloads: Vec<ReloadRow>,
    /// The trusted-publishing exchange bench's results.
    pub exchange: Option<serde_json::Value>,
}

fn one_thread() -> usize {
    1
}

fn machine() -> serde_json::Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_default();
    let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let nginx = std::process::Command::new("/usr/sbin/nginx")
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default();
    serde_json::json!({"cpus": cpus, "model": model, "kernel": kernel.trim(), "nginx": nginx})
}

impl Results {
    /// Collects the parts, stamped with the date and machine (one pinned thread per target:
    /// set [`Results::threads`] for other runs).
    pub fn new(
        rounds: usize,
        seconds: f64,
        rows: Vec<Row>,
        idle: Vec<IdleRow>,
        memory: Vec<MemoryRow>,
        reloads: Vec<ReloadRow>,
        exchange: Option<serde_json::Value>,
    ) -> Results {
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Results {
            date,
            machine: machine(),
            rounds,
            seconds,
            threads: 1,
            rows,
            idle,
            memory,
            reloads,
            exchange,
        }
    }
}

fn spread(s: &crate::stats::Spread, digits: usize) -> String {
    format!("{:.d$} ({:.d$}–{:.d$})", s.median, s.min, s.max, d = digits)
}

/// The markdown tables.
pub fn markdown(results: &Results) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Measured {} on {} CPUs ({}), kernel {}, {}; {} interleaved rounds, {} s per timed run. \
         {} CPU is the \
         target's whole process tree (nginx: master and worker; direct: the backend) from \
         `/proc/<pid>/stat`; medians with the range over rounds in brackets; p50/p99 over every \
         request of every round.\n",
        results.date,
        results.machine["cpus"],
        results.machine["model"].as_str().unwrap_or(""),
        results.machine["kernel"].as_str().unwrap_or(""),
        results.machine["nginx"].as_str().unwrap_or(""),
        results.rounds,
        results.seconds,
        if results.threads == 1 {
            "Targets (one thread; nginx: one worker) and the backend pinned to core 0, the load generator to core 1."
                .to_owned()
        } else {
            format!(
                "Targets with {} threads each (nginx: {} workers), the backend and the load generator sharing every core, unpinned.",
                results.threads, results.threads
            )
        }
    );
    let mut scenarios: Vec<&str> = Vec::new();
    for row in &results.rows {
        if !scenarios.contains(&row.scenario.as_str()) {
            scenarios.push(&row.scenario);
        }
    }
    let _ = writeln!(
        md,
        "| scenario | target | req/s | × direct | × nginx | p50 ms | p99 ms | CPU µs/req | CPU ms/MiB | switches/req | peak RSS MiB | failed |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for scenario in &scenarios {
        let of = |target: &str| {
            results
                .rows
                .iter()
                .find(|r| r.scenario == *scenario && r.target == target)
                .map(|r| r.per_second.median)
        };
        let (direct, nginx) = (of("direct"), of("nginx"));
        for row in results.rows.iter().filter(|r| r.scenario == *scenario) {
            let ratio = |base: Option<f64>| {
                base.filter(|b| *b > 0.0 && row.target != "direct")
                    .map_or("–".to_owned(), |b| format!("{:.2}", row.per_second.median / b))
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {} | {} | {} | {:.1} | {} |",
                row.scenario,
                row.target,
                spread(&row.per_second, 0),
                ratio(direct),
                if row.target == "nginx" {
                    "–".to_owned()
                } else {
                    ratio(nginx)
                },
                row.p50_ms,
                row.p99_ms,
                spread(&row.cpu_us_per_request, 1),
                row.cpu_ms_per_mib.as_ref().map_or("–".to_owned(), |s| spread(s, 2)),
                spread(&row.switches_per_request, 1),
                row.peak_rss_mib,
                row.failed
            );
        }
    }
    if !results.idle.is_empty() {
        let _ = writeln!(
            md,
            "\nIdle keep-alive connections (each opened with one read, then held):\n\n\
             | target | held | failed to open | RSS before MiB | RSS held MiB | KiB/conn | idle CPU % | reads/s at c=64 while held | p99 ms | still answering |\n\
             |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in &results.idle {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.2} | {} |",
                r.target,
                r.opened,
                r.failed_to_open,
                r.rss_before_mib,
                r.rss_held_mib,
                r.kib_per_connection,
                r.idle_cpu_percent,
                r.reads_per_second_while_held,
                r.read_p99_ms_while_held,
                r.still_answering
            );
        }
    }
    if !results.memory.is_empty() {
        let _ = writeln!(
            md,
            "\nMemory against upload size (one upload at a time, Content-Length):\n\n\
             | target | file MiB | RSS before MiB | peak RSS MiB | seconds | failed |\n|---|---:|---:|---:|---:|---:|"
        );
        for r in &results.memory {
            let _ = writeln!(
                md,
                "| {} | {} | {:.1} | {:.1} | {:.2} | {} |",
                r.target, r.body_mib, r.rss_before_mib, r.peak_rss_mib, r.seconds, r.failed
            );
        }
    }
    if !results.reloads.is_empty() {
        let _ = writeln!(
            md,
            "\nReloads every 100 ms under load (16 clients: 3 reads to 1 upload of 1 MiB):\n\n\
             | target | seconds | reload signals | reloads applied | requests | failed | first failure |\n|---|---:|---:|---:|---:|---:|---|"
        );
        for r in &results.reloads {
            let _ = writeln!(
                md,
                "| {} | {:.0} | {} | {} | {} | {} | {} |",
                r.target,
                r.seconds,
                r.reload_signals,
                r.reloads_applied.map_or("–".to_owned(), |n| n.to_string()),
                r.requests,
                r.failed,
                r.first_failure.as_deref().unwrap_or("")
            );
        }
    }
    if let Some(rows) = results.exchange.as_ref().and_then(|e| e["rows"].as_array()) {
        let _ = writeln!(
            md,
            "\nOIDC exchanges (`POST /_/oidc/mint-token`, a fresh ID token each, one connection each; gateway only):\n\n\
             | concurrency | exchanges | failed | exchanges/s | p50 ms | p99 ms | gateway CPU µs/exchange |\n|---:|---:|---:|---:|---:|---:|---:|"
        );
        for r in rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {:.2} | {:.2} | {:.0} |",
                r["concurrency"],
                r["exchanges"],
                r["failed"],
                r["per_second"].as_f64().unwrap_or(0.0),
                r["p50_ms"].as_f64().unwrap_or(0.0),
                r["p99_ms"].as_f64().unwrap_or(0.0),
                r["gateway_cpu_us_per_exchange"].as_f64().unwrap_or(0.0)
            );
        }
    }
    md
}

/// Registers a system font for the plots' text (plotters draws text with ab_glyph).
fn register_font() -> Result<(), String> {
    let candidates = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ];
    let path = candidates
        .iter()
        .find(|p| Path::new(p).exists())
        .ok_or("no TrueType font found for the plots (apt-get install fonts-dejavu-core)")?;
    let bytes: &'static [u8] = Box::leak(std::fs::read(path).map_err(|e| e.to_string())?.into_boxed_slice());
    plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| "the font could not be read".to_owned())
}

const COLOURS: [RGBColor; 6] = [
    RGBColor(90, 90, 90),
    RGBColor(0, 150, 57),
    RGBColor(148, 103, 189),
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
];

/// A grouped bar chart: one group per scenario, one bar per target (median, with the range
/// over rounds as a whisker).
fn bars(
    path: &Path,
    title: &str,
    y_label: &str,
    groups: &[(String, Vec<(String, crate::stats::Spread)>)],
) -> Result<(), String> {
    let targets: Vec<String> = {
        let mut t: Vec<String> = Vec::new();
        for (_, bars) in groups {
            for (name, _) in bars {
                if !t.contains(name) {
                    t.push(name.clone());
                }
            }
        }
        t
    };
    let top = groups
        .iter()
        .flat_map(|(_, b)| b.iter().map(|(_, s)| s.max))
        .fold(0.0, f64::max)
        * 1.5;
    let root = BitMapBackend::new(path, (1200, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let slots = targets.len() + 1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..(groups.len() * slots) as f64, 0f64..top.max(1e-9))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(y_label)
        .x_labels(0)
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (t, target) in targets.iter().enumerate() {
        let colour = COLOURS[t % COLOURS.len()];
        let mut rects = Vec::new();
        let mut whiskers = Vec::new();
        for (g, (_, bars)) in groups.iter().enumerate() {
            if let Some((_, s)) = bars.iter().find(|(n, _)| n == target) {
                let x0 = (g * slots + t) as f64 + 0.5;
                rects.push(Rectangle::new([(x0, 0.0), (x0 + 0.9, s.median)], colour.filled()));
                let mid = x0 + 0.45;
                whiskers.push(PathElement::new(
                    vec![(mid, s.min), (mid, s.max)],
                    BLACK.stroke_width(2),
                ));
            }
        }
        chart
            .draw_series(rects)
            .map_err(|e| e.to_string())?
            .label(target.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
        chart.draw_series(whiskers).map_err(|e| e.to_string())?;
    }
    // Each group's name, centred above its bars (the top third is the legend's).
    let names = groups.iter().enumerate().map(|(g, (name, _))| {
        let centre = (g * slots) as f64 + targets.len() as f64 / 2.0 + 0.45;
        Text::new(
            name.clone(),
            (centre, top * 0.72),
            TextStyle::from(("sans-serif", 17).into_font()).pos(Pos::new(HPos::Center, VPos::Center)),
        )
    });
    chart.draw_series(names).map_err(|e| e.to_string())?;
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

/// Peak RSS against upload size, one line per target.
fn memory_plot(path: &Path, rows: &[MemoryRow]) -> Result<(), String> {
    let mut targets: Vec<&str> = Vec::new();
    for r in rows {
        if !targets.contains(&r.target.as_str()) {
            targets.push(&r.target);
        }
    }
    let max_x = rows.iter().map(|r| r.body_mib).max().unwrap_or(1) as f64;
    let max_y = rows.iter().map(|r| r.peak_rss_mib).fold(0.0, f64::max) * 1.2;
    let root = BitMapBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Peak RSS during one upload, by file size", ("sans-serif", 24))
        .margin(15)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d((1f64..max_x * 1.5).log_scale(), 0f64..max_y.max(1.0))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("uploaded file, MiB (log scale)")
        .y_desc("peak RSS of the target, MiB")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| e.to_string())?;
    for (t, target) in targets.iter().enumerate() {
        let colour = COLOURS[t % COLOURS.len()];
        let points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.target == *target)
            .map(|r| (r.body_mib as f64, r.peak_rss_mib))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(3)))
            .map_err(|e| e.to_string())?
            .label(target.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(3)));
        chart
            .draw_series(points.into_iter().map(|p| Circle::new(p, 4, colour.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())
}

fn groups(
    results: &Results,
    filter: impl Fn(&Row) -> bool,
    value: impl Fn(&Row) -> Option<crate::stats::Spread>,
    label: impl Fn(&str) -> String,
) -> Vec<(String, Vec<(String, crate::stats::Spread)>)> {
    let mut out: Vec<(String, Vec<(String, crate::stats::Spread)>)> = Vec::new();
    for row in results.rows.iter().filter(|r| filter(r)) {
        let Some(v) = value(row) else { continue };
        let name = label(&row.scenario);
        match out.iter_mut().find(|(g, _)| *g == name) {
            Some((_, bars)) => bars.push((row.target.clone(), v)),
            None => out.push((name, vec![(row.target.clone(), v)])),
        }
    }
    out
}

/// Writes `bench.json`, `bench.md` and the plots into `dir`; the files written.
pub fn write(results: &Results, dir: &Path) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut written = Vec::new();
    let json = dir.join("bench.json");
    let text = serde_json::to_string_pretty(results).map_err(|e| e.to_string())?;
    std::fs::write(&json, text).map_err(|e| e.to_string())?;
    written.push(json);
    let md = dir.join("bench.md");
    std::fs::write(&md, markdown(results)).map_err(|e| e.to_string())?;
    written.push(md);

    register_font()?;
    let short = |s: &str| s.split(',').next().unwrap_or(s).to_owned();
    let reads = groups(
        results,
        |r| r.scenario.starts_with("GET"),
        |r| Some(r.cpu_us_per_request),
        |s| s.to_owned(),
    );
    if !reads.is_empty() {
        let p = dir.join("get-cpu-per-request.png");
        bars(&p, "Small GET: target CPU per request", "CPU µs per request", &reads)?;
        written.push(p);
        let throughput = groups(
            results,
            |r| r.scenario.starts_with("GET"),
            |r| Some(r.per_second),
            |s| s.to_owned(),
        );
        let p = dir.join("get-throughput.png");
        bars(
            &p,
            "Small GET: requests per second (load generator on the other core)",
            "requests/s",
            &throughput,
        )?;
        written.push(p);
    }
    let uploads = groups(
        results,
        |r| r.scenario.starts_with("upload") && !r.scenario.contains("attestation"),
        |r| r.cpu_ms_per_mib,
        |s| {
            let chunked = if s.contains("chunked") { " chunked" } else { "" };
            format!("{}{chunked}", short(s))
        },
    );
    if !uploads.is_empty() {
        let p = dir.join("upload-cpu-per-mib.png");
        bars(&p, "Uploads: target CPU per MiB of body", "CPU ms per MiB", &uploads)?;
        written.push(p);
    }
    let attested = groups(
        results,
        |r| r.scenario.contains("attestation"),
        |r| Some(r.cpu_us_per_request),
        |_| "29 KiB sdist + PEP 740 attestation".to_owned(),
    );
    if !attested.is_empty() {
        let p = dir.join("attested-upload-cpu.png");
        bars(
            &p,
            "Attested upload: target CPU per upload",
            "CPU µs per upload",
            &attested,
        )?;
        written.push(p);
    }
    if !results.memory.is_empty() {
        let p = dir.join("memory-vs-upload-size.png");
        memory_plot(&p, &results.memory)?;
        written.push(p);
    }
    Ok(written)
}
