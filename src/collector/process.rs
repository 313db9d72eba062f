//! The exporter's own `process_*` metrics, under the names every Prometheus client library uses
//! (CPU, memory, file descriptors, threads, start time).
//!
//! Read at scrape time with as few system calls as the values allow: `/proc/self/stat` and the
//! `/proc/self/fd` directory are opened once and read again at every scrape (procfs regenerates
//! them; the directory's size is the descriptor count on Linux >= 6.2), and `getrlimit` gives the
//! descriptor limit. This replaces the `prometheus`
//! crate's process collector, which opened both again and also read and parsed
//! `/proc/self/limits` at every scrape (about half of a scrape's cost in the benchmark, see
//! BENCHMARKS.md) and brought in the `procfs` crate. `process_open_fds` counts the two
//! descriptors held here.
//!
//! Why not the crate's collector, at realistic scrape rates (one scrape per 15 s) where its cost
//! does not matter: a measurement of what it reports. It counts `process_cpu_seconds_total` in
//! whole seconds (an `IntCounter` of `(utime + stime) / ticks`), and this exporter uses about
//! 12 µs of CPU per second at the default intervals (0.35 ms per 30 s IMDS run, BENCHMARKS.md):
//! the crate's counter would stay at 0 for about a day, and `rate()` of it would read 0 for an
//! exporter that is working. This one keeps the fraction of a second.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{MetricFamily, MetricType};

use crate::metrics::{desc, family};

/// The fields of `/proc/self/stat` this collector reads, in their units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcStat {
    pub cpu_seconds: f64,
    pub threads: f64,
    /// Start time in clock ticks after boot.
    pub start_ticks: u64,
    pub virtual_bytes: f64,
    pub resident_bytes: f64,
}

/// Parses `/proc/<pid>/stat` (proc(5)). The command name may hold spaces and parentheses, so
/// the fields are counted from the last `)`.
pub fn parse_stat(text: &str, clock_ticks: f64, page_size: f64) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    // Field 3 (state) is the first after the name; proc(5) numbers fields from 1.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    Some(ProcStat {
        cpu_seconds: (field(14)? + field(15)?) as f64 / clock_ticks,
        threads: field(20)? as f64,
        start_ticks: field(22)?,
        virtual_bytes: field(23)? as f64,
        resident_bytes: field(24)? as f64 * page_size,
    })
}

/// `btime` of `/proc/stat`: boot time in Unix seconds.
pub fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

pub struct ProcessMetrics {
    descs: Vec<Desc>,
    /// `/proc/self/stat`, read with `pread` at offset 0.
    stat: Option<File>,
    /// `/proc/self/fd`, listed again from the start under the lock (the offset is shared).
    fd_dir: Option<Mutex<File>>,
    clock_ticks: f64,
    page_size: f64,
    /// Unix seconds; `None` if `/proc` could not tell.
    start_time: Option<f64>,
}

impl ProcessMetrics {
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions.
        let (ticks, page) = unsafe {
            (
                libc::sysconf(libc::_SC_CLK_TCK),
                libc::sysconf(libc::_SC_PAGESIZE),
            )
        };
        let clock_ticks = if ticks > 0 { ticks as f64 } else { 100.0 };
        let page_size = if page > 0 { page as f64 } else { 4096.0 };
        let stat = File::open("/proc/self/stat").ok();
        let fd_dir = File::open("/proc/self/fd").ok().map(Mutex::new);
        let start_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|t| parse_boot_time(&t))
            .zip(read_stat(stat.as_ref(), clock_ticks, page_size))
            .map(|(boot, stat)| boot as f64 + stat.start_ticks as f64 / clock_ticks);
        let descs = vec![
            desc(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                &[],
            ),
            desc("process_open_fds", "Number of open file descriptors.", &[]),
            desc(
                "process_max_fds",
                "Maximum number of open file descriptors.",
                &[],
            ),
            desc(
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes.",
                &[],
            ),
            desc(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                &[],
            ),
            desc(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                &[],
            ),
            desc(
                "process_threads",
                "Number of OS threads in the process.",
                &[],
            ),
        ];
        Self {
            descs,
            stat,
            fd_dir,
            clock_ticks,
            page_size,
            start_time,
        }
    }
}

impl Default for ProcessMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn read_stat(file: Option<&File>, clock_ticks: f64, page_size: f64) -> Option<ProcStat> {
    // One line of about 300 bytes; 52 numeric fields of at most 20 digits fit in 1 KiB (plus the
    // command name, at most 64 bytes).
    let mut buf = [0u8; 1536];
    let n = file?.read_at(&mut buf, 0).ok()?;
    parse_stat(std::str::from_utf8(&buf[..n]).ok()?, clock_ticks, page_size)
}

/// Open file descriptors. Since Linux 6.2 the size of `/proc/self/fd` is their number, one
/// `fstat` away; older kernels report 0, and the directory is then listed from the start (which
/// costs a dentry per descriptor: a third of a scrape's CPU with 30 connections open).
fn open_fds(dir: Option<&Mutex<File>>) -> Option<f64> {
    let dir = dir?.lock().ok()?;
    if let Ok(meta) = dir.metadata()
        && meta.len() > 0
    {
        return Some(meta.len() as f64);
    }
    let fd = dir.as_raw_fd();
    // SAFETY: `fd` is an open directory owned by `dir`, which the lock keeps alive and to
    // ourselves; `buf` is writable for its whole length.
    unsafe {
        if libc::lseek(fd, 0, libc::SEEK_SET) != 0 {
            return None;
        }
        let mut buf = [0u8; 4096];
        let mut count = 0u64;
        loop {
            let n = libc::syscall(libc::SYS_getdents64, fd, buf.as_mut_ptr(), buf.len());
            if n < 0 {
                return None;
            }
            if n == 0 {
                break;
            }
            count += count_fd_entries(&buf[..n as usize]);
        }
        Some(count as f64)
    }
}

