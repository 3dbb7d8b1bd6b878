//! The server under test, seen from `/proc`: CPU time used and resident
//! memory, sampled while a scenario runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Clock ticks per second in `/proc/PID/stat` (`USER_HZ`, 100 on Linux
/// whatever the kernel's own tick rate).
const USER_HZ: f64 = 100.0;

/// A process to watch, by pid.
#[derive(Debug, Clone, Copy)]
pub struct Process(pub u32);

impl Process {
    /// User plus system CPU seconds so far.
    #[must_use]
    pub fn cpu_seconds(self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0)).ok()?;
        // Fields after the command name (which may hold spaces), from the
        // state field on: utime is the 12th, stime the 13th.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / USER_HZ)
    }

    /// Resident memory now, in KiB.
    #[must_use]
    pub fn rss_kib(self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    }
}

/// Samples a process's RSS every 50 ms until dropped; keeps the peak.
pub struct Watch {
    process: Option<Process>,
    started: Instant,
    cpu_start: Option<f64>,
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// What a [`Watch`] saw.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    /// CPU cores used on average (CPU seconds over wall seconds).
    pub cpu_cores: f64,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
}

impl Watch {
    /// Starts watching (nothing is measured without a pid).
    #[must_use]
    pub fn start(process: Option<Process>) -> Self {
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(p) = process {
            let (peak, stop) = (peak_kib.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    if let Some(kib) = p.rss_kib() {
                        peak.fetch_max(kib, Relaxed);
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        Self {
            process,
            started: Instant::now(),
            cpu_start: process.and_then(Process::cpu_seconds),
            peak_kib,
            stop,
        }
    }

    /// Stops and reports.
    #[must_use]
    pub fn finish(self) -> Usage {
        let wall = self.started.elapsed().as_secs_f64();
        let cpu = match (self.process.and_then(Process::cpu_seconds), self.cpu_start) {
            (Some(end), Some(start)) if wall > 0.0 => (end - start) / wall,
            _ => 0.0,
        };
        let mut peak = self.peak_kib.load(Relaxed);
        if let Some(now) = self.process.and_then(Process::rss_kib) {
            peak = peak.max(now);
        }
        #[expect(clippy::cast_precision_loss, reason = "a figure for a table")]
        let peak_rss_mib = peak as f64 / 1024.0;
        Usage {
            cpu_cores: cpu,
            peak_rss_mib,
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The sampling thread ends with the watch, reported or not.
        self.stop.store(true, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let me = Process(std::process::id());
        assert!(me.rss_kib().unwrap() > 0);
        let start = me.cpu_seconds().unwrap();
        let mut x = 0u64;
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(200) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(me.cpu_seconds().unwrap() > start, "CPU time moved on");
    }
}
