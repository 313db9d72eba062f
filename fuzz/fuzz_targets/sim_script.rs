//! The simulator's scripts (YAML or JSON): `parse` never panics; steps come out in time order,
//! none later than the bound.
#![no_main]

use imds_exporter::sim::config::SimConfig;
use imds_exporter::sim::limits::MAX_SCRIPT_AT;
use imds_exporter::sim::script::parse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(steps) = parse(text, &SimConfig::default().scenario_defaults()) {
        assert!(!steps.is_empty());
        assert!(steps.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(steps.iter().all(|s| s.at <= MAX_SCRIPT_AT));
    }
});
