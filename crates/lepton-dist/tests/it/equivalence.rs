//! 2 ranks x batch 32 against 1 rank x batch 64 (the same global batch), same seed, 100 steps.

use crate::common::{
    max_relative_difference, spec, train_on, train_with_timeline, try_train_overlapped, write_csv,
};
use lepton_train::Spec;

fn check(name: &str, optimizer: &str, tolerance: f64) {
    check_with(name, optimizer, tolerance, 1);
}

/// As [`check`], the 2-rank run with the backward pass in `segments` segments, reductions
/// overlapped with it.
fn check_with(name: &str, optimizer: &str, tolerance: f64, segments: usize) {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("d.csv");
    // 800 rows, 640 for training: 10 batches of 64 per epoch, 10 epochs = 100 steps.
    write_csv(&csv, 800);
    let spec = Spec::from_str_in(&spec(&csv, optimizer, 10, 64), tmp.path(), "dp").unwrap();
    let one = train_on(&spec, &tmp.path().join("one"), 1);
    let two = try_train_overlapped(&spec, &tmp.path().join("two"), 2, segments).unwrap();
    assert_eq!(one.steps, 100);
    assert_eq!(two.steps, 100);
    let rel = max_relative_difference(&tmp.path().join("two"), &tmp.path().join("one"));
    println!("{name}: 2x32 vs 1x64 after 100 steps: max relative weight difference {rel:.3e}");
    assert!(rel <= tolerance, "{name}: {rel:e} > {tolerance:e}");
    // Not trivially equal because nothing trained: the weights moved.
    let first = one.best_metric.unwrap();
    assert!(first > 0.5, "the model learned something: {first}");
}

#[test]
fn two_ranks_of_32_equal_one_of_64_with_sgd() {
    check("sgd", "kind = \"sgd\"\nlr = 0.1\nmomentum = 0.9", 1e-6);
}

#[test]
fn two_ranks_of_32_equal_one_of_64_with_adam() {
    check("adam", "kind = \"adam\"\nlr = 0.003", 1e-4);
}

#[test]
fn two_ranks_of_32_equal_one_of_64_with_sgd_overlapped() {
    check_with("sgd", "kind = \"sgd\"\nlr = 0.1\nmomentum = 0.9", 1e-6, 2);
}

#[test]
fn two_ranks_of_32_equal_one_of_64_with_adam_overlapped() {
    check_with("adam", "kind = \"adam\"\nlr = 0.003", 1e-4, 2);
}

/// Overlap changes when gradients are reduced, not what is reduced: 2 ranks with the backward
/// pass in segments end on the same weights, bit for bit, as 2 ranks without.
#[test]
fn overlapped_and_plain_two_rank_runs_end_on_identical_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("d.csv");
    write_csv(&csv, 400);
    let spec = Spec::from_str_in(
        &spec(&csv, "kind = \"adam\"\nlr = 0.003", 3, 32),
        tmp.path(),
        "dp",
    )
    .unwrap();
    let plain = train_on(&spec, &tmp.path().join("plain"), 2);
    let timeline = tmp.path().join("timeline");
    let over = train_with_timeline(&spec, &tmp.path().join("over"), 2, 3, &timeline);
    assert_eq!(plain.steps, over.steps);
    // The MLP's two linear layers were two segments, each reduced after its own backward.
    for r in 0..2 {
        let lines = std::fs::read_to_string(timeline.join(format!("rank{r}.jsonl"))).unwrap();
        let steps: Vec<serde_json::Value> = lines
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(steps.len() as u64, over.steps);
        for s in &steps {
            assert_eq!(s["backward_ms"].as_array().unwrap().len(), 2, "{s}");
            assert_eq!(s["bucket_segment"], serde_json::json!([0, 1]), "{s}");
        }
    }
    let rel = max_relative_difference(&tmp.path().join("over"), &tmp.path().join("plain"));
    assert_eq!(rel, 0.0, "overlapped vs plain: {rel:e}");
}

#[test]
fn resume_with_another_rank_count_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("d.csv");
    write_csv(&csv, 200);
    let spec = Spec::from_str_in(&spec(&csv, "kind = \"sgd\"", 1, 16), tmp.path(), "dp").unwrap();
    let dir = tmp.path().join("run");
    train_on(&spec, &dir, 2);
    let err = crate::common::resume_on(&dir, 1).unwrap_err().to_string();
    assert!(
        err.contains("written by 2 rank(s), resumed with 1"),
        "{err}"
    );
}

#[test]
fn a_rank_count_that_does_not_divide_the_batch_is_refused_before_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("d.csv");
    write_csv(&csv, 200);
    let spec = Spec::from_str_in(&spec(&csv, "kind = \"sgd\"", 1, 10), tmp.path(), "dp").unwrap();
    let dir = tmp.path().join("run");
    let err = crate::common::try_train_on(&spec, &dir, 3)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.batch-size") && err.contains("3 ranks"),
        "{err}"
    );
    assert!(!dir.exists(), "nothing written before the check");
}
