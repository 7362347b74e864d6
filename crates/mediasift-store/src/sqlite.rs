//! The embedded record store: one SQLite file under the data directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use futures::TryStreamExt;
use mediasift_core::{ErrorInfo, ErrorKind, ExportRecord, FileStatus, Flag, MediaKind};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlitePool};

use crate::{AnalysisRow, FileRow, FileState, KnownContent, StoreError};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "mediasift.db";

/// The `files` columns every record query selects (a macro so queries stay `&'static str`).
macro_rules! file_columns {
    () => {
        "f.path, f.content_hash, f.size_bytes, f.kind, f.format, f.status, f.error_kind, \
         f.error_message, f.flags, f.analyzed_at"
    };
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Records of the embedded mode.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) `DATA_DIR/mediasift.db` and applies pending migrations.
    pub async fn open(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.to_path_buf(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        MIGRATOR.run(&pool).await?;
        Ok(SqliteStore { pool, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was recorded for a path, if anything.
    pub async fn file_state(&self, path: &str) -> Result<Option<FileState>, StoreError> {
        let row = sqlx::query(
            "SELECT content_hash, pipeline_signature, kind, error_kind FROM files WHERE path = ?",
        )
        .bind(path.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(FileState {
                content_hash: r.get(0),
                pipeline_signature: r.get(1),
                kind: parse_kind(r.get(2))?,
                error_kind: error_info(r.get(3), None)?.map(|e| e.kind),
            })
        })
        .transpose()
    }

    /// What is known about this content from any path analyzed with the same pipeline.
    pub async fn known_content(
        &self,
        hash: &str,
        signature: &str,
    ) -> Result<Option<KnownContent>, StoreError> {
        let row = sqlx::query(
            "SELECT kind, format, status, error_kind, error_message, flags FROM files \
             WHERE content_hash = ? AND pipeline_signature = ? LIMIT 1",
        )
        .bind(hash.to_owned())
        .bind(signature.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let flags: Vec<Flag> = parse_flags(&row.get::<String, _>(5))?
            .into_iter()
            .filter(|f| *f != Flag::ExtensionMismatch)
            .collect();
        Ok(Some(KnownContent {
            kind: parse_kind(&row.get::<String, _>(0))?,
            format: row.get(1),
            status: parse_status(&row.get::<String, _>(2))?,
            error: error_info(row.get(3), row.get(4))?,
            flags,
        }))
    }

    /// Writes one file's outcome, its analyses and its perceptual hash in one transaction.
    pub async fn write(
        &self,
        file: &FileRow,
        analyses: &[AnalysisRow],
        phash: Option<u64>,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO files (path, content_hash, size_bytes, kind, format, status, error_kind, \
             error_message, flags, pipeline_signature, analyzed_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) \
             ON CONFLICT (path) DO UPDATE SET content_hash = excluded.content_hash, \
             size_bytes = excluded.size_bytes, kind = excluded.kind, format = excluded.format, \
             status = excluded.status, error_kind = excluded.error_kind, \
             error_message = excluded.error_message, flags = excluded.flags, \
             pipeline_signature = excluded.pipeline_signature, analyzed_at = excluded.analyzed_at",
        )
        .bind(file.path.clone())
        .bind(file.content_hash.clone())
        .bind(i64::try_from(file.size_bytes).unwrap_or(i64::MAX))
        .bind(file.kind.as_str())
        .bind(file.format.clone())
        .bind(file.status.as_str())
        .bind(file.error.as_ref().map(|e| e.kind.as_str()))
        .bind(file.error.as_ref().map(|e| e.message.clone()))
        .bind(serde_json::to_string(&file.flags).unwrap_or_else(|_| "[]".into()))
        .bind(file.pipeline_signature.clone())
        .execute(&mut *tx)
        .await?;
        if let Some(hash) = &file.content_hash {
            for a in analyses {
                sqlx::query(
                    "INSERT INTO analyses (content_hash, analyzer, version, output) VALUES (?, ?, ?, ?) \
                     ON CONFLICT (content_hash, analyzer) DO UPDATE SET version = excluded.version, \
                     output = excluded.output, created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                )
                .bind(hash.clone())
                .bind(a.analyzer.clone())
                .bind(a.version.clone())
                .bind(a.output.to_string())
                .execute(&mut *tx)
                .await?;
            }
            if let Some(phash) = phash {
                sqlx::query(
                    "INSERT INTO perceptual_hashes (content_hash, phash) VALUES (?, ?) \
                     ON CONFLICT (content_hash) DO UPDATE SET phash = excluded.phash",
                )
                .bind(hash.clone())
                // SQLite integers are signed; the bit pattern is what matters.
                .bind(i64::from_ne_bytes(phash.to_ne_bytes()))
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every file with its analyses, ordered by path, streamed to `sink` one record at a time.
    pub async fn export(
        &self,
        mut sink: impl FnMut(ExportRecord) -> Result<(), StoreError>,
    ) -> Result<u64, StoreError> {
        let mut rows = sqlx::query(concat!(
            "SELECT ",
            file_columns!(),
            ", a.analyzer, a.output FROM files f \
             LEFT JOIN analyses a ON a.content_hash = f.content_hash AND f.status = 'ok' \
             ORDER BY f.path, a.analyzer"
        ))
        .fetch(&self.pool);
        let mut current: Option<ExportRecord> = None;
        let mut count = 0;
        while let Some(row) = rows.try_next().await? {
            let path: String = row.get("path");
            if current.as_ref().is_none_or(|c| c.path != path) {
                if let Some(done) = current.take() {
                    sink(done)?;
                    count += 1;
                }
                current = Some(record_from_row(&row)?);
            }
            if let (Some(rec), Some(name)) =
                (current.as_mut(), row.get::<Option<String>, _>("analyzer"))
            {
                let output: String = row.get("output");
                let value = serde_json::from_str(&output)
                    .map_err(|e| StoreError::Malformed(e.to_string()))?;
                rec.analyses.insert(name, value);
            }
        }
        if let Some(done) = current {
            sink(done)?;
            count += 1;
        }
        Ok(count)
    }

    /// Records whose path or content hash (or a unique hash prefix of at least 8 hex digits) matches.
    pub async fn find(&self, path_or_hash: &str) -> Result<Vec<ExportRecord>, StoreError> {
        let prefix = format!("{}%", path_or_hash.to_ascii_lowercase());
        let is_hash =
            path_or_hash.len() >= 8 && path_or_hash.chars().all(|c| c.is_ascii_hexdigit());
        let rows = sqlx::query(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files f WHERE f.path = ? OR (? AND f.content_hash LIKE ?) ORDER BY f.path"
        ))
        .bind(path_or_hash.to_owned())
        .bind(is_hash)
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut rec = record_from_row(row)?;
            if let (Some(hash), FileStatus::Ok) = (&rec.content_hash, rec.status) {
                rec.analyses = self.analyses(hash).await?;
            }
            out.push(rec);
        }
        Ok(out)
    }

    /// Analyzer outputs stored for some content.
    pub async fn analyses(
        &self,
        hash: &str,
    ) -> Result<BTreeMap<String, serde_json::Value>, StoreError> {
        let rows = sqlx::query(
            "SELECT analyzer, output FROM analyses WHERE content_hash = ? ORDER BY analyzer",
        )
        .bind(hash.to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let v = serde_json::from_str(r.get::<&str, _>(1))
                    .map_err(|e| StoreError::Malformed(e.to_string()))?;
                Ok((r.get::<String, _>(0), v))
            })
            .collect()
    }

    /// Failed files, most recent first within each error kind.
    pub async fn failures(&self) -> Result<Vec<ExportRecord>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            file_columns!(),
            " FROM files f WHERE f.status = 'failed' ORDER BY f.error_kind, f.path"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record_from_row).collect()
    }

    /// Perceptual hashes with every path holding that content.
    pub async fn perceptual_hashes(&self) -> Result<Vec<(String, u64, Vec<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.content_hash, p.phash, f.path FROM perceptual_hashes p \
             JOIN files f ON f.content_hash = p.content_hash AND f.status = 'ok' ORDER BY p.content_hash, f.path",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(String, u64, Vec<String>)> = Vec::new();
        for r in rows {
            let hash: String = r.get(0);
            let phash = u64::from_ne_bytes(r.get::<i64, _>(1).to_ne_bytes());
            let path: String = r.get(2);
            match out.last_mut() {
                Some(last) if last.0 == hash => last.2.push(path),
                _ => out.push((hash, phash, vec![path])),
            }
        }
        Ok(out)
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn record_from_row(row: &SqliteRow) -> Result<ExportRecord, StoreError> {
    Ok(ExportRecord {
        path: row.get("path"),
        content_hash: row.get("content_hash"),
        kind: parse_kind(row.get("kind"))?,
        format: row.get("format"),
        size_bytes: u64::try_from(row.get::<i64, _>("size_bytes")).unwrap_or(0),
        status: parse_status(row.get("status"))?,
        error: error_info(row.get("error_kind"), row.get("error_message"))?,
        flags: parse_flags(row.get("flags"))?,
        analyses: BTreeMap::new(),
        analyzed_at: row.get("analyzed_at"),
    })
}

fn parse_kind(s: &str) -> Result<MediaKind, StoreError> {
    MediaKind::from_str(s).map_err(StoreError::Malformed)
}

fn parse_status(s: &str) -> Result<FileStatus, StoreError> {
    match s {
        "ok" => Ok(FileStatus::Ok),
        "failed" => Ok(FileStatus::Failed),
        other => Err(StoreError::Malformed(format!("status `{other}`"))),
    }
}

fn parse_flags(s: &str) -> Result<Vec<Flag>, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Malformed(format!("flags `{s}`: {e}")))
}

fn error_info(
    kind: Option<String>,
    message: Option<String>,
) -> Result<Option<ErrorInfo>, StoreError> {
    let Some(kind) = kind else { return Ok(None) };
    let kind: ErrorKind = serde_json::from_value(serde_json::Value::String(kind.clone()))
        .map_err(|_| StoreError::Malformed(format!("error kind `{kind}`")))?;
    Ok(Some(ErrorInfo {
        kind,
        message: message.unwrap_or_default(),
    }))
}
