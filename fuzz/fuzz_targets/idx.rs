//! Fuzz the IDX parser: any byte slice must give `Ok` or `Err`, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = lepton_data::idx::parse_idx(data);
});
