//! Fuzz the CSV table reader with and without a header, label by name and by (negative) index.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.csv");
    let _ = lepton_data::table::read_table(data, path, true, None, Some(-1), &[]);
    let _ = lepton_data::table::read_table(data, path, false, None, Some(0), &[]);
    let _ = lepton_data::table::read_table(data, path, true, Some("label"), None, &[]);
});
