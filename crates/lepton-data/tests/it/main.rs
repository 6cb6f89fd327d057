//! Integration tests for lepton-data: the embedded data sets and every loader on files the tests write.

mod embedded;
mod loaders;

use std::path::PathBuf;

/// The repository's `data/` folder; tests that need it fail loudly when it is missing.
pub fn data_dir() -> PathBuf {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data");
    assert!(
        d.join("mnist").is_dir(),
        "{} is missing: run scripts/fetch-assets.sh",
        d.display()
    );
    d
}
