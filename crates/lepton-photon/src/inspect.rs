//! What `lepton inspect` shows: the manifest, the tensors and the parameter count.

use std::path::PathBuf;

use serde::Serialize;

use crate::Manifest;

/// One tensor in a photon.
#[derive(Debug, Clone, Serialize)]
pub struct TensorInfo {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: String,
}

/// What `lepton inspect` shows.
#[derive(Debug, Clone, Serialize)]
pub struct Inspect {
    pub file: PathBuf,
    pub file_bytes: u64,
    pub manifest: Manifest,
    pub parameters: usize,
    pub tensors: Vec<TensorInfo>,
    pub checksums_ok: bool,
}

impl Inspect {
    pub fn to_text(&self) -> String {
        let m = &self.manifest;
        let mut s = format!(
            "file        {} ({} bytes)\nformat      photon v{} (lepton {})\nname        {}\ncreated     {} (unix seconds)\nchecksums   {}\ninput       {:?}\ntask        {:?}\nloss        {}\nparameters  {}\n",
            self.file.display(),
            self.file_bytes,
            m.format_version,
            m.lepton_version,
            m.name,
            m.created_at,
            if self.checksums_ok { "verified (header and weights SHA-256)" } else { "NOT verified" },
            m.input_shape,
            m.preprocessor.task(),
            m.loss.kind(),
            self.parameters
        );
        if let lepton_data::Preprocessor::Text {
            vocab,
            max_len,
            class_names,
        } = &m.preprocessor
        {
            s += &format!(
                "text        {}, {} vocabulary of {} tokens, max-len {max_len}\n",
                if class_names.is_empty() {
                    "language model (lepton generate)"
                } else {
                    "text classifier"
                },
                vocab.kind(),
                vocab.len(),
            );
        }
        let classes = m.preprocessor.class_names();
        if !classes.is_empty() {
            s += &format!("classes     {}\n", classes.join(", "));
        }
        s += &format!(
            "schema      {}\n",
            serde_json::to_string(&m.preprocessor.input_schema()).unwrap_or_default()
        );
        if let Some(obj) = m.metrics.as_object() {
            for (k, v) in obj {
                if let Some(x) = v.as_f64() {
                    s += &format!("metric      {k} = {x:.4}\n");
                }
            }
        }
        s += "tensors:\n";
        for t in &self.tensors {
            s += &format!("  {:<32} {:?} {}\n", t.name, t.shape, t.dtype);
        }
        s
    }
}
