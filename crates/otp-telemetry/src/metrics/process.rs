//! The standard `process_*` metrics that every Prometheus client exports
//! (CPU seconds, resident memory, open and maximum file descriptors,
//! threads, start time), read from `/proc/self` at each scrape. On a
//! system without `/proc` they stay at zero.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{Counter, Gauge, IntGauge};

/// `/proc` reports CPU time in USER_HZ ticks, which Linux fixes at 100
/// for user space on every architecture.
const TICKS_PER_SECOND: f64 = 100.0;

pub struct ProcessMetrics {
    cpu: Counter,
    resident: IntGauge,
    virtual_memory: IntGauge,
    open_fds: IntGauge,
    max_fds: IntGauge,
    threads: IntGauge,
    start_time: Gauge,
}

impl ProcessMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let metrics = ProcessMetrics {
            cpu: Counter::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            )?,
            resident: IntGauge::new(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
            )?,
            virtual_memory: IntGauge::new(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
            )?,
            open_fds: IntGauge::new("process_open_fds", "Number of open file descriptors.")?,
            max_fds: IntGauge::new(
                "process_max_fds",
                "Maximum number of open file descriptors (the soft limit).",
            )?,
            threads: IntGauge::new("process_threads", "Number of OS threads in the process.")?,
            start_time: Gauge::new(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
            )?,
        };
        metrics.start_time.set(start_time().unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64())
        }));
        metrics.refresh();
        Ok(metrics)
    }

    pub fn collectors(&self) -> Vec<Box<dyn Collector>> {
        vec![
            Box::new(self.cpu.clone()),
            Box::new(self.resident.clone()),
            Box::new(self.virtual_memory.clone()),
            Box::new(self.open_fds.clone()),
            Box::new(self.max_fds.clone()),
            Box::new(self.threads.clone()),
            Box::new(self.start_time.clone()),
        ]
    }

    /// Reads `/proc/self` into the gauges.
    pub fn refresh(&self) {
        if let Some(stat) = Stat::read() {
            let cpu = stat.cpu_ticks as f64 / TICKS_PER_SECOND;
            let delta = cpu - self.cpu.get();
            if delta > 0.0 {
                self.cpu.inc_by(delta);
            }
        }
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            for line in status.lines() {
                let kib = |l: &str| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<i64>().ok())
                };
                if line.starts_with("VmRSS:") {
                    if let Some(k) = kib(line) {
                        self.resident.set(k * 1024);
                    }
                } else if line.starts_with("VmSize:") {
                    if let Some(k) = kib(line) {
                        self.virtual_memory.set(k * 1024);
                    }
                } else if line.starts_with("Threads:") {
                    if let Some(n) = kib(line) {
                        self.threads.set(n);
                    }
                }
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle itself is one of the entries.
            let n = dir.count().saturating_sub(1);
            self.open_fds.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Some(max) = max_open_files() {
            self.max_fds.set(max);
        }
    }
}

struct Stat {
    cpu_ticks: u64,
    start_ticks: u64,
}

impl Stat {
    /// `/proc/self/stat`; fields counted after the `)` that closes the
    /// command name (which may hold spaces).
    fn read() -> Option<Stat> {
        let text = std::fs::read_to_string("/proc/self/stat").ok()?;
        let rest = &text[text.rfind(')')? + 1..];
        // rest starts at field 3 (state); utime is field 14, stime 15,
        // starttime 22.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        Some(Stat {
            cpu_ticks: field(14)? + field(15)?,
            start_ticks: field(22)?,
        })
    }
}

/// Boot time (`btime` of `/proc/stat`) plus the process's start ticks.
fn start_time() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let boot: f64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + Stat::read()?.start_ticks as f64 / TICKS_PER_SECOND)
}

fn max_open_files() -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
