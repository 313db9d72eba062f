//! NIC statistics through the legacy ethtool ioctl (`SIOCETHTOOL`), the same numbers
//! `ethtool -S IFACE` prints, and the mapping of the ENA driver's allowance counters.
//!
//! Owns: listing interfaces, validating an interface name, the three ioctls (`ETHTOOL_GSSET_INFO`
//! for the count, `ETHTOOL_GSTRINGS` for the names, `ETHTOOL_GSTATS` for the values) and picking
//! the allowance counters out of the result.
//! Does not own: the interface filter (`--collector.ethtool.interfaces`), metrics, or logging.
//! Linux only; it sees the interfaces of the network namespace it runs in, so on Kubernetes it
//! needs `hostNetwork: true` to see the node's ENA interfaces. None of these ioctls needs a
//! capability.
//!
//! The allowance counters exist in the ENA driver from 2.2.10 on (older drivers, and every
//! non-ENA interface, simply lack the names: [`AllowanceCounters`] fields are then `None`).
//! `linklocal_allowance_exceeded` counts packets dropped because the instance exceeded the
//! 1024 packets/s shared by IMDS, Route 53 Resolver DNS and the Amazon Time Sync Service.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// From <linux/ethtool.h> and <linux/sockios.h>; stable kernel ABI.
const ETHTOOL_GSTRINGS: u32 = 0x0000_001b;
const ETHTOOL_GSTATS: u32 = 0x0000_001d;
const ETHTOOL_GSSET_INFO: u32 = 0x0000_0037;
const ETH_SS_STATS: u32 = 1;
const ETH_GSTRING_LEN: usize = 32;

/// Spare entries allocated beyond the count we were told. Kernels before the fix of
/// December 2025 ("ethtool: Avoid overflowing userspace buffer on stats query") ignore the
/// length we pass and write as many entries as the driver has *now*; if the driver grew its list
/// between our calls (an `ethtool -L` changing the queue count adds per-queue stats), a buffer
/// of exactly the old size would be overrun. 4096 covers any queue-count change on ENA (at most
/// a few dozen stats per queue) for 160 KiB per read. Fixed kernels return a length of 0
/// instead; both cases end in a retry.
const HEADROOM_ENTRIES: usize = 4096;
const ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum EthtoolError {
    #[error("invalid interface name {0:?}")]
    InvalidName(String),
    /// The driver has no statistics (EOPNOTSUPP, or a count of zero), as for `lo`. Callers skip
    /// such interfaces silently.
    #[error("interface has no ethtool statistics")]
    NotSupported,
    /// ENODEV: the interface went away between listing and reading (a veth of a deleted pod).
    #[error("no such interface")]
    NoSuchInterface,
    #[error("ethtool {op} failed: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// The ENA allowance counters, cumulative since the driver loaded; `None` where the driver
/// does not expose the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AllowanceCounters {
    pub linklocal: Option<u64>,
    pub bw_in: Option<u64>,
    pub bw_out: Option<u64>,
    pub pps: Option<u64>,
    pub conntrack: Option<u64>,
}

impl AllowanceCounters {
    /// True when none of the counters is present, i.e. not an ENA interface (or ENA < 2.2.10).
    pub fn is_empty(&self) -> bool {
        *self == AllowanceCounters::default()
    }
}

/// Picks the ENA allowance counters out of `ethtool -S` style statistics.
pub fn allowance_counters(stats: &[(String, u64)]) -> AllowanceCounters {
    let mut counters = AllowanceCounters::default();
    for (name, value) in stats {
        let slot = match name.as_str() {
            "linklocal_allowance_exceeded" => &mut counters.linklocal,
            "bw_in_allowance_exceeded" => &mut counters.bw_in,
            "bw_out_allowance_exceeded" => &mut counters.bw_out,
            "pps_allowance_exceeded" => &mut counters.pps,
            "conntrack_allowance_exceeded" => &mut counters.conntrack,
            _ => continue,
        };
        *slot = Some(*value);
    }
    counters
}

