//! The node's clock and network budget to checks: the NTP offset against the configured
//! server(s), the kernel's synchronisation status, and the ENA link-local drop counter.
//!
//! Pure: the readings come in from the runner ([`super::NtpObservation`],
//! [`super::KernelReading`], [`super::LinklocalReading`]).
//!
//! Thresholds for the offset: those of the ImdsClockSkewDetected alert (`alerts/thresholds.yml`),
//! so that `check` fails where the exporter would page. AWS rejects a SigV4 request whose
//! timestamp is more than five minutes from its own clock. A clock disciplined by the Amazon Time
//! Sync Service stays within a millisecond or so, so more than [`NTP_WARN_SECONDS`] (50 ms)
//! means nothing disciplines it (and an undisciplined clock keeps drifting, up to 43 s a day at
//! the kernel's 500 ppm limit). [`NTP_FAIL_SECONDS`] (60 s) is a fifth of SigV4's allowance, four
//! orders of magnitude beyond any disciplined clock: signing still works, but the clock is not
//! being disciplined or was stepped wrongly, and one more step can finish the job.

use super::model::{Check, CheckId, KernelReading, LinklocalReading, NtpObservation, fmt_offset};

/// More than this is a clock nothing disciplines.
pub const NTP_WARN_SECONDS: f64 = crate::thresholds::CLOCK_SKEW_WARNING_SECONDS;
/// More than this pages: a fifth of SigV4's five minutes.
pub const NTP_FAIL_SECONDS: f64 = crate::thresholds::CLOCK_SKEW_CRITICAL_SECONDS;

const CLOCK_FIX: &str = "Run chrony against the Amazon Time Sync Service on the node (in \
     /etc/chrony.conf: server 169.254.169.123 prefer iburst minpoll 4 maxpoll 4), then step the \
     clock once and confirm:\n$ chronyc makestep\n$ chronyc tracking";

/// The offset SDKs' requests are signed with: the median of the servers that answered
/// (positive: the local clock is behind).
pub fn ntp_offset(results: &[NtpObservation]) -> Option<f64> {
    let mut offsets: Vec<f64> = results
        .iter()
        .filter_map(|r| r.result.as_ref().ok().map(|s| s.offset_seconds))
        .collect();
    if offsets.is_empty() {
        return None;
    }
    offsets.sort_by(f64::total_cmp);
    let mid = offsets.len() / 2;
    Some(if offsets.len().is_multiple_of(2) {
        (offsets[mid - 1] + offsets[mid]) / 2.0
    } else {
        offsets[mid]
    })
}

pub fn ntp_check(results: &[NtpObservation]) -> Check {
    const ID: CheckId = CheckId::ClockNtp;
    let answers: Vec<String> = results
        .iter()
        .map(|r| match &r.result {
            Ok(s) => format!(
                "{}: {} (rtt {}, stratum {})",
                r.server,
                fmt_offset(s.offset_seconds),
                super::model::fmt_latency(std::time::Duration::from_secs_f64(
                    s.rtt_seconds.max(0.0)
                )),
                s.stratum
            ),
            Err(e) => format!("{}: {e}", r.server),
        })
        .collect();
    let Some(offset) = ntp_offset(results) else {
        return Check::warn(ID, format!("no answer: {}", answers.join("; ")))
            .cause(
                "The clock could not be compared with a reference (no server answered, or the \
                 ones that did said their own clocks are not synchronised), so signing and \
                 expiry problems caused by the clock cannot be ruled out. The Amazon Time Sync \
                 Service answers on every EC2 instance at 169.254.169.123 (UDP 123); from a pod, \
                 a NetworkPolicy may block it.",
            )
            .fix("On the node, see what chrony uses and whether it reaches it:\n$ chronyc sources -v");
    };
    let value = if results.len() == 1 {
        format!(
            "local clock {}",
            answers[0].split_once(": ").map_or("", |x| x.1)
        )
    } else {
        format!(
            "local clock {} (median); {}",
            fmt_offset(offset),
            answers.join("; ")
        )
    };
    let abs = offset.abs();
    if abs > NTP_FAIL_SECONDS {
        let margin = if abs >= 300.0 {
            format!("At {abs:.0} s off the limit is passed: every signed AWS call fails now.")
        } else {
            format!(
                "At {abs:.0} s off, signing still works, but nothing is disciplining the clock \
                 (or it was stepped wrongly), and the rest of the five minutes can go at the next \
                 step or with the drift."
            )
        };
        return Check::fail(ID, value)
            .cause(format!(
                "AWS rejects a SigV4-signed request whose timestamp is more than 5 minutes from \
                 its clock (RequestTimeTooSkewed, SignatureDoesNotMatch, \
                 InvalidSignatureException, RequestExpired). {margin} The offset also shifts when \
                 SDKs think credentials expire (see imds.expiry)."
            ))
            .fix(CLOCK_FIX);
    }
    if abs > NTP_WARN_SECONDS {
        return Check::warn(ID, value)
            .cause(
                "A clock disciplined by the Amazon Time Sync Service stays within a millisecond \
                 or so: an error over 50 ms means nothing disciplines it, and it keeps \
                 drifting (up to 43 s a day) toward SigV4's 5-minute limit. SDKs also judge \
                 credential expiry by this clock, so their refresh moves by the offset (see \
                 imds.expiry).",
            )
            .fix(CLOCK_FIX);
    }
    let failed: Vec<&str> = results
        .iter()
        .filter(|r| r.result.is_err())
        .map(|r| r.server.as_str())
        .collect();
    if !failed.is_empty() {
        return Check::warn(ID, value)
            .cause(format!(
                "{} did not answer; the offset comes from the others.",
                failed.join(", ")
            ))
            .fix("Check the servers' addresses, and that UDP 123 to them is allowed from here.");
    }
    Check::ok(ID, value)
}

