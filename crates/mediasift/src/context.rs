//! What every command needs: logging, the validated config, the opened store.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mediasift_core::{Config, RawConfig};
use mediasift_store::{BlobStore, SqliteStore};
use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

pub fn init_logging(args: &GlobalArgs) {
    let filter = args
        .log
        .as_deref()
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info,symphonia=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Loads and validates the layered configuration; `--data` wins over `store.data_dir`.
pub fn load_config(args: &GlobalArgs) -> anyhow::Result<Config> {
    let cwd = std::env::current_dir().context("cannot determine the working directory")?;
    let raw = RawConfig::load(&cwd, args.config.as_deref())?;
    let mut cfg = raw.validate()?;
    if let Some(dir) = &args.data {
        cfg.set_data_dir(dir.clone());
    }
    Ok(cfg)
}

pub fn blob_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("blobs")
}

pub async fn open_store(cfg: &Config) -> anyhow::Result<(SqliteStore, BlobStore)> {
    let dir = &cfg.store().data_dir;
    let store = SqliteStore::open(dir)
        .await
        .with_context(|| format!("cannot open the data directory {}", dir.display()))?;
    let blobs = BlobStore::local(&blob_dir(dir))
        .with_context(|| format!("cannot open blob storage in {}", dir.display()))?;
    Ok((store, blobs))
}

/// Opens an existing store for reading; a missing data directory is an error, not a new store.
pub async fn open_existing(cfg: &Config) -> anyhow::Result<SqliteStore> {
    let dir = &cfg.store().data_dir;
    if !dir.join(mediasift_store::DB_FILE).is_file() {
        anyhow::bail!(
            "no mediasift data in {} (run `mediasift analyze` first, or pass --data DIR)",
            dir.display()
        );
    }
    Ok(open_store(cfg).await?.0)
}