/// Interface names in this network namespace, sorted.
pub fn list_interfaces() -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir("/sys/class/net")? {
        let entry = entry?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The statistics of `interface`, in the driver's order, as `ethtool -S` shows them.
pub fn read_stats(interface: &str) -> Result<Vec<(String, u64)>, EthtoolError> {
    let name = ifname(interface)?;
    // SAFETY: plain socket(2) call; the result is checked before it is wrapped.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(EthtoolError::Io {
            op: "socket",
            source: io::Error::last_os_error(),
        });
    }
    // SAFETY: fd is a freshly created descriptor that nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };

    for _ in 0..ATTEMPTS {
        let count = stats_count(&socket, &name)?;
        if count == 0 {
            return Err(EthtoolError::NotSupported);
        }
        let Some(names) = stat_names(&socket, &name, count)? else {
            continue;
        };
        let Some(values) = stat_values(&socket, &name, count)? else {
            continue;
        };
        return Ok(names.into_iter().zip(values).collect());
    }
    Err(EthtoolError::Io {
        op: "GSTATS",
        source: io::Error::other("the number of statistics kept changing"),
    })
}

fn ifname(interface: &str) -> Result<[libc::c_char; libc::IFNAMSIZ], EthtoolError> {
    let bytes = interface.as_bytes();
    // The kernel's names are at most IFNAMSIZ - 1 bytes plus a NUL, and never contain '/'.
    if bytes.is_empty()
        || bytes.len() >= libc::IFNAMSIZ
        || bytes.contains(&0)
        || bytes.contains(&b'/')
    {
        return Err(EthtoolError::InvalidName(interface.to_owned()));
    }
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    for (dst, &src) in name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(name)
}

/// A zeroed buffer with the alignment of u64, as `struct ethtool_stats` (u64 data after an 8-byte
/// header) and `struct ethtool_sset_info` (u64 mask) need; the kernel writes a flexible array
/// member past the header, so the buffer is sized for header plus entries.
struct Buffer(Vec<u64>);

impl Buffer {
    fn with_bytes(len: usize) -> Buffer {
        Buffer(vec![0; len.div_ceil(8)])
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: any u64 memory is valid as bytes; the length covers exactly the Vec.
        unsafe { std::slice::from_raw_parts(self.0.as_ptr().cast::<u8>(), self.0.len() * 8) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and any byte pattern is a valid u64.
        unsafe {
            std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast::<u8>(), self.0.len() * 8)
        }
    }

    fn put_u32(&mut self, offset: usize, value: u32) {
        self.bytes_mut()[offset..offset + 4].copy_from_slice(&value.to_ne_bytes());
    }

    fn u32_at(&self, offset: usize) -> u32 {
        let b = &self.bytes()[offset..offset + 4];
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    }
}

fn ethtool_ioctl(
    socket: &OwnedFd,
    name: &[libc::c_char; libc::IFNAMSIZ],
    buffer: &mut Buffer,
    op: &'static str,
) -> Result<(), EthtoolError> {
    // SAFETY: ifreq is a C struct of a name and a union of plain data; all-zero is valid.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    ifr.ifr_name = *name;
    ifr.ifr_ifru.ifru_data = buffer.0.as_mut_ptr().cast::<libc::c_char>();
    // SAFETY: ifr points at a valid ifreq whose data pointer refers to `buffer`, which is large
    // enough for what the command writes (see HEADROOM_ENTRIES) and outlives the call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCETHTOOL as _, &mut ifr) };
    if rc < 0 {
        let source = io::Error::last_os_error();
        return Err(match source.raw_os_error() {
            Some(libc::EOPNOTSUPP) => EthtoolError::NotSupported,
            Some(libc::ENODEV) => EthtoolError::NoSuchInterface,
            _ => EthtoolError::Io { op, source },
        });
    }
    Ok(())
}

