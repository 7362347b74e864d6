use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use mediasift_models::{Tesseract, catalog};

use crate::cli::GlobalArgs;
use crate::context;

/// Where each configured model resolves, with checksum and size.
pub fn list(g: &GlobalArgs) -> anyhow::Result<()> {
    let cfg = context::load_config(g)?;
    let store = mediasift_pipeline::model_store(&cfg);
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(["model", "status", "source", "location", "sha256", "size"]);
    for spec in catalog::KNOWN {
        match store.resolve(spec) {
            Ok(m) => t.add_row([
                m.id.clone(),
                "installed".into(),
                m.source.to_string(),
                m.dir.display().to_string(),
                m.sha256[..16.min(m.sha256.len())].to_string(),
                format!("{:.1} MB", m.size_bytes as f64 / 1e6),
            ]),
            Err(e) => t.add_row([
                spec.id.to_string(),
                "missing".into(),
                String::new(),
                e.to_string(),
                String::new(),
                String::new(),
            ]),
        };
    }
    match Tesseract::new(
        &cfg.ocr().tesseract,
        &cfg.ocr().languages,
        cfg.ocr().timeout_secs,
    ) {
        Ok(ocr) => t.add_row(["tesseract", "installed", "system", ocr.version(), "", ""]),
        Err(e) => t.add_row([
            "tesseract".to_string(),
            "missing".into(),
            String::new(),
            e.to_string(),
            String::new(),
            String::new(),
        ]),
    };
    println!("{t}\nmodels_dir: {}", cfg.models_dir().display());
    Ok(())
}

/// Installs the offline model set into models_dir (idempotent, checksummed).
pub fn fetch(g: &GlobalArgs) -> anyhow::Result<()> {
    let cfg = context::load_config(g)?;
    let store = mediasift_pipeline::model_store(&cfg);
    for spec in catalog::OFFLINE_SET {
        let (m, downloaded) = store.fetch(spec)?;
        let what = if downloaded {
            "installed"
        } else {
            "already installed"
        };
        println!(
            "{} {what} in {} (sha256 {})",
            m.id,
            m.dir.display(),
            &m.sha256[..16.min(m.sha256.len())]
        );
    }
    Ok(())
}

/// Converts a CTranslate2 Whisper folder into `models_dir/<id>`.
pub fn import_ct2(g: &GlobalArgs, dir: &std::path::Path, id: &str) -> anyhow::Result<()> {
    let cfg = context::load_config(g)?;
    if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
        anyhow::bail!("--id must be a plain folder name, got {id:?}");
    }
    let dest = cfg.models_dir().join(id);
    mediasift_models::whisper::ct2::import_dir(dir, &dest)
        .map_err(|e| anyhow::anyhow!("importing {}: {e}", dir.display()))?;
    println!("{id} written to {}", dest.display());
    Ok(())
}
