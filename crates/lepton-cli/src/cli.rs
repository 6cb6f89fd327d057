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
    /// Hyper-parameter search: trials of `lepton train` over a space of spec values.
    #[command(
        after_help = "Example:\n  lepton tune examples/mnist-mlp.toml --space space.toml --trials 64 --parallel 2 --scheduler asha --dir tune/mnist\n\nspace.toml:\n  \"optimizer.lr\" = { kind = \"log\", low = 1e-4, high = 1e-1 }\n  \"model.layers.1.out-features\" = { kind = \"int\", low = 32, high = 512 }\n  \"train.batch-size\" = { kind = \"choice\", values = [32, 64, 128] }"
    )]
    Tune(TuneArgs),
    /// k-fold cross-validation of a spec.
    #[command(after_help = "Example:\n  lepton cv examples/iris-mlp.toml --folds 5")]
    Cv(CvArgs),
    /// Inspect data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Package a run directory into a single .photon file.
    #[command(after_help = "Example:\n  lepton export runs/mnist-cnn -o mnist.photon")]
    Export(ExportArgs),
    /// Prune and/or quantize a trained model to int8, gated by re-evaluation on held-out data.
    #[command(
        after_help = "Example:\n  lepton compress runs/mnist-cnn -o mnist-int8.photon --quantize int8 --calibration-samples 512\n  lepton compress runs/mnist-cnn -o small.photon --prune 0.5 --structured --finetune-epochs 1"
    )]
    Compress(CompressArgs),
    /// Print what is inside a .photon (checksums verified), a GGUF file or a Hugging Face folder.
    #[command(
        after_help = "Example:\n  lepton inspect mnist.photon\n  lepton inspect SmolLM2-135M-Instruct.Q4_K_M.gguf\n  lepton --json inspect all-MiniLM-L6-v2/"
    )]
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
    /// List, show, compare and export training runs (run directories).
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Serve the local run dashboard (runs table, learning curves, reports) in the browser.
    #[command(
        after_help = "Example:\n  lepton ui runs --listen 127.0.0.1:6006\n  then open http://127.0.0.1:6006"
    )]
    Ui(UiArgs),
    /// Explain a prediction: attributions as JSON and a heatmap over the image, kernel SHAP or
    /// permutation importance for tabular models, or a layer's feature maps (--layer).
    #[command(
        after_help = "Example:\n  lepton explain runs/mnist-cnn digit.png --method integrated-gradients --steps 256\n  lepton explain mnist.photon digit.png --method occlusion --window 4 --out maps/\n  lepton explain mnist.photon digit.png --layer conv2d.1\n  lepton explain iris.photon rows.csv --method kernel-shap --background train.csv\n  lepton explain iris.photon iris.csv --method permutation --label species"
    )]
    Explain(ExplainArgs),
    /// LoRA fine-tuning of a GGUF file or Llama folder on text or chat JSONL (PEFT-format adapter).
    #[command(
        after_help = "Example:\n  lepton finetune ~/.cache/lepton-assets/models/SmolLM2-135M-Instruct.Q4_1.gguf --data data/shakespeare/input.txt --lora-r 8 --lora-alpha 16 --targets q_proj,v_proj --steps 40 --out runs/smollm2-lora\n  lepton finetune --spec examples/smollm2-lora.toml --out runs/smollm2-lora\n  lepton finetune --resume --out runs/smollm2-lora"
    )]
    Finetune(FinetuneArgs),
    /// LoRA adapter tools.
    #[command(subcommand)]
    Lora(LoraCommand),
}

