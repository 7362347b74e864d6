use mediasift_media::{Decoded, Intake};
use serde_json::json;

use super::{Analyzer, FileContext, Output};

/// Format facts: dimensions, duration, codecs, sample rate, channels, EXIF, text encoding.
#[derive(Debug, Clone, Copy, Default)]
pub struct Metadata;

impl Analyzer for Metadata {
    fn name(&self) -> &'static str {
        "metadata"
    }

    fn version(&self) -> &'static str {
        "1"
    }

    fn analyze(&self, intake: &Intake, ctx: FileContext<'_>) -> Option<Output> {
        let details = match &intake.decoded {
            Decoded::Image(i) => serde_json::to_value(&i.info),
            Decoded::Audio(a) => serde_json::to_value(&a.info),
            Decoded::Video(v) => serde_json::to_value(&v.info),
            Decoded::Text(t) => serde_json::to_value(&t.info),
        }
        .ok()?;
        let mut value = json!({
            "format": intake.format.as_str(),
            "size_bytes": ctx.size_bytes,
        });
        if let (Some(obj), serde_json::Value::Object(details)) = (value.as_object_mut(), details) {
            obj.extend(details);
        }
        if let (Some(obj), Some(ext)) = (value.as_object_mut(), &intake.extension_mismatch) {
            obj.insert("extension".into(), json!(ext));
        }
        Some(Output::value(value))
    }
}