/// `struct ethtool_sset_info { u32 cmd; u32 reserved; u64 sset_mask; u32 data[]; }`: ask for the
/// ETH_SS_STATS bit; the kernel clears it when the driver has no such set.
fn stats_count(
    socket: &OwnedFd,
    name: &[libc::c_char; libc::IFNAMSIZ],
) -> Result<usize, EthtoolError> {
    let mut buf = Buffer::with_bytes(16 + 4);
    buf.put_u32(0, ETHTOOL_GSSET_INFO);
    buf.0[1] = 1 << ETH_SS_STATS;
    ethtool_ioctl(socket, name, &mut buf, "GSSET_INFO")?;
    if buf.0[1] & (1 << ETH_SS_STATS) == 0 {
        return Ok(0);
    }
    Ok(buf.u32_at(16) as usize)
}

/// `struct ethtool_gstrings { u32 cmd; u32 string_set; u32 len; u8 data[len * 32]; }`.
/// `None` when the count changed since `stats_count`.
fn stat_names(
    socket: &OwnedFd,
    name: &[libc::c_char; libc::IFNAMSIZ],
    count: usize,
) -> Result<Option<Vec<String>>, EthtoolError> {
    const HEADER: usize = 12;
    let capacity = count + HEADROOM_ENTRIES;
    let mut buf = Buffer::with_bytes(HEADER + capacity * ETH_GSTRING_LEN);
    buf.put_u32(0, ETHTOOL_GSTRINGS);
    buf.put_u32(4, ETH_SS_STATS);
    buf.put_u32(8, count as u32);
    ethtool_ioctl(socket, name, &mut buf, "GSTRINGS")?;
    if buf.u32_at(8) as usize != count {
        return Ok(None);
    }
    let names = buf.bytes()[HEADER..HEADER + count * ETH_GSTRING_LEN]
        .chunks_exact(ETH_GSTRING_LEN)
        .map(|raw| {
            // NUL-terminated unless the name uses all 32 bytes.
            let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
            String::from_utf8_lossy(&raw[..len]).into_owned()
        })
        .collect();
    Ok(Some(names))
}