pub fn kernel_check(reading: &KernelReading) -> Check {
    const ID: CheckId = CheckId::ClockKernel;
    match reading {
        KernelReading::Clock(c) if c.synchronized => Check::ok(
            ID,
            format!(
                "synchronised (max error {:.3} s, estimated error {:.6} s)",
                c.max_error_seconds, c.estimated_error_seconds
            ),
        ),
        KernelReading::Clock(c) => Check::warn(
            ID,
            format!(
                "not synchronised (adjtimex state {}, max error {:.1} s)",
                c.state, c.max_error_seconds
            ),
        )
        .cause(
            "The kernel says no time daemon is disciplining the clock (STA_UNSYNC; what \
             node-mixin's NodeClockNotSynchronising alerts on): it drifts freely (up to 43 s a \
             day), and any NTP offset will only grow. Past 5 minutes AWS rejects SigV4-signed \
             requests; before that, SDKs already judge credential expiry by the wrong time \
             (behind: they refresh too late and get ExpiredToken; ahead: they refresh early). \
             clock.ntp shows the offset now. A container shares the node's clock, so the fix is \
             on the node.",
        )
        .fix("Enable chrony on the node with the Amazon Time Sync Service:\n$ systemctl enable --now chronyd\n$ chronyc tracking"),
        KernelReading::NotPermitted => Check::skip(
            ID,
            "not readable here: adjtimex is blocked (seccomp profile without CAP_SYS_TIME)",
        ),
        KernelReading::Error(e) => Check::skip(ID, format!("not readable: {e}")),
    }
}

pub fn linklocal_check(reading: &LinklocalReading) -> Check {
    const ID: CheckId = CheckId::NetworkLinklocal;
    let interfaces = match reading {
        LinklocalReading::Unavailable(e) => return Check::skip(ID, format!("not available: {e}")),
        LinklocalReading::Interfaces(i) if i.is_empty() => {
            return Check::skip(
                ID,
                "no ENA interface in this network namespace (a pod network, or not EC2): nothing to read",
            );
        }
        LinklocalReading::Interfaces(i) => i,
    };
    let total: u64 = interfaces.iter().map(|(_, n)| n).sum();
    let per: Vec<String> = interfaces
        .iter()
        .map(|(i, n)| format!("{i}: {n}"))
        .collect();
    let value = format!(
        "{total} packets dropped since the ENA driver loaded ({})",
        per.join(", ")
    );
    if total == 0 {
        return Check::ok(ID, value);
    }
    let iface = interfaces
        .iter()
        .find(|(_, n)| *n > 0)
        .map_or("eth0", |(i, _)| i.as_str());
    Check::warn(ID, value)
        .cause(
            "The instance exceeded the 1024 packets/s shared by IMDS, the Route 53 Resolver (DNS) \
             and the Amazon Time Sync Service, and the ENA driver dropped the excess; a dropped \
             IMDS packet is a timeout for an SDK. The counter is cumulative since the driver \
             loaded, so one reading cannot say when.",
        )
        .fix(format!(
            "See whether it still grows (or graph the exporter's \
             imds_linklocal_allowance_exceeded_total):\n$ ethtool -S {} | grep \
             linklocal_allowance_exceeded\nThen cache DNS on the node (NodeLocal DNSCache, \
             systemd-resolved) and reuse SDK clients.",
            // Interface names are the kernel's, but may hold `$` or `;` (any byte but `/`,
            // `:`, whitespace).
            crate::untrusted::shell_word(iface)
        ))
}

