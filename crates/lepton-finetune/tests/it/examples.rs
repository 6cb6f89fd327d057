//! The committed fine-tuning example specs parse and validate (lepton-train checks the others).

use lepton_finetune::config::FinetuneFile;

#[test]
fn every_finetune_example_spec_parses_and_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let text = std::fs::read_to_string(&p).unwrap();
        if !text.lines().any(|l| l.trim() == "[finetune]") {
            continue;
        }
        // BASE comes from the command line, as `lepton finetune --spec FILE BASE` gives it.
        let mut raw: toml::Table =
            toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let section = raw["finetune"].as_table_mut().unwrap();
        if !section.contains_key("base") {
            section.insert("base".into(), "model.gguf".into());
        }
        let spec = FinetuneFile::from_str_in(&toml::to_string(&raw).unwrap(), &p)
            .unwrap_or_else(|e| panic!("{}: {e:?}", p.display()));
        assert_eq!(
            spec.finetune.targets,
            ["q_proj", "v_proj"],
            "{}",
            p.display()
        );
        n += 1;
    }
    assert!(n >= 1, "no [finetune] example in {}", dir.display());
}
