//! Process metrics with the standard Prometheus names (`process_*`), read from `/proc/self` at
//! scrape time: a couple of small file reads and one directory listing of open descriptors.
//!
//! The `/proc` parsers are pure and total: a field that is missing or malformed leaves that one
//! metric out of the scrape (non-Linux systems get none of them).

use super::exposition::{Exposition, Kind};
use super::metrics::names;

/// One reading.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Process {
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub start_time_seconds: Option<f64>,
    pub cpu_seconds: Option<f64>,
}

/// Fields of `/proc/self/stat` we use, in clock ticks and pages where the kernel counts so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    pub start_ticks: u64,
    pub vsize_bytes: u64,
    pub rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. The command name (field 2) may contain spaces and parentheses,
/// so fields are counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is f[n - 3].
    let n = |i: usize| f.get(i - 3)?.parse::<u64>().ok();
    Some(Stat {
        utime_ticks: n(14)?,
        stime_ticks: n(15)?,
        start_ticks: n(22)?,
        vsize_bytes: n(23)?,
        rss_pages: n(24)?,
    })
}

/// The `btime` line of `/proc/stat`: boot time in Unix seconds.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// Reads the current process' figures.
pub fn sample() -> Option<Process> {
    let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    // SAFETY: sysconf only reads a configuration value.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let ticks = u64::try_from(ticks).ok().filter(|t| *t > 0);
    let page = u64::try_from(page).ok().filter(|p| *p > 0);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|t| parse_boot_time(&t));
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    let max_fds = (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0)
        .then_some(lim.rlim_cur)
        .filter(|&l| l != libc::RLIM_INFINITY);
    Some(Process {
        resident_bytes: page.map(|p| stat.rss_pages.saturating_mul(p)),
        virtual_bytes: Some(stat.vsize_bytes),
        open_fds,
        max_fds,
        start_time_seconds: boot
            .zip(ticks)
            .map(|(b, t)| b as f64 + stat.start_ticks as f64 / t as f64),
        cpu_seconds: ticks
            .map(|t| (stat.utime_ticks.saturating_add(stat.stime_ticks)) as f64 / t as f64),
    })
}

impl Process {
    pub fn render(&self, e: &mut Exposition) {
        if let Some(v) = self.resident_bytes {
            e.single(
                names::PROCESS_RESIDENT_MEMORY,
                Kind::Gauge,
                "Resident memory size in bytes.",
                v,
            );
        }
        if let Some(v) = self.virtual_bytes {
            e.single(
                names::PROCESS_VIRTUAL_MEMORY,
                Kind::Gauge,
                "Virtual memory size in bytes.",
                v,
            );
        }
        if let Some(v) = self.open_fds {
            e.single(
                names::PROCESS_OPEN_FDS,
                Kind::Gauge,
                "Open file descriptors.",
                v,
            );
        }
        if let Some(v) = self.max_fds {
            e.single(
                names::PROCESS_MAX_FDS,
                Kind::Gauge,
                "Maximum number of open file descriptors.",
                v,
            );
        }
        if let Some(v) = self.start_time_seconds {
            e.single(
                names::PROCESS_START_TIME,
                Kind::Gauge,
                "Start time of the process since the Unix epoch, in seconds.",
                v,
            );
        }
        if let Some(v) = self.cpu_seconds {
            e.single(
                names::PROCESS_CPU_SECONDS,
                Kind::Counter,
                "Total user and system CPU time spent, in seconds.",
                v,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = "4242 (amp (x) y) S 1 4242 4242 0 -1 4194560 900 0 0 0 \
                    150 50 0 0 20 0 9 0 123456 987654321 2048 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime_ticks: 150,
                stime_ticks: 50,
                start_ticks: 123456,
                vsize_bytes: 987654321,
                rss_pages: 2048,
            })
        );
        assert_eq!(parse_stat("12 (short) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
        assert_eq!(parse_stat(""), None);
    }

    #[test]
    fn boot_time() {
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[test]
    fn this_process_can_be_read() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let p = sample().expect("a reading on Linux");
        assert!(p.resident_bytes.is_some_and(|b| b > 0));
        assert!(p.open_fds.is_some_and(|n| n > 0));
        assert!(p.start_time_seconds.is_some_and(|t| t > 1e9));
    }
}
