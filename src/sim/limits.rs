//! Upper bounds on the simulator's durations and offsets, from its flags and from the control API.
//!
//! A value past them is refused (a start-up error naming the flag, or a 400 naming the parameter)
//! instead of reaching time arithmetic that would overflow: `Instant + Duration` and chrono's
//! `DateTime + TimeDelta` panic on overflow, and a panic while the shared state is locked would
//! take every later request down with it.

use std::time::Duration;

/// humantime's year (365.25 days), so that the bound reads back as `1year`.
const YEAR: Duration = Duration::from_secs(31_557_600);

/// Longest credential timing: `--rotate-every`, `--lifetime`, `expiring?in=`, `rotate-late?lead=`.
pub const MAX_CREDENTIAL_TIME: Duration = YEAR;

/// Latest `at` of a script step.
pub const MAX_SCRIPT_AT: Duration = YEAR;

/// Longest injected delay: `--slow-delay`, `slow?delay=`, `jitter?p50=&p99=` (and the longest
/// jitter draw). As long as `outage` holds a request.
pub const MAX_DELAY: Duration = Duration::from_secs(600);

/// Largest NTP clock offset, in seconds either way (about 31.7 years; the NTP era is 136).
pub const MAX_CLOCK_OFFSET: f64 = 1e9;

/// Largest NTP clock drift, in parts per million either way: 0.1 s per second, 200 times the
/// kernel's 500 ppm bound on a free-running clock. Even at that rate, a year of drift adds about
/// 3.2e6 s, far inside the NTP era.
pub const MAX_CLOCK_DRIFT_PPM: f64 = 100_000.0;

/// `ppm` if it is a finite drift within [`MAX_CLOCK_DRIFT_PPM`]; otherwise a message saying what
/// is accepted.
pub fn clock_drift(ppm: f64) -> Result<f64, String> {
    if ppm.is_finite() && ppm.abs() <= MAX_CLOCK_DRIFT_PPM {
        Ok(ppm)
    } else {
        Err(format!(
            "must be a number of ppm from -{MAX_CLOCK_DRIFT_PPM} to {MAX_CLOCK_DRIFT_PPM} (e.g. 500 or -20), got {ppm}"
        ))
    }
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// `d` if it is at most `max`; otherwise a message saying what is accepted.
pub fn at_most(d: Duration, max: Duration) -> Result<Duration, String> {
    if d > max {
        Err(format!("must be at most {} (got {})", human(max), human(d)))
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_read_back_as_written_in_the_docs() {
        assert_eq!(human(MAX_CREDENTIAL_TIME), "1year");
        assert_eq!(human(MAX_SCRIPT_AT), "1year");
        assert_eq!(human(MAX_DELAY), "10m");
        assert_eq!(
            crate::config::parse_duration("1year").unwrap(),
            MAX_CREDENTIAL_TIME
        );
    }

    #[test]
    fn a_value_past_its_bound_is_refused_with_both_values() {
        assert_eq!(at_most(MAX_DELAY, MAX_DELAY), Ok(MAX_DELAY));
        let err = at_most(Duration::from_secs(601), MAX_DELAY).unwrap_err();
        assert_eq!(err, "must be at most 10m (got 10m 1s)");
    }

    #[test]
    fn clock_drift_is_bounded_either_way() {
        for ok in [0.0, 500.0, -20.5, MAX_CLOCK_DRIFT_PPM, -MAX_CLOCK_DRIFT_PPM] {
            assert_eq!(clock_drift(ok), Ok(ok));
        }
        for bad in [100_000.5, -1e6, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = clock_drift(bad).unwrap_err();
            assert!(err.contains("-100000 to 100000"), "{bad}: {err}");
        }
    }
}
