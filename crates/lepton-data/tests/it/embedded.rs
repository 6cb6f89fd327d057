use lepton_data::{prepare, DataSpec, Format, PreprocessSpec, Targets};

use crate::data_dir;

fn spec(format: Format, path: &str) -> DataSpec {
    toml::from_str::<DataSpec>(&format!(
        "format = \"{}\"\npath = \"{path}\"",
        match format {
            Format::Mnist => "mnist",
            Format::Csv => "csv",
            _ => unreachable!(),
        }
    ))
    .unwrap()
}

#[test]
fn embedded_mnist_matches_its_pins_and_known_statistics() {
    let dir = data_dir().join("mnist");
    let (train, test) = lepton_data::images::load_mnist(&dir).unwrap();
    assert_eq!(train.len(), 60_000);
    assert_eq!(test.as_ref().unwrap().len(), 10_000);
    assert_eq!(&train.labels[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    let mean = train.pixels.iter().map(|&p| p as f64).sum::<f64>() / train.pixels.len() as f64;
    assert!((mean - 33.3184).abs() < 1e-3, "mean pixel {mean}");
    for p in train.pins.iter().chain(&test.unwrap().pins) {
        assert_eq!(
            p.matches_pin,
            Some(true),
            "{} differs from its pin",
            p.file.display()
        );
    }
}

#[test]
fn mnist_prepare_fits_normalisation_on_the_training_split() {
    let mut s = spec(Format::Mnist, data_dir().join("mnist").to_str().unwrap());
    s.limit = Some(2000);
    let p = prepare(&s, &PreprocessSpec::default(), std::path::Path::new(""), 3).unwrap();
    assert_eq!(p.train.len() + p.validation.len(), 2000);
    assert!(
        (195..=205).contains(&p.validation.len()),
        "{}",
        p.validation.len()
    ); // 10% of each class, rounded per class
    assert_eq!(p.test.as_ref().unwrap().len(), 10_000);
    assert_eq!(p.train.sample_shape, vec![1, 28, 28]);
    let m = p.train.features.iter().map(|&v| v as f64).sum::<f64>() / p.train.features.len() as f64;
    assert!(m.abs() < 1e-3, "training features have mean {m}");
}

#[test]
fn tabular_sets_load_with_the_right_tasks_and_shapes() {
    let dir = data_dir().join("tabular");
    for (file, classes, features) in [
        ("iris.csv", 3, 4),
        ("wine.csv", 3, 13),
        ("breast_cancer.csv", 2, 30),
        ("digits.csv", 10, 64),
        ("diabetes.csv", 0, 10),
    ] {
        let s = spec(Format::Csv, dir.join(file).to_str().unwrap());
        let p = prepare(&s, &PreprocessSpec::default(), std::path::Path::new(""), 0).unwrap();
        assert_eq!(p.train.sample_shape, vec![features], "{file}");
        match &p.train.targets {
            Targets::Classes { class_names, .. } => {
                assert_eq!(class_names.len(), classes, "{file}")
            }
            Targets::Regression { .. } => assert_eq!(classes, 0, "{file} should be classification"),
        }
    }
}