#[derive(Debug, Args)]
pub struct FinetuneArgs {
    /// The base model: a GGUF file or a Hugging Face Llama folder (or `base` in the spec).
    pub base: Option<PathBuf>,
    /// A spec with a `[finetune]` section (and optional `[optimizer]`, `[schedule]`); the
    /// options below override it.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Training data: plain text, or chat JSONL (`.jsonl`, one `{"messages": [...]}` a line).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Validation data (default: the last `val-fraction` of the data's windows).
    #[arg(long)]
    pub val_data: Option<PathBuf>,
    /// LoRA rank [spec default: 8].
    #[arg(long)]
    pub lora_r: Option<usize>,
    /// LoRA alpha; the update is scaled by alpha / r [spec default: 16].
    #[arg(long)]
    pub lora_alpha: Option<f64>,
    /// Dropout on the adapter input [spec default: 0].
    #[arg(long)]
    pub lora_dropout: Option<f32>,
    /// Adapted modules, comma-separated [spec default: q_proj,v_proj].
    #[arg(long, value_delimiter = ',')]
    pub targets: Option<Vec<String>>,
    /// Optimizer steps (exclusive with --epochs).
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Epochs over the training windows [default: 1].
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Tokens per window [spec default: 128].
    #[arg(long)]
    pub seq_len: Option<usize>,
    /// Windows per step [spec default: 4].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate of the optimizer (AdamW unless the spec says otherwise) [default: 2e-4].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of the adapter initialisation, shuffling and dropout [spec default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Keep the windows in file order.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Use at most this many validation windows.
    #[arg(long)]
    pub max_val_windows: Option<usize>,
    /// How the frozen base runs: f32 (dequantized, PEFT's numbers) or quantized (GGUF blocks on
    /// the integer kernels, QLoRA-style: faster, less memory) [spec default: f32].
    #[arg(long, value_enum)]
    pub base_precision: Option<BasePrecisionArg>,
    /// The run folder (metrics.jsonl, report.json, adapter/, checkpoint/).
    #[arg(long, short)]
    pub out: PathBuf,
    /// Continue the run in --out from its checkpoint (its saved spec; other options ignored).
    #[arg(long)]
    pub resume: bool,
}

/// `--base-precision` values (lepton-finetune's `BasePrecision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BasePrecisionArg {
    F32,
    Quantized,
}

#[derive(Debug, Subcommand)]
pub enum LoraCommand {
    /// Fold an adapter into its base and write a Hugging Face Llama folder (f32 safetensors).
    #[command(
        after_help = "Example:\n  lepton lora merge ~/.cache/lepton-assets/models/SmolLM2-135M-Instruct.Q4_1.gguf runs/smollm2-lora/adapter -o smollm2-merged"
    )]
    Merge(LoraMergeArgs),
}

#[derive(Debug, Args)]
pub struct LoraMergeArgs {
    /// The base model the adapter was trained on (GGUF file or Llama folder).
    pub base: PathBuf,
    /// The adapter folder (adapter_config.json + adapter_model.safetensors, PEFT's layout).
    pub adapter: PathBuf,
    /// The folder to write.
    #[arg(long, short)]
    pub out: PathBuf,
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
    /// Data-parallel training as one rank of an MPI job: `mpirun -np N lepton train SPEC
    /// --distributed`. Rank 0 writes the run directory (pass the same --out to every rank).
    #[arg(long)]
    pub distributed: bool,
    /// With --distributed: append each step's gradient-sync timings (JSON lines) to this file;
    /// `{rank}` in the path is replaced by the rank.
    #[arg(long, requires = "distributed", value_name = "PATH")]
    pub dist_timeline: Option<PathBuf>,
    /// With --distributed: gradient bucket size in MiB.
    #[arg(long, requires = "distributed", default_value_t = 25)]
    pub bucket_mb: usize,
    /// With --distributed: run the backward pass in segments of layers and start each
    /// segment's gradient all-reduce while the earlier segments are differentiated (`true` or
    /// `false`; default `true`: it measured faster here, see docs/distributed.md).
    #[arg(long, requires = "distributed", default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub overlap: bool,
    /// With --overlap true: the number of segments (at most; about equal parameter bytes).
    #[arg(long, requires = "distributed", default_value_t = 4, value_name = "N")]
    pub overlap_segments: usize,
}

