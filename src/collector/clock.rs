//! The kernel's own view of the clock: `adjtimex(2)` read with `modes = 0`, which changes nothing
//! and needs no privilege from the kernel.
//!
//! Owns: the read, its conversion to seconds, and the "synchronised" verdict, which follows
//! node_exporter's `timex` collector (`node_timex_sync_status`).
//! Does not own: metrics, logging (the caller says once that the read is not permitted), or any
//! clock adjustment. Linux only.

use std::io;

/// `adjtimex` reports `maxerror` and `esterror` in microseconds whatever `STA_NANO` says (that
/// bit only changes the unit of `offset` and `jitter`).
const MICROS_PER_SECOND: f64 = 1_000_000.0;

/// What the kernel says about the clock's discipline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelClock {
    /// True unless the kernel reports `TIME_ERROR` or `STA_UNSYNC` (see [`from_timex`]).
    pub synchronized: bool,
    /// Upper bound of the clock's error. When nothing disciplines the clock the kernel grows it
    /// by 500 ppm per second up to 16 s (`NTP_PHASE_LIMIT`), which is what node-mixin's
    /// `NodeClockNotSynchronising` alert keys on.
    pub max_error_seconds: f64,
    pub estimated_error_seconds: f64,
    /// The raw `STA_*` status bits.
    pub status: i32,
    /// The return value of `adjtimex`: `TIME_OK` (0) .. `TIME_ERROR` (5).
    pub state: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    /// EPERM: a seccomp profile that forbids `adjtimex` outright. The kernel allows a read with
    /// `modes = 0` to anyone; Docker's default profile before moby#33403 (2017), containerd's
    /// before 1.4, and hand-made profiles only let it through with `CAP_SYS_TIME`.
    #[error("adjtimex is not permitted (seccomp profile without CAP_SYS_TIME)")]
    NotPermitted,
    #[error("adjtimex failed: {0}")]
    Io(#[source] io::Error),
}

/// Reads the kernel clock state without changing it.
pub fn read() -> Result<KernelClock, ClockError> {
    // SAFETY: timex is a plain C struct of integers (and a timeval), for which all-zero is a
    // valid value; modes = 0 asks the kernel only to fill it in.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    tx.modes = 0;
    // SAFETY: tx is a valid, writable timex for the duration of the call.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state == -1 {
        let err = io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EPERM) => ClockError::NotPermitted,
            _ => ClockError::Io(err),
        });
    }
    Ok(from_timex(state, &tx))
}

/// The pure conversion of an `adjtimex` result.
///
/// node_exporter calls the clock synchronised when the state is not `TIME_ERROR`. The kernel
/// returns `TIME_ERROR` whenever `STA_UNSYNC` (or `STA_CLOCKERR`) is set, so also testing
/// `STA_UNSYNC` agrees with node_exporter on Linux and guards against a kernel that would not.
pub fn from_timex(state: i32, tx: &libc::timex) -> KernelClock {
    KernelClock {
        synchronized: state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0,
        max_error_seconds: tx.maxerror as f64 / MICROS_PER_SECOND,
        estimated_error_seconds: tx.esterror as f64 / MICROS_PER_SECOND,
        status: tx.status,
        state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timex(status: i32, maxerror: i64, esterror: i64) -> libc::timex {
        // SAFETY: all-zero is a valid timex (see read()).
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        tx.status = status;
        tx.maxerror = maxerror as _;
        tx.esterror = esterror as _;
        tx
    }

    #[test]
    fn timex_converts_to_kernel_clock() {
        // (name, state, status, maxerror µs, esterror µs, synchronized, max s, est s)
        let cases = [
            (
                "disciplined by chrony",
                libc::TIME_OK,
                libc::STA_PLL,
                250_000,
                1_500,
                true,
                0.25,
                0.0015,
            ),
            (
                "disciplined, nanosecond mode",
                libc::TIME_OK,
                libc::STA_PLL | libc::STA_NANO,
                1_000,
                10,
                true,
                0.001,
                0.00001,
            ),
            (
                "leap second pending",
                libc::TIME_INS,
                libc::STA_PLL | libc::STA_INS,
                1_000,
                10,
                true,
                0.001,
                0.00001,
            ),
            (
                "never synchronised",
                libc::TIME_ERROR,
                libc::STA_UNSYNC,
                16_000_000,
                16_000_000,
                false,
                16.0,
                16.0,
            ),
            (
                "unsync bit without TIME_ERROR",
                libc::TIME_OK,
                libc::STA_UNSYNC,
                500_000,
                0,
                false,
                0.5,
                0.0,
            ),
            (
                "TIME_ERROR without unsync bit",
                libc::TIME_ERROR,
                libc::STA_CLOCKERR,
                500_000,
                0,
                false,
                0.5,
                0.0,
            ),
        ];
        for (name, state, status, maxerr, esterr, sync, max_s, est_s) in cases {
            let clock = from_timex(state, &timex(status, maxerr, esterr));
            assert_eq!(clock.synchronized, sync, "{name}");
            assert!((clock.max_error_seconds - max_s).abs() < 1e-12, "{name}");
            assert!(
                (clock.estimated_error_seconds - est_s).abs() < 1e-12,
                "{name}"
            );
            assert_eq!(clock.status, status, "{name}");
            assert_eq!(clock.state, state, "{name}");
        }
    }

    #[test]
    fn read_reports_sane_values_on_this_machine() {
        // The build machines run no NTP daemon (TIME_ERROR, STA_UNSYNC, 16 s); a developer's may.
        // Either verdict is fine; the numbers must be coherent.
        match read() {
            Ok(clock) => {
                assert!((0..=5).contains(&clock.state), "{clock:?}");
                assert!(clock.max_error_seconds >= 0.0, "{clock:?}");
                assert!(clock.estimated_error_seconds >= 0.0, "{clock:?}");
                assert!(clock.max_error_seconds.is_finite(), "{clock:?}");
                let unsync =
                    clock.state == libc::TIME_ERROR || clock.status & libc::STA_UNSYNC != 0;
                assert_eq!(clock.synchronized, !unsync, "{clock:?}");
                println!("kernel clock: {clock:?}");
            }
            // A sandbox with a strict seccomp profile: the variant the caller handles.
            Err(ClockError::NotPermitted) => println!("adjtimex not permitted here"),
            Err(e) => panic!("adjtimex failed: {e}"),
        }
    }
}
