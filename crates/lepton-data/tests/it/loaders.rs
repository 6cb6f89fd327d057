use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use lepton_data::{
    prepare, prepare_folds, Batcher, BatcherConfig, DataSpec, PreprocessSpec, Targets,
};

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn data_spec(text: &str) -> DataSpec {
    toml::from_str(text).unwrap()
}

#[test]
fn idx_raw_and_gz_load_and_bad_files_name_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let n = 20u32;
    let pixels: Vec<u8> = (0..n * 16).map(|i| (i * 7 % 256) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 2) as u8).collect();
    write(
        &dir.path().join("train-images-idx3-ubyte.gz"),
        &gz(&idx(&[n, 4, 4], &pixels)),
    );
    write(
        &dir.path().join("train-labels-idx1-ubyte"),
        &idx(&[n], &labels),
    );
    let spec = data_spec(&format!(
        "format = \"mnist\"\npath = \"{}\"\nvalidation-split = 0.2",
        dir.path().display()
    ));
    let p = prepare(&spec, &PreprocessSpec::default(), Path::new(""), 0).unwrap();
    assert_eq!((p.train.len(), p.validation.len()), (16, 4));
    assert!(p.test.is_none());
    // Named like the real MNIST file but different content: flagged, still loaded.
    assert_eq!(p.report.pins[0].matches_pin, Some(false));

    // Label count mismatch.
    write(
        &dir.path().join("train-labels-idx1-ubyte"),
        &idx(&[n - 1], &labels[1..]),
    );
    let e = prepare(&spec, &PreprocessSpec::default(), Path::new(""), 0)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("train-labels-idx1-ubyte") && e.contains("19 labels"),
        "{e}"
    );
    // Truncated gzip.
    let good = gz(&idx(&[n, 4, 4], &pixels));
    write(
        &dir.path().join("train-images-idx3-ubyte.gz"),
        &good[..good.len() / 2],
    );
    let e = prepare(&spec, &PreprocessSpec::default(), Path::new(""), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("train-images-idx3-ubyte.gz"), "{e}");
    // Missing folder.
    let spec = data_spec("format = \"mnist\"\npath = \"/nonexistent/mnist\"");
    let e = prepare(&spec, &PreprocessSpec::default(), Path::new(""), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/mnist"), "{e}");
}

#[test]
fn csv_with_categorical_and_missing_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("size,colour,label\n");
    for i in 0..40 {
        let size = if i % 10 == 3 {
            String::new()
        } else {
            (i % 7).to_string()
        };
        text += &format!(
            "{size},{},{}\n",
            ["red", "green"][i % 2],
            ["yes", "no"][i % 2]
        );
    }
    write(&dir.path().join("t.csv"), text.as_bytes());
    let spec = data_spec(&format!(
        "format = \"csv\"\npath = \"{}/t.csv\"\nlabel = \"label\"",
        dir.path().display()
    ));
    let p = prepare(&spec, &PreprocessSpec::default(), Path::new(""), 0).unwrap();
    assert_eq!(p.train.sample_shape, vec![3]); // size + one-hot(green, red)
    assert_eq!(p.report.missing["size"], 4);
    assert_eq!(
        p.preprocessor.class_names(),
        &["no".to_string(), "yes".to_string()]
    );

    let spec2 = data_spec(&format!(
        "format = \"csv\"\npath = \"{}/t.csv\"\nmissing = \"drop-rows\"",
        dir.path().display()
    ));
    let p2 = prepare(&spec2, &PreprocessSpec::default(), Path::new(""), 0).unwrap();
    assert_eq!(p2.report.rows_dropped, 4);

    let spec3 = data_spec(&format!(
        "format = \"csv\"\npath = \"{}/t.csv\"\nmissing = \"error\"",
        dir.path().display()
    ));
    let e = prepare(&spec3, &PreprocessSpec::default(), Path::new(""), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("t.csv") && e.contains("'size'"), "{e}");
}

#[test]
fn image_folder_png_and_jpeg() {
    let dir = tempfile::tempdir().unwrap();
    for (class, shade) in [("cats", 30u8), ("dogs", 220u8)] {
        for i in 0..5u8 {
            let img =
                image::RgbImage::from_pixel(6, 5, image::Rgb([shade, shade.wrapping_add(i), 0]));
            std::fs::create_dir_all(dir.path().join(class)).unwrap();
            let ext = if i % 2 == 0 { "png" } else { "jpg" };
            img.save(dir.path().join(class).join(format!("{i}.{ext}")))
                .unwrap();
        }
    }
    std::fs::write(
        dir.path().join("dogs/broken.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    let spec = data_spec(&format!(
        "format = \"image-folder\"\npath = \"{}\"\nsize = [4, 4]",
        dir.path().display()
    ));
    let e = prepare(&spec, &PreprocessSpec::default(), Path::new(""), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("broken.png"), "{e}");
    std::fs::remove_file(dir.path().join("dogs/broken.png")).unwrap();
    let p = prepare(&spec, &PreprocessSpec::default(), Path::new(""), 0).unwrap();
    assert_eq!(p.train.sample_shape, vec![3, 4, 4]);
    assert_eq!(
        p.preprocessor.class_names(),
        &["cats".to_string(), "dogs".to_string()]
    );
}