/// `struct ethtool_stats { u32 cmd; u32 n_stats; u64 data[n_stats]; }`: the values start at
/// byte 8, i.e. at index 1 of the u64 buffer. `None` when the count changed.
fn stat_values(
    socket: &OwnedFd,
    name: &[libc::c_char; libc::IFNAMSIZ],
    count: usize,
) -> Result<Option<Vec<u64>>, EthtoolError> {
    let capacity = count + HEADROOM_ENTRIES;
    let mut buf = Buffer::with_bytes(8 + capacity * 8);
    buf.put_u32(0, ETHTOOL_GSTATS);
    buf.put_u32(4, count as u32);
    ethtool_ioctl(socket, name, &mut buf, "GSTATS")?;
    if buf.u32_at(4) as usize != count {
        return Ok(None);
    }
    Ok(Some(buf.0[1..1 + count].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    fn stats(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
        pairs.iter().map(|&(n, v)| (n.to_owned(), v)).collect()
    }

    #[test]
    fn ena_allowance_counters_are_mapped_by_name() {
        let ena = stats(&[
            ("tx_timeout", 0),
            ("bw_in_allowance_exceeded", 11),
            ("bw_out_allowance_exceeded", 12),
            ("pps_allowance_exceeded", 13),
            ("conntrack_allowance_exceeded", 14),
            ("linklocal_allowance_exceeded", 15),
            ("conntrack_allowance_available", 99_000),
            ("queue_0_tx_cnt", 1234),
        ]);
        let cases = [
            (
                "ENA >= 2.2.10",
                ena,
                AllowanceCounters {
                    linklocal: Some(15),
                    bw_in: Some(11),
                    bw_out: Some(12),
                    pps: Some(13),
                    conntrack: Some(14),
                },
            ),
            (
                "ENA without conntrack",
                stats(&[
                    ("linklocal_allowance_exceeded", 0),
                    ("pps_allowance_exceeded", 3),
                ]),
                AllowanceCounters {
                    linklocal: Some(0),
                    pps: Some(3),
                    ..AllowanceCounters::default()
                },
            ),
            (
                "veth",
                stats(&[("peer_ifindex", 7)]),
                AllowanceCounters::default(),
            ),
            ("nothing", stats(&[]), AllowanceCounters::default()),
        ];
        for (name, input, want) in cases {
            let got = allowance_counters(&input);
            assert_eq!(got, want, "{name}");
            assert_eq!(
                got.is_empty(),
                want == AllowanceCounters::default(),
                "{name}"
            );
        }
    }

    #[test]
    fn invalid_interface_names_are_refused() {
        for bad in ["", "a\0b", "sixteen-chars-xx", "a/b"] {
            assert!(
                matches!(read_stats(bad), Err(EthtoolError::InvalidName(_))),
                "{bad:?}"
            );
        }
        assert!(ifname("fifteen-chars-x").is_ok());
    }

    #[test]
    fn loopback_has_no_statistics() {
        assert!(
            matches!(read_stats("lo"), Err(EthtoolError::NotSupported)),
            "{:?}",
            read_stats("lo")
        );
    }

    #[test]
    fn missing_interface_is_reported_as_such() {
        assert!(
            matches!(read_stats("imdsx-none"), Err(EthtoolError::NoSuchInterface)),
            "{:?}",
            read_stats("imdsx-none")
        );
    }

    #[test]
    fn interfaces_include_loopback() {
        let names = list_interfaces().expect("list");
        assert!(names.iter().any(|n| n == "lo"), "{names:?}");
        assert!(names.windows(2).all(|w| w[0] <= w[1]));
    }

    /// Deletes the veth pair when the test ends, passing or not.
    struct VethPair(String);

    impl Drop for VethPair {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["link", "del", &self.0]).status();
        }
    }

    /// Skips the test where a veth pair cannot be made, unless `IMDS_EXPORTER_REQUIRE_VETH` is
    /// set (`scripts/test` sets it, so there a skip is a failure).
    fn skip(why: &str) {
        if std::env::var_os("IMDS_EXPORTER_REQUIRE_VETH").is_some() {
            panic!("IMDS_EXPORTER_REQUIRE_VETH is set but {why}");
        }
        println!("skipped: {why}");
    }

    #[test]
    fn veth_statistics_are_read_through_the_ioctl() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return skip("creating a veth pair needs root");
        }
        let suffix = std::process::id() % 100_000;
        let (a, b) = (format!("imdsx{suffix}a"), format!("imdsx{suffix}b"));
        let created = Command::new("ip")
            .args(["link", "add", &a, "type", "veth", "peer", "name", &b])
            .output();
        let created = match created {
            Ok(out) if out.status.success() => out,
            Ok(out) => {
                return skip(&format!(
                    "ip link add failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Err(e) => return skip(&format!("cannot run ip: {e}")),
        };
        let _pair = VethPair(a.clone());
        drop(created);

        let stats = read_stats(&a).expect("veth has ethtool stats");
        println!("{a}: {stats:?}");
        let peer_ifindex: u64 =
            fs::read_to_string(Path::new("/sys/class/net").join(&b).join("ifindex"))
                .expect("peer ifindex")
                .trim()
                .parse()
                .expect("number");
        let got = stats
            .iter()
            .find(|(name, _)| name == "peer_ifindex")
            .map(|&(_, v)| v);
        assert_eq!(got, Some(peer_ifindex), "{stats:?}");
        assert!(allowance_counters(&stats).is_empty());
        assert!(list_interfaces().expect("list").contains(&a));
    }
}
