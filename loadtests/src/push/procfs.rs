//! A process's CPU time and resident memory, and the machine's free memory, from `/proc`.

use std::time::Duration;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
pub fn clk_tck() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// utime + stime of `pid`, in clock ticks; `None` once the process is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing ')' are plain.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of the whole line are utime and stime: 12 and 13 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`, ...).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_field(&status, field)
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS")
}

/// Open file descriptors of `pid`.
pub fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd")).ok().map(|d| d.count())
}

/// A `/proc/meminfo` field in KiB (`MemAvailable`, `MemTotal`).
pub fn meminfo_kib(field: &str) -> Option<u64> {
    kib_field(&std::fs::read_to_string("/proc/meminfo").ok()?, field)
}

fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// CPU ticks of a set of processes at one moment, to difference later.
#[derive(Debug, Clone, Default)]
pub struct CpuMark(pub Vec<(u32, Option<u64>)>);

impl CpuMark {
    pub fn take(pids: &[u32]) -> Self {
        Self(pids.iter().map(|&p| (p, cpu_ticks(p))).collect())
    }

    /// CPU seconds each process used since `self` (0 for a process gone or unknown).
    pub fn seconds_since(&self, tck: u64) -> Vec<f64> {
        self.0
            .iter()
            .map(|&(pid, before)| match (before, cpu_ticks(pid)) {
                (Some(b), Some(a)) => a.saturating_sub(b) as f64 / tck as f64,
                _ => 0.0,
            })
            .collect()
    }
}

/// Waits `d`, then the RSS of each pid (KiB; 0 when unknown).
pub async fn settled_rss(pids: &[u32], d: Duration) -> Vec<u64> {
    tokio::time::sleep(d).await;
    pids.iter().map(|&p| rss_kib(p).unwrap_or(0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_memory() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(rss_kib(me).unwrap_or(0) > 0);
        assert!(meminfo_kib("MemAvailable").unwrap_or(0) > 0);
        assert_eq!(kib_field("VmRSS:\t  1234 kB\nVmHWM: 9 kB\n", "VmRSS"), Some(1234));
        assert_eq!(kib_field("VmRSS:\t  1234 kB\n", "VmHWM"), None);
    }
}
