//! Resident memory of loading a GGUF model, against the file's size: the process before loading,
//! what the file's metadata and the tokenizer keep alive (each measured alone, after freed memory
//! is given back), the whole [`TextModel::load`], and the peak (`VmHWM`). Prints one JSON object;
//! `bench/llm/load_memory.sh` runs it on each model.
//!
//!     cargo run --release -p lepton-llm --example load_memory -- MODEL.gguf

use lepton_llm::gguf::GgufFile;
use lepton_llm::runtime::memory::release_freed;
use lepton_llm::TextModel;

fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("usage: load_memory MODEL.gguf"))?;
    let file_bytes = std::fs::metadata(&path)?.len();
    let start = status("VmRSS");
    // The parts alone (each measured with freed memory given back), then the whole load.
    let (metadata, tokenizer) = {
        let file = GgufFile::open(std::path::Path::new(&path))?;
        release_freed();
        let metadata = status("VmRSS");
        let tok = file.tokenizer()?;
        drop(file);
        release_freed();
        let tokenizer = status("VmRSS");
        drop(tok);
        release_freed();
        (metadata, tokenizer)
    };
    let model = TextModel::load(&path)?;
    let loaded = status("VmRSS");
    let weights = model.llama().weight_bytes() as u64;
    println!(
        "{{\"file_bytes\": {file_bytes}, \"rss_start_bytes\": {start}, \"rss_metadata_bytes\": {metadata}, \"rss_tokenizer_bytes\": {tokenizer}, \"rss_loaded_bytes\": {loaded}, \"weight_bytes\": {weights}, \"hwm_bytes\": {}, \"rss_over_file\": {:.3}, \"weights_over_file\": {:.3}}}",
        status("VmHWM"),
        loaded as f64 / file_bytes as f64,
        weights as f64 / file_bytes as f64,
    );
    std::hint::black_box(&model);
    Ok(())
}

/// A `kB` field of /proc/self/status in bytes (0 where unavailable).
fn status(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
