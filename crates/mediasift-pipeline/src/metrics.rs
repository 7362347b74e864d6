//! Prometheus metrics of the pipeline. Names are defined here and nowhere else; labels are
//! bounded (media kind, outcome, error kind), never paths.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry,
    TextEncoder,
};

pub const FILES_TOTAL: &str = "mediasift_files_total";
pub const FAILURES_TOTAL: &str = "mediasift_failures_total";
pub const DECODE_SECONDS: &str = "mediasift_decode_seconds";
pub const ANALYZE_SECONDS: &str = "mediasift_analyze_seconds";
pub const BYTES_READ_TOTAL: &str = "mediasift_bytes_read_total";
pub const ABANDONED_DECODERS_TOTAL: &str = "mediasift_abandoned_decoders_total";
pub const DECODER_PANICS_TOTAL: &str = "mediasift_decoder_panics_total";
pub const STORE_WRITE_SECONDS: &str = "mediasift_store_write_seconds";

/// All pipeline metrics, registered in one registry.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Files by kind and outcome (`analyzed`, `reused`, `skipped`, `failed`).
    pub files: IntCounterVec,
    /// Failures by kind and error kind.
    pub failures: IntCounterVec,
    pub decode_seconds: HistogramVec,
    pub analyze_seconds: HistogramVec,
    pub bytes_read: IntCounter,
    pub abandoned_decoders: IntCounter,
    pub decoder_panics: IntCounter,
    pub store_write_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let files = IntCounterVec::new(
            Opts::new(FILES_TOTAL, "Files processed, by media kind and outcome."),
            &["kind", "outcome"],
        )
        .expect("static metric definition");
        let failures = IntCounterVec::new(
            Opts::new(
                FAILURES_TOTAL,
                "Failed files, by media kind and error kind.",
            ),
            &["kind", "error_kind"],
        )
        .expect("static metric definition");
        let decode_seconds = HistogramVec::new(
            HistogramOpts::new(DECODE_SECONDS, "Time to sniff and decode one file.").buckets(vec![
                0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["kind"],
        )
        .expect("static metric definition");
        let analyze_seconds = HistogramVec::new(
            HistogramOpts::new(
                ANALYZE_SECONDS,
                "Time to run the analyzers on one decoded file.",
            )
            .buckets(vec![
                0.001, 0.005, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["kind"],
        )
        .expect("static metric definition");
        let bytes_read = IntCounter::new(BYTES_READ_TOTAL, "Bytes of input hashed.")
            .expect("static metric definition");
        let abandoned_decoders = IntCounter::new(
            ABANDONED_DECODERS_TOTAL,
            "Decoders abandoned after the decode timeout.",
        )
        .expect("static metric definition");
        let decoder_panics = IntCounter::new(
            DECODER_PANICS_TOTAL,
            "Decoder or analyzer panics caught and turned into errors.",
        )
        .expect("static metric definition");
        let store_write_seconds = Histogram::with_opts(
            HistogramOpts::new(
                STORE_WRITE_SECONDS,
                "Time to write one file's record and blobs.",
            )
            .buckets(vec![0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0]),
        )
        .expect("static metric definition");
        for c in [
            Box::new(files.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(decode_seconds.clone()),
            Box::new(analyze_seconds.clone()),
            Box::new(bytes_read.clone()),
            Box::new(abandoned_decoders.clone()),
            Box::new(decoder_panics.clone()),
            Box::new(store_write_seconds.clone()),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            files,
            failures,
            decode_seconds,
            analyze_seconds,
            bytes_read,
            abandoned_decoders,
            decoder_panics,
            store_write_seconds,
        }
    }

    /// The Prometheus text exposition of every metric, the process-wide inference metrics
    /// included.
    pub fn render(&self) -> String {
        render(&self.registry)
    }
}

/// The text exposition of `registry` plus the process-wide registry (inference metrics).
pub fn render(registry: &Registry) -> String {
    let mut families = registry.gather();
    families.extend(prometheus::gather());
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&families, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Model inference, process-wide (models are loaded once per process, whatever runs them):
/// forward-pass time and batch size per model.
#[derive(Debug)]
pub struct InferenceMetrics {
    pub seconds: HistogramVec,
    pub batch_size: HistogramVec,
}

pub fn inference() -> &'static InferenceMetrics {
    static METRICS: std::sync::LazyLock<InferenceMetrics> = std::sync::LazyLock::new(|| {
        let seconds = HistogramVec::new(
            HistogramOpts::new(
                "mediasift_inference_seconds",
                "Time of one forward pass, by model.",
            )
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["model"],
        )
        .expect("static metric definition");
        let batch_size = HistogramVec::new(
            HistogramOpts::new(
                "mediasift_inference_batch_size",
                "Inputs per forward pass, by model.",
            )
            .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]),
            &["model"],
        )
        .expect("static metric definition");
        let _ = prometheus::register(Box::new(seconds.clone()));
        let _ = prometheus::register(Box::new(batch_size.clone()));
        InferenceMetrics {
            seconds,
            batch_size,
        }
    });
    &METRICS
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