/// Search strategies of `lepton tune`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TuneScheduler {
    /// Random sampling, every trial to the end.
    Random,
    /// The grid of every choice and `points` values of each range.
    Grid,
    /// Tree-structured Parzen estimator after 10 random trials.
    Tpe,
    /// Random sampling, trials stopped at rungs (asynchronous successive halving).
    Asha,
    /// ASHA brackets with growing grace periods.
    Hyperband,
    /// TPE sampling from the completed and rung results so far, trials stopped at rungs as ASHA.
    TpeAsha,
}

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// The spec file (TOML) whose values are searched.
    pub spec: PathBuf,
    /// The search space (TOML: dotted spec key = range).
    #[arg(long)]
    pub space: PathBuf,
    /// Number of trials.
    #[arg(long, default_value_t = 16)]
    pub trials: usize,
    /// Trials running at once (the cores are divided between them).
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Search strategy.
    #[arg(long, value_enum, default_value_t = TuneScheduler::Random)]
    pub scheduler: TuneScheduler,
    /// State directory (resumes the search it holds).
    #[arg(long, default_value = "tune")]
    pub dir: PathBuf,
    /// Sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// ASHA / Hyperband reduction factor.
    #[arg(long, default_value_t = 3)]
    pub eta: u64,
    /// ASHA / Hyperband first rung, in epochs.
    #[arg(long, default_value_t = 1)]
    pub min_epochs: u64,
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
pub struct CompressArgs {
    /// The run directory or .photon file (f32), or a Hugging Face encoder folder (with
    /// --quantize dynamic-int8).
    pub model: PathBuf,
    /// Output .photon file (a new folder for an encoder folder).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Fraction of weights (with --structured: channels and neurons) to remove, in [0, 1).
    #[arg(long)]
    pub prune: Option<f64>,
    /// Remove whole channels/neurons (L1 norm) so the model gets smaller and faster.
    #[arg(long)]
    pub structured: bool,
    /// Fine-tune epochs after pruning (pruned weights stay zero).
    #[arg(long, default_value_t = 0)]
    pub finetune_epochs: usize,
    /// int8 (static, calibrated activation scales) or dynamic-int8.
    #[arg(long, value_enum)]
    pub quantize: Option<QuantizeArg>,
    /// Training samples that calibrate the static int8 activation scales.
    #[arg(long, default_value_t = 512)]
    pub calibration_samples: usize,
    /// How static int8 picks each activation range: mse (least expected squared quantization
    /// error, from a histogram), minmax (the largest |x|), or per-layer (each layer's better of
    /// the two on the held-out samples, never the test set).
    #[arg(long, value_enum, default_value = "mse")]
    pub calibration: CalibrationArg,
    /// Keep each static int8 layer's bias as it is (by default the mean output shift that
    /// quantization causes, measured on the calibration samples, is folded into it).
    #[arg(long)]
    pub no_bias_correction: bool,
    /// Largest accepted drop of held-out accuracy, in points, after any step.
    #[arg(long, default_value_t = 0.5)]
    pub max_drop: f64,
    /// Hugging Face encoder folders: least accepted mean cosine of the int8 embeddings to the f32
    /// ones.
    #[arg(long, default_value_t = 0.995)]
    pub min_cosine: f64,
    /// Write the package even when the gate refuses (the report says so).
    #[arg(long)]
    pub force: bool,
    /// Labelled data for the gate (and calibration) when MODEL has no run directory; for an
    /// encoder folder, a text file of gate sentences, one per line (default: built-in sentences).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

/// `--quantize` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum QuantizeArg {
    Int8,
    DynamicInt8,
}

/// `--calibration` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CalibrationArg {
    Mse,
    Minmax,
    PerLayer,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A .photon file, a GGUF file (architecture, quantization mix, parameters, context, chat
    /// template; whether Lepton runs it), or a Hugging Face model folder (the same, from
    /// `config.json` and the safetensors headers). Only headers are read.
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
    #[arg(long = "lora", value_name = "NAME=PATH", value_parser = parse_lora)]
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

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// Table of the runs in a runs directory (name, kind, status, epochs, best metric, time, size).
    #[command(
        after_help = "Example:\n  lepton runs list runs --sort best --status done\n  lepton runs list --json"
    )]
    List(RunsListArgs),
    /// Details of one run: summary, last epoch, final evaluation, artifacts.
    #[command(after_help = "Example:\n  lepton runs show runs/mnist-cnn")]
    Show(RunsShowArgs),
    /// Hyper-parameters that differ between runs, and their results side by side.
    #[command(after_help = "Example:\n  lepton runs compare runs/iris-a runs/iris-b")]
    Compare(RunsCompareArgs),
    /// Export a run's metrics for other tools (TensorBoard event files).
    #[command(
        after_help = "Example:\n  lepton runs export --tensorboard runs/mnist-cnn -o tb/mnist-cnn\n  tensorboard --logdir tb"
    )]
    Export(RunsExportArgs),
}

