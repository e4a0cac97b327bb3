//! What a target's processes cost, read from `/proc`: CPU time from `/proc/<pid>/stat`, resident
//! and peak memory from `/proc/<pid>/status`, for a process and all its descendants (nginx's
//! master and workers count as one target).

use std::path::Path;

/// Clock ticks per second of `/proc/<pid>/stat`'s CPU fields (`sysconf(_SC_CLK_TCK)`, 100 on
/// every Linux this runs on).
const TICKS_PER_SECOND: f64 = 100.0;

/// The fields of `/proc/<pid>/stat` after the command name (which may contain spaces).
fn stat_fields(pid: u32) -> Vec<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace().map(str::to_owned).collect()
}

/// User plus system CPU seconds of one process (all its threads, live and exited).
pub fn cpu_seconds(pid: u32) -> f64 {
    let fields = stat_fields(pid);
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 11 and 12 after the name.
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

/// `pid` and every live descendant of it.
pub fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            // ppid is field 4 of stat: 1 after the name.
            if let Some(parent) = stat_fields(child).get(1).and_then(|p| p.parse::<u32>().ok()) {
                parents.push((child, parent));
            }
        }
    }
    let mut found = vec![pid];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        index += 1;
    }
    found
}

/// CPU seconds of a process tree.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    tree(pid).into_iter().map(cpu_seconds).sum()
}

/// Context switches (voluntary and not) of every live thread of a process tree, from each
/// thread's `/proc/<pid>/task/<tid>/status`: the hand-offs between threads (a query sent to
/// SQLite's worker thread and its answer) and the sleeps on I/O that CPU time alone hides.
pub fn tree_context_switches(pid: u32) -> u64 {
    let mut total = 0;
    for p in tree(pid) {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{p}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            total += status
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                })
                .filter_map(|v| v.trim().parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    total
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`), 0 when absent.
fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Resident memory of a process tree, MiB.
pub fn tree_rss_mib(pid: u32) -> f64 {
    tree(pid).into_iter().map(|p| status_kib(p, "VmRSS")).sum::<u64>() as f64 / 1024.0
}

/// Sum of the peak resident memory (`VmHWM`) of a process tree since the last
/// [`reset_peak_rss`], MiB.
pub fn tree_peak_rss_mib(pid: u32) -> f64 {
    tree(pid).into_iter().map(|p| status_kib(p, "VmHWM")).sum::<u64>() as f64 / 1024.0
}

/// Resets the peak resident memory of a process tree to its current resident memory (writes 5
/// to `/proc/<pid>/clear_refs`; needs to own the processes or be root).
pub fn reset_peak_rss(pid: u32) {
    for p in tree(pid) {
        let _ = std::fs::write(format!("/proc/{p}/clear_refs"), "5");
    }
}

/// Open file descriptors of one process.
pub fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Whether `/proc` is there to read (Linux).
pub fn available() -> bool {
    Path::new("/proc/self/stat").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_memory_and_itself_in_its_tree() {
        let me = std::process::id();
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed().as_millis() < 50 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(cpu_seconds(me) > 0.0);
        assert!(tree(me).contains(&me));
        assert!(tree_rss_mib(me) > 0.0);
        assert!(tree_peak_rss_mib(me) >= tree_rss_mib(me) * 0.9);
        let switches = tree_context_switches(me);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(tree_context_switches(me) > switches, "a sleep is a voluntary switch");
        assert!(open_fds(me) >= 3);
    }

    #[test]
    fn a_child_is_in_the_tree() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().expect("sleep");
        let found = tree(std::process::id());
        let _ = child.kill();
        let _ = child.wait();
        assert!(found.contains(&child.id()));
    }
}
