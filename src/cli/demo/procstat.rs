//! CPU time and memory of this process from `/proc` (Linux), for the demo's summary.
//!
//! The demo runs the test source and the sink in the same process as the node, so besides
//! the process total it splits CPU time by thread: the source and sink run on a tokio
//! runtime whose threads carry a known name, everything else is the node. Threads that exit
//! take their CPU time out of the per-thread sums (the process total keeps it), so the split
//! is an estimate; the node's threads (arbiters, API workers) live for the whole run.

use std::time::Instant;

/// Clock ticks per second of the `/proc` interface (`USER_HZ`): 100 on every Linux
/// architecture, whatever the kernel's internal tick rate.
pub const USER_HZ: f64 = 100.0;

/// `utime + stime` (clock ticks) and the `comm` name from the text of a `/proc/.../stat`.
/// The name is in parentheses and may itself contain spaces and parentheses, so the fields
/// are counted from the last `)`.
pub fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?;
    // After ")": state(3) ppid(4) ... utime(14) stime(15); index 0 here is field 3.
    let mut fields = stat.get(close + 1..)?.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((comm, utime + stime))
}

/// A `kB` line of `/proc/.../status` (e.g. `VmRSS`, `VmHWM`), in KiB.
pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// CPU time consumed so far, in clock ticks.
#[derive(Debug, Clone, Copy)]
pub struct CpuSample {
    pub at: Instant,
    /// The whole process, exited threads included.
    pub process: u64,
    /// Live threads whose name starts with the tools prefix (test source and sink).
    pub tools: u64,
    /// Every other live thread (the node).
    pub node: u64,
}

/// Reads the process and per-thread CPU times; `None` where `/proc` is unavailable.
pub fn sample(tools_prefix: &str) -> Option<CpuSample> {
    let at = Instant::now();
    let process = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)?.1;
    let (mut tools, mut node) = (0, 0);
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        // A thread may exit between listing and reading: skip it.
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((comm, ticks)) = parse_stat(&text) {
            if comm.starts_with(tools_prefix) {
                tools += ticks;
            } else {
                node += ticks;
            }
        }
    }
    Some(CpuSample {
        at,
        process,
        tools,
        node,
    })
}

/// CPU used between two samples, in % of one core.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    pub process_pct: f64,
    pub node_pct: f64,
    pub tools_pct: f64,
}

impl CpuUse {
    pub fn between(a: &CpuSample, b: &CpuSample) -> Option<CpuUse> {
        let secs = b.at.checked_duration_since(a.at)?.as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        let pct = |from: u64, to: u64| to.saturating_sub(from) as f64 / USER_HZ / secs * 100.0;
        Some(CpuUse {
            process_pct: pct(a.process, b.process),
            node_pct: pct(a.node, b.node),
            tools_pct: pct(a.tools, b.tools),
        })
    }
}

/// Resident memory now and at its peak, in KiB.
pub fn rss_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    Some((
        parse_status_kib(&status, "VmRSS")?,
        parse_status_kib(&status, "VmHWM")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stat_fields_are_counted_after_the_name() {
        // A name with a space and a parenthesis, as thread names may have.
        let stat = "4242 (demo (x) y) S 1 4242 4242 0 -1 4194560 1234 0 5 0 \
                    250 75 0 0 20 0 9 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(parse_stat(stat), Some(("demo (x) y", 325)));
        assert_eq!(parse_stat("1 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn status_lines_give_kib() {
        let status = "Name:\twhep-bridge\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nThreads:\t9\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(40_960));
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(51_200));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        // A key that is a prefix of another must not match it.
        assert_eq!(parse_status_kib("VmRSSx: 1 kB\n", "VmRSS"), None);
    }

    #[test]
    fn cpu_use_is_percent_of_one_core() {
        let t0 = Instant::now();
        let a = CpuSample {
            at: t0,
            process: 1_000,
            tools: 300,
            node: 600,
        };
        let b = CpuSample {
            at: t0 + Duration::from_secs(10),
            process: 1_250,
            tools: 350,
            node: 800,
        };
        // 250 ticks = 2.5 s of CPU in 10 s = 25 % of a core.
        let u = CpuUse::between(&a, &b).unwrap();
        assert!((u.process_pct - 25.0).abs() < 1e-9);
        assert!((u.node_pct - 20.0).abs() < 1e-9);
        assert!((u.tools_pct - 5.0).abs() < 1e-9);
        assert_eq!(CpuUse::between(&b, &a), None);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let s = sample("no-such-thread-name").expect("/proc/self is readable on Linux");
        assert_eq!(s.tools, 0);
        let (rss, peak) = rss_kib().expect("VmRSS");
        assert!(rss > 0 && peak >= rss, "{rss} {peak}");
    }
}