#[cfg(test)]
mod tests {
    use super::super::Status;
    use super::*;
    use crate::probe::ntp::NtpSample;

    fn sample(offset: f64, leap: u8) -> NtpSample {
        NtpSample {
            offset_seconds: offset,
            rtt_seconds: 0.0002,
            stratum: 1,
            leap,
            root_delay_seconds: 0.0,
            root_dispersion_seconds: 0.001,
            reference_id: *b"LOCL",
        }
    }

    fn obs(server: &str, r: Result<NtpSample, &str>) -> NtpObservation {
        NtpObservation {
            server: server.into(),
            result: r.map_err(str::to_string),
        }
    }

    #[test]
    fn offset_thresholds_are_the_alerts_and_leave_a_margin_below_the_sigv4_limit() {
        for (offset, want) in [
            (0.0004, Status::Ok),
            (-0.04, Status::Ok),
            (0.06, Status::Warn),
            (1.5, Status::Warn),
            (-59.0, Status::Warn),
            (61.0, Status::Fail),
            (-239.0, Status::Fail),
            (-400.0, Status::Fail),
        ] {
            let c = ntp_check(&[obs("a:123", Ok(sample(offset, 0)))]);
            assert_eq!(c.status, want, "{offset}: {}", c.value);
        }
        let c = ntp_check(&[obs("a:123", Ok(sample(400.0, 0)))]);
        assert!(c.value.contains("400.0 s behind"), "{}", c.value);
        assert!(c.cause.unwrap().contains("5 minutes"));
        // A drifting clock threatens signing and, before that, the SDKs' credential expiry.
        let cause = ntp_check(&[obs("a:123", Ok(sample(1.5, 0)))])
            .cause
            .unwrap();
        for needle in ["5-minute limit", "credential expiry", "imds.expiry"] {
            assert!(cause.contains(needle), "{needle:?} not in {cause}");
        }
    }

    #[test]
    fn an_unsynchronised_kernel_clock_names_what_it_breaks() {
        let c = kernel_check(&KernelReading::Clock(
            crate::collector::clock::KernelClock {
                synchronized: false,
                max_error_seconds: 16.0,
                estimated_error_seconds: 16.0,
                status: 0x40,
                state: 5,
            },
        ));
        assert_eq!(c.status, Status::Warn);
        let cause = c.cause.unwrap();
        for needle in [
            "STA_UNSYNC",
            "5 minutes",
            "SigV4",
            "ExpiredToken",
            "clock.ntp",
        ] {
            assert!(cause.contains(needle), "{needle:?} not in {cause}");
        }
    }

    #[test]
    fn several_servers_give_the_median_and_name_the_silent_ones() {
        let results = [
            obs("a:123", Ok(sample(0.001, 0))),
            obs("b:123", Ok(sample(0.003, 0))),
            obs("c:123", Err("ntp query timed out")),
        ];
        assert_eq!(ntp_offset(&results), Some(0.002));
        let c = ntp_check(&results);
        assert_eq!(c.status, Status::Warn);
        assert!(c.cause.unwrap().contains("c:123"));
        let c = ntp_check(&[obs("c:123", Err("ntp query timed out"))]);
        assert_eq!(c.status, Status::Warn);
        assert!(c.value.contains("timed out"));
        // A server that says it is unsynchronised (leap 3) fails its query: no reference.
        let c = ntp_check(&[obs(
            "a:123",
            Err("ntp server is not synchronised (leap indicator 3, stratum 2)"),
        )]);
        assert_eq!(c.status, Status::Warn);
        assert!(c.value.contains("not synchronised"), "{}", c.value);
    }

    #[test]
    fn link_local_drops_warn_and_a_missing_ena_interface_is_skipped() {
        let c = linklocal_check(&LinklocalReading::Interfaces(vec![]));
        assert_eq!(c.status, Status::Skip);
        let c = linklocal_check(&LinklocalReading::Interfaces(vec![("eth0".into(), 0)]));
        assert_eq!(c.status, Status::Ok);
        let c = linklocal_check(&LinklocalReading::Interfaces(vec![
            ("eth0".into(), 0),
            ("eth1".into(), 12),
        ]));
        assert_eq!(c.status, Status::Warn);
        assert!(c.value.starts_with("12 packets"));
        assert!(c.fix.unwrap().contains("ethtool -S eth1"));
    }
}
