//! Command-line definitions (clap). Every command's `--help` carries an example.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Lepton: from data to a secure, observable AI service, in one binary.
#[derive(Debug, Parser)]
#[command(name = "lepton", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// Print nothing but errors.
    #[arg(long, short, global = true, conflicts_with = "json")]
    pub quiet: bool,
    /// Print machine-readable JSON (one object per line for streams of events).
    #[arg(long, global = true)]
    pub json: bool,
    /// Number of compute threads (default: all cores).
    #[arg(long, global = true, env = "LEPTON_THREADS")]
    pub threads: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train a model from a spec file and write a run directory.
    #[command(
        after_help = "Example:\n  lepton train examples/mnist-cnn.toml --out runs/mnist-cnn\n  lepton train --resume runs/mnist-cnn"
    )]
    Train(TrainArgs),
    /// Evaluate a trained model (run directory or .photon file) on a data set.
    #[command(
        after_help = "Example:\n  lepton eval runs/mnist-cnn/model.photon --data data/mnist --split test"
    )]
    Eval(EvalArgs),
    /// Predict with a trained model: image files, CSV rows, texts, or a remote server.
    #[command(
        after_help = "Example:\n  lepton predict runs/mnist-cnn/model.photon digit.png\n  lepton predict iris.photon --csv rows.csv\n  lepton predict reviews.photon --text \"a fine play\"\n  lepton predict --url http://127.0.0.1:8080 --model mnist-cnn digit.png"
    )]
    Predict(PredictArgs),
    /// k-fold cross-validation of a spec.
    #[command(after_help = "Example:\n  lepton cv examples/iris-mlp.toml --folds 5")]
    Cv(CvArgs),
    /// Inspect data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Package a run directory into a single .photon file.
    #[command(after_help = "Example:\n  lepton export runs/mnist-cnn -o mnist.photon")]
    Export(ExportArgs),
    /// Print what is inside a .photon file and verify its checksums.
    #[command(after_help = "Example:\n  lepton inspect mnist.photon")]
    Inspect(InspectArgs),
    /// Serve one or more .photon models over HTTP.
    #[command(
        after_help = "Example:\n  lepton serve mnist.photon --listen 127.0.0.1:8080\n  LEPTON_TOKENS=secret:predict lepton serve a.photon b.photon --config serve.toml"
    )]
    Serve(ServeArgs),
    /// Sentence embeddings from a Hugging Face encoder folder (e.g. all-MiniLM-L6-v2).
    #[command(
        after_help = "Example:\n  lepton embed ~/.cache/lepton-assets/models/all-MiniLM-L6-v2 \"The cat sits outside\" \"The cat plays in the garden\"\n  lepton embed MODEL --file sentences.txt --json"
    )]
    Embed(EmbedArgs),
    /// Serve one language model (HF encoder or Llama folder, GGUF file) with the OpenAI API.
    #[command(
        after_help = "Example:\n  lepton run ~/.cache/lepton-assets/models/SmolLM2-135M-Instruct.Q4_1.gguf --name smollm2\n  curl -s http://127.0.0.1:8080/v1/chat/completions -d '{\"model\": \"smollm2\", \"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}'"
    )]
    Run(RunArgs),
    /// Generate text from a prompt with a language-model photon or run directory, a GGUF file or
    /// a Llama folder (streamed to stdout).
    #[command(
        after_help = "Example:\n  lepton generate runs/shakespeare-gpt --prompt \"ROMEO:\" --temperature 0.8 --top-k 40 --seed 1 --max-tokens 200\n  lepton generate ~/.cache/lepton-assets/models/SmolLM2-135M-Instruct.Q4_1.gguf --prompt \"The capital of France is\" --temperature 0 --max-tokens 32"
    )]
    Generate(GenerateArgs),
    /// Chat interactively with a GGUF file or Llama folder (its chat template, streamed replies).
    #[command(
        after_help = "Example:\n  lepton chat ~/.cache/lepton-assets/models/SmolLM2-135M-Instruct.Q4_1.gguf --system \"Be brief.\""
    )]
    Chat(ChatArgs),
}

/// Sampling flags shared by `generate` and `chat` (defaults as OpenAI's API).
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Softmax temperature; 0 = greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f32,
    /// Nucleus sampling mass in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Keep only the k most likely tokens (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// RNG seed (default: random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Stop before this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Penalty > 1 discourages repeating tokens.
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A language-model .photon file or run directory, a GGUF file or a Hugging Face folder
    /// (Llama family).
    pub model: PathBuf,
    /// The prompt, used as is (no chat template).
    #[arg(long, short)]
    pub prompt: String,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Debug, Args)]