/// Counts the `linux_dirent64` records in `buf` (getdents64(2)), `.` and `..` excluded.
fn count_fd_entries(buf: &[u8]) -> u64 {
    // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
    const NAME: usize = 19;
    let mut count = 0;
    let mut at = 0;
    while at + NAME < buf.len() {
        let reclen = usize::from(u16::from_ne_bytes([buf[at + 16], buf[at + 17]]));
        if reclen == 0 {
            break;
        }
        if buf[at + NAME] != b'.' {
            count += 1;
        }
        at += reclen;
    }
    count
}

fn max_fds() -> Option<f64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid, writable `struct rlimit`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur as f64)
}

impl Collector for ProcessMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let d = &self.descs;
        let one = |i: usize, kind: MetricType, v: Option<f64>| {
            v.map(|v| family(&d[i], kind, vec![(vec![], v)]))
        };
        let stat = read_stat(self.stat.as_ref(), self.clock_ticks, self.page_size);
        [
            one(0, MetricType::COUNTER, stat.map(|s| s.cpu_seconds)),
            one(1, MetricType::GAUGE, open_fds(self.fd_dir.as_ref())),
            one(2, MetricType::GAUGE, max_fds()),
            one(3, MetricType::GAUGE, stat.map(|s| s.virtual_bytes)),
            one(4, MetricType::GAUGE, stat.map(|s| s.resident_bytes)),
            one(5, MetricType::GAUGE, self.start_time),
            one(6, MetricType::GAUGE, stat.map(|s| s.threads)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis, as proc(5) allows.
        let line = "4242 (imds (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 3 0 \
                    12345 10485760 1536 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(line, 100.0, 4096.0).expect("parses");
        assert_eq!(
            s,
            ProcStat {
                cpu_seconds: 3.0,
                threads: 3.0,
                start_ticks: 12345,
                virtual_bytes: 10_485_760.0,
                resident_bytes: 1536.0 * 4096.0,
            }
        );
    }

    #[test]
    fn truncated_stat_lines_are_refused() {
        assert_eq!(parse_stat("4242 (imds) S 1 2 3", 100.0, 4096.0), None);
        assert_eq!(parse_stat("no parenthesis", 100.0, 4096.0), None);
    }

    #[test]
    fn the_listing_and_the_directory_size_agree() {
        let m = ProcessMetrics::new();
        let dir = m.fd_dir.as_ref().unwrap().lock().unwrap();
        let size = dir.metadata().unwrap().len();
        if size == 0 {
            return; // a kernel older than 6.2: only the listing counts
        }
        let listed = std::fs::read_dir("/proc/self/fd").unwrap().count() as u64;
        // read_dir holds one more descriptor; other tests open and close some concurrently.
        assert!(
            listed.abs_diff(size + 1) <= 4,
            "listed {listed}, size {size}"
        );
    }

    #[test]
    fn open_fds_follow_opens_and_closes() {
        let m = ProcessMetrics::new();
        let before = open_fds(m.fd_dir.as_ref()).expect("listing");
        // Other tests in this process open and close descriptors concurrently (sockets, a
        // simulator): 200 files dwarf them, and the bounds leave them 100 either way.
        let files: Vec<File> = (0..200)
            .map(|_| File::open("/proc/self/stat").unwrap())
            .collect();
        let during = open_fds(m.fd_dir.as_ref()).unwrap();
        assert!(during >= before + 100.0, "{before} -> {during}");
        drop(files);
        let after = open_fds(m.fd_dir.as_ref()).unwrap();
        assert!(after <= during - 100.0, "{during} -> {after}");
    }

    #[test]
    fn boot_time_comes_from_btime() {
        let text = "cpu  1 2 3 4\nintr 5\nbtime 1700000000\nprocesses 9\n";
        assert_eq!(parse_boot_time(text), Some(1_700_000_000));
        assert_eq!(parse_boot_time("cpu 1\n"), None);
    }

    #[test]
    fn this_process_is_described_by_all_seven_families() {
        let families = ProcessMetrics::new().collect();
        let names: Vec<&str> = families.iter().map(|f| f.name()).collect();
        assert_eq!(
            names,
            [
                "process_cpu_seconds_total",
                "process_open_fds",
                "process_max_fds",
                "process_virtual_memory_bytes",
                "process_resident_memory_bytes",
                "process_start_time_seconds",
                "process_threads",
            ]
        );
        let value = |name: &str| {
            let f = families.iter().find(|f| f.name() == name).unwrap();
            f.get_metric()[0].get_gauge().get_value()
        };
        assert!(value("process_resident_memory_bytes") > 0.0);
        assert!(value("process_open_fds") >= 3.0);
        assert!(value("process_threads") >= 1.0);
        assert!(value("process_start_time_seconds") > 1.5e9);
    }
}
