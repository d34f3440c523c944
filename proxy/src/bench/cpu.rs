//! CPU time of the proxy's own threads (the `weir-worker-*` threads), from `/proc/self/task`,
//! so a benchmark that runs upstream and load generator in the same process still charges the
//! proxy only for its own work. Linux only; elsewhere it reads zero.

use std::time::Duration;

fn ticks_per_second() -> f64 {
    // USER_HZ is 100 on every Linux this project targets.
    100.0
}

/// Total user+system CPU time of this process's threads whose name starts with `prefix`.
pub fn threads_cpu(prefix: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return Duration::ZERO;
    };
    let mut ticks: u64 = 0;
    for entry in dir.flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !comm.trim_end().starts_with(prefix) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // Fields after the `(comm)`: state is field 3; utime/stime are fields 14 and 15.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ut: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
        let st: u64 = fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
        ticks += ut + st;
    }
    Duration::from_secs_f64(ticks as f64 / ticks_per_second())
}

/// Peak resident set size of this process in bytes (`VmHWM`).
pub fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}