pub struct ChatArgs {
    /// A GGUF file or a Hugging Face Llama folder, with a chat template.
    pub model: PathBuf,
    /// A system message to start the conversation with.
    #[arg(long)]
    pub system: Option<String>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The spec file (TOML). Not needed with --resume.
    #[arg(required_unless_present = "resume")]
    pub spec: Option<PathBuf>,
    /// Run directory to write (default: runs/NAME-TIMESTAMP).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Continue a killed or finished run from its last checkpoint.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "spec")]
    pub resume: Option<PathBuf>,
    /// Override the number of epochs.
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Override the seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Do not write model.photon at the end.
    #[arg(long)]
    pub no_export: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A run directory or a .photon file.
    pub model: PathBuf,
    /// Data to evaluate on (default: the test split of the data the model was trained on).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Write report.json, report.md and plots into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A .photon file or run directory (omit with --url).
    #[arg(required_unless_present = "url")]
    pub model: Option<PathBuf>,
    /// Inputs: image files (PNG/JPEG).
    pub inputs: Vec<PathBuf>,
    /// A text to classify with a text model (repeatable; also with --url).
    #[arg(long, conflicts_with = "csv")]
    pub text: Vec<String>,
    /// CSV file of rows to predict (header with the training column names).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// How many labels to show per input.
    #[arg(long, default_value_t = 3)]
    pub top_k: usize,
    /// Predict through a running server instead of loading the model.
    #[arg(long, requires = "model_name")]
    pub url: Option<String>,
    /// Model name on the server (with --url).
    #[arg(long = "model", id = "model_name")]
    pub model_name: Option<String>,
    /// Bearer token for the server (with --url).
    #[arg(long, env = "LEPTON_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct CvArgs {
    /// The spec file (TOML).
    pub spec: PathBuf,
    /// Number of folds.
    #[arg(long, short = 'k', default_value_t = 5)]
    pub folds: usize,
    /// Directory for the per-fold and summary reports.
    #[arg(long, short)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Summarise a data set: format, counts, class balance, duplicates, missing values, pins.
    #[command(
        after_help = "Example:\n  lepton data inspect data/mnist\n  lepton data inspect data/tabular/iris.csv"
    )]
    Inspect {
        /// A folder of IDX files, a CSV file, an image folder or a CIFAR-10 batch.
        path: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run directory.
    pub run_dir: PathBuf,
    /// Output .photon file.
    #[arg(long, short)]
    pub output: PathBuf,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The .photon file.
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// A Hugging Face encoder folder (config.json, model.safetensors, tokenizer.json).
    pub model: PathBuf,
    /// Texts to embed.
    pub texts: Vec<String>,
    /// Also embed each line of this file.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Texts per forward pass.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Embed the texts this many times and report the fastest (benchmarks).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A Hugging Face folder (BERT encoder or Llama decoder) or a GGUF file.
    pub model: PathBuf,
    /// Model name in the API (default: the file or folder name without extension).
    #[arg(long)]
    pub name: Option<String>,
    /// Server configuration (TOML).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "LEPTON_LISTEN")]
    pub listen: Option<String>,
    /// Allow serving on a non-loopback address without any API token.
    #[arg(long)]
    pub insecure: bool,
    /// Most sequences decoded together (decoders).
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// KV-cache budget in positions over all running sequences (decoders).
    #[arg(long, default_value_t = 32768)]
    pub kv_cache_tokens: usize,
    /// Positions kept for prefix reuse (prompts sharing a start, e.g. a system prompt or earlier
    /// chat turns, skip recomputing it), held in addition to the KV-cache budget; 0 disables it.
    #[arg(long, default_value_t = 4096)]
    pub prefix_cache_tokens: usize,
    /// Most requests waiting for the engine before new ones get 503.
    #[arg(long, default_value_t = 64)]
    pub queue_capacity: usize,
    /// Largest `max_tokens` one request may ask for (decoders); more is a 400 naming
    /// `max_tokens`, so one client cannot hold the KV cache for a whole context.
    #[arg(long, default_value_t = 4096)]
    pub max_tokens_limit: usize,
    /// A PEFT LoRA adapter folder to serve over the model as NAME (repeatable); requests pick it
    /// with `"model": "MODEL:NAME"` or `"NAME"`.
    #[arg(long = "lora", value_name = "NAME=PATH", value_parser = crate::commands::run::parse_lora)]
    pub lora: Vec<(String, PathBuf)>,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// .photon files, Hugging Face folders (encoders, Llama decoders) or GGUF files to serve (the
    /// model name is the file stem; language models get the OpenAI-compatible /v1 routes).
    pub models: Vec<PathBuf>,
    /// Server configuration (TOML).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "LEPTON_LISTEN")]
    pub listen: Option<String>,
    /// Allow serving on a non-loopback address without any API token.
    #[arg(long)]
    pub insecure: bool,
}