#[test]
fn cifar10_binary_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut batch = Vec::new();
    for i in 0..30u8 {
        batch.push(i % 10);
        batch.extend(std::iter::repeat_n(i, 3072));
    }
    write(&dir.path().join("data_batch_1.bin"), &batch);
    write(&dir.path().join("test_batch.bin"), &batch[..3073 * 10]);
    let spec = data_spec(&format!(
        "format = \"cifar10\"\npath = \"{}\"",
        dir.path().display()
    ));
    let p = prepare(&spec, &PreprocessSpec::default(), Path::new(""), 0).unwrap();
    assert_eq!(p.train.sample_shape, vec![3, 32, 32]);
    assert_eq!(p.test.unwrap().len(), 10);
    write(&dir.path().join("data_batch_2.bin"), &batch[..100]);
    let e = prepare(&spec, &PreprocessSpec::default(), Path::new(""), 0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("data_batch_2.bin") && e.contains("3,073"), "{e}");
}

#[test]
fn folds_fit_their_own_preprocessor_and_batches_are_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("x,y\n");
    for i in 0..50 {
        text += &format!("{},{}\n", i, i % 2);
    }
    write(&dir.path().join("t.csv"), text.as_bytes());
    let spec = data_spec(&format!(
        "format = \"csv\"\npath = \"{}/t.csv\"",
        dir.path().display()
    ));
    let folds = prepare_folds(&spec, &PreprocessSpec::default(), Path::new(""), 5, 1).unwrap();
    assert_eq!(folds.len(), 5);
    assert!(folds
        .iter()
        .all(|f| f.validation.len() == 10 && f.train.len() == 40));
    assert_ne!(folds[0].preprocessor, folds[1].preprocessor);

    let ds = Arc::new(folds[0].train.clone());
    let run = |epoch| {
        let mut cfg = BatcherConfig::new(7);
        cfg.seed = 9;
        cfg.epoch = epoch;
        Batcher::new(ds.clone(), cfg)
            .map(|b| b.unwrap().indices)
            .collect::<Vec<_>>()
    };
    let a = run(0);
    assert_eq!(a.len(), 6);
    assert_eq!(a, run(0));
    assert_ne!(a, run(1));
    let mut cfg = BatcherConfig::new(7);
    cfg.seed = 9;
    cfg.start_batch = 4;
    let tail: Vec<_> = Batcher::new(ds.clone(), cfg)
        .map(|b| b.unwrap().indices)
        .collect();
    assert_eq!(tail, a[4..].to_vec());
    assert!(matches!(folds[0].train.targets, Targets::Classes { .. }));
}

/// Finding 7 (issue 12): `/dev/zero` (or any endless or special file) given to any loader is
/// refused by name before a byte is read, directly or through a symlink; finding 10: an image
/// class folder with no images is refused like an empty header name.
#[cfg(unix)]
#[test]
fn endless_files_are_refused_by_every_loader() {
    let dir = tempfile::tempdir().unwrap();
    let run = |text: String| {
        prepare(
            &data_spec(&text),
            &PreprocessSpec::default(),
            Path::new(""),
            0,
        )
        .unwrap_err()
        .to_string()
    };
    // CSV.
    let e = run("format = \"csv\"\npath = \"/dev/zero\"".into());
    assert!(
        e.contains("/dev/zero") && e.contains("not a regular file"),
        "{e}"
    );
    // CIFAR-10 single batch file.
    let e = run("format = \"cifar10\"\npath = \"/dev/zero\"".into());
    assert!(e.contains("/dev/zero"), "{e}");
    // MNIST: the images file is a symlink to /dev/zero.
    let mnist = dir.path().join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    std::os::unix::fs::symlink("/dev/zero", mnist.join("train-images-idx3-ubyte")).unwrap();
    write(&mnist.join("train-labels-idx1-ubyte"), &idx(&[1], &[0]));
    let e = run(format!(
        "format = \"mnist\"\npath = \"{}\"",
        mnist.display()
    ));
    assert!(
        e.contains("train-images-idx3-ubyte") && e.contains("character device"),
        "{e}"
    );
    // Image folder: one "image" is /dev/zero, then a class folder without images.
    let images = dir.path().join("images");
    std::fs::create_dir_all(images.join("a")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", images.join("a/zero.png")).unwrap();
    let e = run(format!(
        "format = \"image-folder\"\npath = \"{}\"",
        images.display()
    ));
    assert!(
        e.contains("zero.png") && e.contains("character device"),
        "{e}"
    );
    std::fs::remove_file(images.join("a/zero.png")).unwrap();
    let e = run(format!(
        "format = \"image-folder\"\npath = \"{}\"",
        images.display()
    ));
    assert!(
        e.contains("images/a") && e.contains("no PNG or JPEG"),
        "{e}"
    );
    // A spec asking for absurd image sizes is a spec error naming the key.
    let e = run(format!(
        "format = \"image-folder\"\npath = \"{}\"\nsize = [100000, 100000]",
        images.display()
    ));
    assert!(e.contains("data.size"), "{e}");
}
