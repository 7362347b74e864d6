use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Analyse media archives (images, audio, video, text) into searchable, moderated records.
#[derive(Debug, Parser)]
#[command(name = "mediasift", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file layered over `config/mediasift.toml` and under `MEDIASIFT__SECTION__KEY` env.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (database and blobs); overrides `store.data_dir`.
    #[arg(long, global = true, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (`info`, `debug`, `mediasift_media=debug` …); RUST_LOG works too.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyze files and folders into the embedded store (SQLite + local blobs).
    Analyze(AnalyzeArgs),
    /// Write every record, one JSON object per line.
    Export(ExportArgs),
    /// Print the record(s) of a path or content hash.
    Show {
        /// A recorded path, or a content hash (or a prefix of ≥ 8 hex digits).
        path_or_hash: String,
    },
    /// List failed files with their reasons.
    Failures,
    /// List groups of near-duplicate images.
    Duplicates {
        /// Max differing pHash bits (default from `duplicates.max_hamming_distance`).
        #[arg(long)]
        max_distance: Option<u32>,
    },
    /// Benchmarks: throughput side by side with the same-run peak and peer implementations.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Model store commands.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Distributed: apply the Postgres migrations (`distributed.postgres_url`).
    Migrate,
    /// Distributed: publish a job per file of a local folder or `s3://bucket/prefix`.
    Enqueue {
        /// A local folder or `s3://bucket/prefix`.
        source: String,
        /// Batch name (default: the source); enqueueing the same batch again skips known files.
        #[arg(long)]
        batch: Option<String>,
        /// Never draw a progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Distributed: route jobs to the modality workers.
    Dispatcher,
    /// Distributed: run one modality's analyzers on its tasks.
    Worker {
        #[arg(long, value_parser = ["vision", "audio", "text"])]
        modality: String,
        /// `cpu` or `cuda:N` (overrides `models.device`).
        #[arg(long)]
        device: Option<String>,
        /// Tasks at once (default `distributed.concurrency`; 0 = one per core).
        #[arg(long)]
        concurrency: Option<usize>,
    },
    /// Distributed: join each job's modality results into its moderated record.
    Fusion,
    /// Distributed: jobs per state, rate, ETA and dead letters (of one batch, or all).
    Status {
        /// Batch id or name.
        batch: Option<String>,
    },
    /// Distributed: the dead-letter stream.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters with their reasons, oldest first.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Publish dead-lettered messages again (after fixing the cause).
    Retry {
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Drop every dead letter.
    Purge,
}

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Files or folders to analyze (folders recursively).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Re-analyze files even when their content and the analyzers are unchanged.
    #[arg(long)]
    pub force: bool,
    /// Include hidden files and folders.
    #[arg(long)]
    pub hidden: bool,
    /// Never draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Write Prometheus metrics of the run to this file (textfile-collector format).
    #[arg(long, value_name = "FILE")]
    pub metrics_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
    pub format: ExportFormat,
    /// Output file (default: stdout).
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Image and text models: candle vs onnxruntime on the same network, matmul peak, MiniLM.
    Vision(BenchArgs),
    /// Whisper: wall time and real-time factor per clip vs faster-whisper on the same weights.
    Audio(AudioBenchArgs),
    /// Distributed mode, no-op analyzers: jobs/s from enqueue to record through NATS + Postgres.
    Queue(QueueBenchArgs),
    /// Distributed mode vs `mediasift analyze` on the same media folder (model-bound).
    Distributed(DistBenchArgs),
}

#[derive(Debug, Args)]
pub struct QueueBenchArgs {
    /// Jobs (tiny text files) to push through.
    #[arg(long, default_value_t = 20_000)]
    pub jobs: usize,
    /// Tasks the (no-op) text worker handles at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
}

#[derive(Debug, Args)]
pub struct DistBenchArgs {
    /// The media folder both modes analyze.
    #[arg(long, default_value = "tests/fixtures/media")]
    pub input: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct AudioBenchArgs {
    /// Whisper models to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "whisper-tiny.en,whisper-base"
    )]
    pub models: Vec<String>,
    /// Beam widths to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,5")]
    pub beams: Vec<usize>,
    /// Folder whose speech_* files are the clips.
    #[arg(long, default_value = "tests/fixtures/media/audio")]
    pub clips: std::path::PathBuf,
    /// Also a file of the clips concatenated to at least this many seconds (0: none).
    #[arg(long, default_value_t = 600.0)]
    pub long_secs: f64,
    /// faster-whisper cpu_threads (candle uses every core).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// Word timestamps on both sides (one more decoder pass per window; off by default, as
    /// faster-whisper's default).
    #[arg(long)]
    pub word_timestamps: bool,
    /// The faster-whisper side (needs `pip install faster-whisper`).
    #[arg(long, default_value = "scripts/bench/whisper_peer.py")]
    pub peer_script: std::path::PathBuf,
    /// Python interpreter for the peer script.
    #[arg(long, env = "MEDIASIFT_BENCH_PYTHON", default_value = "python3")]
    pub python: String,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub batches: Vec<usize>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Rounds of onnxruntime then ours (every batch size each): figures are the medians over
    /// the rounds, ratios the median of the rounds' ratios with their range.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// onnxruntime threads (candle uses every core).
    #[arg(long, default_value_t = 2)]
    pub threads: usize,
    /// The onnxruntime side (needs `pip install onnx onnxruntime numpy pillow safetensors`);
    /// `onnx_models.py` beside it builds the MobileNetV2 and MiniLM graphs.
    #[arg(long, default_value = "scripts/bench/onnx_peer.py")]
    pub peer_script: std::path::PathBuf,
    /// Python interpreter for the peer scripts.
    #[arg(long, env = "MEDIASIFT_BENCH_PYTHON", default_value = "python3")]
    pub python: String,
    /// Images for the sustained and end-to-end (JPEG files through `analyze`) CLIP rows.
    #[arg(long, default_value_t = 1000)]
    pub clip_images: usize,
    /// Networks to measure (the matmul peak is always measured).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "open_nsfw,mobilenet_v2,minilm,clip"
    )]
    pub models: Vec<VisionBench>,
}

/// A network `mediasift bench vision` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum VisionBench {
    #[value(name = "open_nsfw")]
    OpenNsfw,
    #[value(name = "mobilenet_v2")]
    MobilenetV2,
    Minilm,
    Clip,
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Configured models: where each resolves, sha256 and size.
    List,
    /// Install the offline model set into models_dir (idempotent, checksummed).
    Fetch,
    /// Convert a CTranslate2 Whisper model (model.bin, config.json, tokenizer.json) to
    /// safetensors with Hugging Face names, config.json and tokenizer.json.
    #[command(name = "import-ct2")]
    ImportCt2 {
        /// The CTranslate2 model folder.
        dir: std::path::PathBuf,
        /// Model id: the folder under models_dir it is written to.
        #[arg(long)]
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective configuration (defaults, files and environment merged) as TOML.
    Show,
}