#[derive(Debug, Args)]
pub struct RunsListArgs {
    /// Runs directory (a run directory itself lists that one run).
    #[arg(default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Sort key: name, kind, status, epochs, best, time, size, updated (newest first).
    #[arg(long, default_value = "updated")]
    pub sort: String,
    /// Reverse the order.
    #[arg(long)]
    pub reverse: bool,
    /// Keep runs whose name or id contains this text.
    #[arg(long)]
    pub filter: Option<String>,
    /// Keep runs with this status: running, done, failed.
    #[arg(long)]
    pub status: Option<String>,
    /// Keep runs of this model kind (mlp, cnn, lstm, transformer, ...).
    #[arg(long)]
    pub kind: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunsShowArgs {
    /// Run directory.
    pub run: PathBuf,
}

#[derive(Debug, Args)]
pub struct RunsCompareArgs {
    /// Run directories (two or more).
    #[arg(required = true, num_args = 2..)]
    pub runs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RunsExportArgs {
    /// Write TensorBoard event files.
    #[arg(long, required = true)]
    pub tensorboard: bool,
    /// Run directory.
    pub run: PathBuf,
    /// Output folder (default: RUN/tensorboard).
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Runs directory to show.
    #[arg(default_value = "runs")]
    pub runs_dir: PathBuf,
    /// Address to listen on (loopback by default: the dashboard has no authentication).
    #[arg(long, default_value = "127.0.0.1:6006")]
    pub listen: std::net::SocketAddr,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A .photon file or run directory.
    pub model: PathBuf,
    /// An image file (image models) or a CSV file (tabular models: each row is explained, or the
    /// labelled dataset for --method permutation).
    pub input: PathBuf,
    /// saliency | gradient-x-input | integrated-gradients | occlusion | kernel-shap | permutation.
    #[arg(long, default_value = "saliency")]
    pub method: String,
    /// The class (output index) to explain. Default: the predicted class.
    #[arg(long)]
    pub target: Option<usize>,
    /// Output folder. Default: RUN/explain/ for a run directory, else ./explain/.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Dump and draw a layer's feature maps instead: an index (3), a type (conv2d: the first)
    /// or a type and ordinal (conv2d.1: the second).
    #[arg(long)]
    pub layer: Option<String>,
    /// Integrated gradients: integration steps. Default 50.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Integrated gradients: gauss-legendre (default, as captum) or trapezoid.
    #[arg(long, value_parser = parse_rule)]
    pub rule: Option<lepton_explain::Rule>,
    /// Integrated gradients: zeros (default), mean, blur or an image file.
    #[arg(long)]
    pub baseline: Option<String>,
    /// Integrated gradients with --baseline blur: the Gaussian's sigma in pixels. Default 3.
    #[arg(long)]
    pub sigma: Option<f32>,
    /// Occlusion: patch side in pixels. Default 4.
    #[arg(long)]
    pub window: Option<usize>,
    /// Occlusion: patch stride in pixels. Default 1.
    #[arg(long)]
    pub stride: Option<usize>,
    /// Kernel SHAP: background CSV. Default: the first 100 rows of INPUT.
    #[arg(long)]
    pub background: Option<PathBuf>,
    /// Kernel SHAP: sampled coalitions above 12 features. Default 2048.
    #[arg(long)]
    pub samples: Option<usize>,
    /// Kernel SHAP and permutation: random seed. Default 0.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Permutation: the label column of the CSV.
    #[arg(long)]
    pub label: Option<String>,
    /// Permutation: shuffles per feature.
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
}

fn parse_rule(s: &str) -> Result<lepton_explain::Rule, String> {
    match s {
        "gauss-legendre" => Ok(lepton_explain::Rule::GaussLegendre),
        "trapezoid" => Ok(lepton_explain::Rule::Trapezoid),
        other => Err(format!("'{other}' (gauss-legendre or trapezoid)")),
    }
}

/// Parse one `--lora NAME=PATH`.
fn parse_lora(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}': expected NAME=PATH (a PEFT adapter folder)"))?;
    if !lepton_llm::engine::valid_adapter_name(name) {
        return Err(format!(
            "'{s}': the adapter name '{name}' must be 1-64 letters, digits, '-', '_' or '.'"
        ));
    }
    if path.is_empty() {
        return Err(format!("'{s}': the adapter path is empty"));
    }
    Ok((name.to_owned(), PathBuf::from(path)))
}
