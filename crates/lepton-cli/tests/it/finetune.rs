//! `lepton finetune` and `lepton lora merge`: bad input is refused before any model is loaded,
//! naming the option.

use crate::support::lepton_in;

#[test]
fn finetune_refuses_rank_zero_naming_the_option() {
    let dir = tempfile::tempdir().unwrap();
    let r = lepton_in(
        dir.path(),
        &[
            "finetune",
            "missing.gguf",
            "--data",
            "d.txt",
            "--lora-r",
            "0",
            "--out",
            "run",
        ],
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("lora-r"), "{r:?}");
}

#[test]
fn finetune_refuses_an_unknown_target_listing_the_modules() {
    let dir = tempfile::tempdir().unwrap();
    let r = lepton_in(
        dir.path(),
        &[
            "finetune",
            "missing.gguf",
            "--data",
            "d.txt",
            "--targets",
            "q_proj,c_attn",
            "--out",
            "run",
        ],
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("c_attn") && r.stderr.contains("v_proj"),
        "{r:?}"
    );
}

#[test]
fn lora_merge_names_a_missing_adapter_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("adapter")).unwrap();
    let r = lepton_in(
        dir.path(),
        &["lora", "merge", "base.gguf", "adapter", "-o", "out"],
    );
    assert_ne!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("adapter_config.json"), "{r:?}");
}
