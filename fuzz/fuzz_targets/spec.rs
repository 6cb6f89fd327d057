//! Fuzz the spec TOML: parse + validate (+ shape inference when the input shape is known), then
//! shape inference on a few typical inputs. Any text must give `Ok` or a spec error: never a
//! panic, an abort or an allocation over libFuzzer's malloc limit.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(spec) = lepton_train::Spec::from_str_in(text, Path::new("/nonexistent"), "fuzz") else {
        return;
    };
    for input in [&[1usize, 28, 28][..], &[3, 32, 32], &[8], &[2, 5]] {
        let _ = spec.check_shapes(input);
    }
    let _ = spec.to_toml();
});
