use std::fs::File;
use std::io::{BufWriter, Write};

use anyhow::Context as _;
use mediasift_store::StoreError;

use crate::cli::{ExportArgs, ExportFormat, GlobalArgs};
use crate::context;

pub async fn run(g: &GlobalArgs, args: ExportArgs) -> anyhow::Result<()> {
    let cfg = context::load_config(g)?;
    let store = context::open_existing(&cfg).await?;
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(sink);
    let ExportFormat::Jsonl = args.format;
    let count = store
        .export(|record| {
            serde_json::to_writer(&mut out, &record)
                .map_err(|e| StoreError::Malformed(e.to_string()))?;
            out.write_all(b"\n")
                .map_err(|e| StoreError::Malformed(format!("writing output: {e}")))
        })
        .await?;
    out.flush()?;
    tracing::debug!(records = count, "Export finished");
    Ok(())
}
