//! The Postgres side: batches, jobs, content-addressed analyses, modality results and fused
//! records. Every write is keyed so that repeating it (a redelivered message) changes nothing.

use std::collections::{HashMap, HashSet};

use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::DistError;

/// Applies `migrations/postgres` (idempotent).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

#[derive(Debug, Clone)]
pub struct Pg {
    pub pool: PgPool,
}

/// A job row, as the dispatcher and fusion read it.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub batch_id: String,
    pub source_uri: String,
    pub content_hash: Option<String>,
    pub kind: Option<String>,
    pub status: String,
    pub expected: Vec<String>,
}

/// One modality's report for a job.
#[derive(Debug, Clone)]
pub struct ModalityResult {
    pub modality: String,
    pub ok: bool,
    pub error_kind: Option<String>,
    pub error: Option<String>,
    pub analyses: Value,
    pub facts: Value,
}

/// One row to add to `analyses`.
#[derive(Debug, Clone)]
pub struct AnalysisWrite {
    pub analyzer: String,
    pub revision: String,
    pub output: Option<Value>,
    pub embedding_key: Option<String>,
}

/// What a worker reports for one task.
#[derive(Debug, Clone, Default)]
pub struct ModalityReport {
    pub job_id: String,
    pub modality: String,
    /// (error kind, message) when the modality failed.
    pub error: Option<(String, String)>,
    /// [[analyzer, revision], …] this result stands for.
    pub analyses: Value,
    pub facts: Value,
    pub reused: bool,
    /// Fills the job's content hash when it has none yet.
    pub job_hash: Option<String>,
    /// New analysis rows, for content `rows_hash`.
    pub rows_hash: String,
    pub rows: Vec<AnalysisWrite>,
}

/// A fused record to upsert.
#[derive(Debug, Clone)]
pub struct RecordWrite {
    /// The kind the decoders found (an M4A sniffed as MP4 is audio, not video).
    pub kind: Option<String>,
    pub decision: String,
    pub reasons: Value,
    pub partial: bool,
    pub missing: Vec<String>,
    pub text: String,
    pub languages: Vec<String>,
    pub labels: Vec<String>,
    pub record: Value,
    pub fused_key: Option<String>,
    pub image_embedding: Option<Vec<f32>>,
    pub text_embedding: Option<Vec<f32>>,
    pub clip_embedding: Option<Vec<f32>>,
}

/// Counts per state for `mediasift status`.
#[derive(Debug, Clone, Default)]
pub struct StatusCounts {
    pub by_status: Vec<(String, i64)>,
    pub finished_last_minute: i64,
    pub records: i64,
}

impl Pg {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Pg, DistError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(10))
            // No ping before every query (a round trip each); a broken connection fails its
            // query, which is retried like any transient error.
            .test_before_acquire(false)
            .connect(url)
            .await?;
        Ok(Pg { pool })
    }

    /// Creates (or recreates) database `name` on the server of `url`; returns its URL.
    /// Benchmarks measure on an empty database this way.
    pub async fn fresh_database(url: &str, name: &str) -> Result<String, DistError> {
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(DistError::Config(format!("bad database name {name:?}")));
        }
        let (base, _) = url
            .split('?')
            .next()
            .and_then(|u| u.rsplit_once('/'))
            .ok_or_else(|| DistError::Config(format!("bad Postgres URL {url}")))?;
        let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&pool).await?;
        }
        pool.close().await;
        Ok(format!("{base}/{name}"))
    }

    pub async fn migrate(&self) -> Result<(), DistError> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub async fn ensure_batch(&self, id: &str, name: &str, source: &str) -> Result<(), DistError> {
        sqlx::query(
            "INSERT INTO batches (id, name, source) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(name)
        .bind(source)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Inserts the jobs not known yet; returns the ids to publish: the new ones and those still
    /// `queued` (a publish lost before a crash). Done, failed and in-flight jobs are left alone.
    pub async fn insert_jobs(
        &self,
        batch_id: &str,
        ids: &[String],
        uris: &[String],
        versions: &[String],
        sizes: &[i64],
    ) -> Result<Vec<String>, DistError> {
        let rows = sqlx::query(
            "WITH input AS (
                 SELECT * FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[])
                     AS t(id, uri, version, size)
             ), inserted AS (
                 INSERT INTO jobs (id, batch_id, source_uri, source_version, size_bytes)
                 SELECT id, $1, uri, version, size FROM input
                 ON CONFLICT DO NOTHING
                 RETURNING id
             )
             SELECT id FROM inserted
             UNION
             SELECT j.id FROM jobs j JOIN input i ON j.id = i.id WHERE j.status = 'queued'",
        )
        .bind(batch_id)
        .bind(ids)
        .bind(uris)
        .bind(versions)
        .bind(sizes)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// Records the routes of a batch of jobs and marks them dispatched, in one statement;
    /// `expected` holds each job's modalities comma-joined. Returns the ids routed: unknown jobs
    /// and jobs past dispatch (duplicate messages) are left out. A job redelivered in
    /// `dispatched` (the dispatcher died before acknowledging) is routed again and its tasks
    /// published again under the same message ids; modalities added since are kept.
    pub async fn route_many(
        &self,
        ids: &[String],
        kinds: &[&str],
        expected: &[String],
    ) -> Result<HashSet<String>, DistError> {
        let rows = sqlx::query(
            "UPDATE jobs j SET kind = t.kind, status = 'dispatched',
                 expected = ARRAY(SELECT DISTINCT e
                                  FROM unnest(j.expected || string_to_array(t.expected, ',')) e),
                 attempts = j.attempts + 1, dispatched_at = now()
             FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(id, kind, expected)
             WHERE j.id = t.id AND j.status IN ('queued', 'dispatched')
             RETURNING j.id",
        )
        .bind(ids)
        .bind(kinds)
        .bind(expected)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// A job that ends without a record: `failed` (dead-lettered) or `rejected` (not allowed).
    pub async fn mark_failed(
        &self,
        id: &str,
        status: &str,
        error_kind: &str,
        error: &str,
    ) -> Result<(), DistError> {
        sqlx::query(
            "UPDATE jobs SET status = $2, error_kind = $3, last_error = $4, finished_at = now()
             WHERE id = $1",
        )
        .bind(id)
        .bind(status)
        .bind(error_kind)
        .bind(error)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Adds a modality the record must wait for (derived text), before its task is published.
    pub async fn expect(&self, id: &str, modality: &str) -> Result<(), DistError> {
        sqlx::query(
            "UPDATE jobs SET expected = array_append(expected, $2)
             WHERE id = $1 AND NOT ($2 = ANY (expected))",
        )
        .bind(id)
        .bind(modality)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// For each (content hash, wanted (analyzer, revision) pairs): the analyzers whose result
    /// is stored. One query for the whole batch.
    pub async fn current_analyzers(
        &self,
        requests: &[(String, Vec<(&'static str, String)>)],
    ) -> Result<Vec<HashSet<String>>, DistError> {
        let (mut hashes, mut names, mut revisions) = (Vec::new(), Vec::new(), Vec::new());
        for (hash, wanted) in requests {
            for (n, r) in wanted {
                hashes.push(hash.as_str());
                names.push(*n);
                revisions.push(r.as_str());
            }
        }
        let rows = sqlx::query(
            "SELECT a.content_hash, a.analyzer FROM analyses a
             JOIN UNNEST($1::text[], $2::text[], $3::text[]) AS w(content_hash, analyzer, revision)
               ON a.content_hash = w.content_hash AND a.analyzer = w.analyzer
                  AND a.revision = w.revision",
        )
        .bind(&hashes)
        .bind(&names)
        .bind(&revisions)
        .fetch_all(&self.pool)
        .await?;
        let mut found: HashMap<String, HashSet<String>> = HashMap::new();
        for r in &rows {
            found
                .entry(r.get::<String, _>(0))
                .or_default()
                .insert(r.get::<String, _>(1));
        }
        Ok(requests
            .iter()
            .map(|(hash, _)| found.get(hash).cloned().unwrap_or_default())
            .collect())
    }

    /// Writes (or replaces) modality reports together with the analysis rows they stand for and
    /// their jobs' content hashes: one statement for the batch, so fusion never sees a report
    /// without its rows. A second report for the same job and modality in the batch wins.
    pub async fn write_reports(&self, reports: &[ModalityReport]) -> Result<(), DistError> {
        let mut latest: HashMap<(&str, &str), &ModalityReport> = HashMap::new();
        for r in reports {
            latest.insert((r.job_id.as_str(), r.modality.as_str()), r);
        }
        let reports: Vec<&ModalityReport> = latest.into_values().collect();
        let col = |f: fn(&ModalityReport) -> Option<&str>| -> Vec<Option<&str>> {
            reports.iter().map(|r| f(r)).collect()
        };
        let job_ids = col(|r| Some(r.job_id.as_str()));
        let modalities = col(|r| Some(r.modality.as_str()));
        let statuses = col(|r| Some(if r.error.is_none() { "ok" } else { "failed" }));
        let error_kinds = col(|r| r.error.as_ref().map(|e| e.0.as_str()));
        let errors = col(|r| r.error.as_ref().map(|e| e.1.as_str()));
        let job_hashes = col(|r| r.job_hash.as_deref());
        let analyses: Vec<&Value> = reports.iter().map(|r| &r.analyses).collect();
        let facts: Vec<&Value> = reports.iter().map(|r| &r.facts).collect();
        let reused: Vec<bool> = reports.iter().map(|r| r.reused).collect();
        let rows: Vec<(&str, &AnalysisWrite)> = reports
            .iter()
            .flat_map(|r| r.rows.iter().map(move |a| (r.rows_hash.as_str(), a)))
            .collect();
        let row_hashes: Vec<&str> = rows.iter().map(|r| r.0).collect();
        let names: Vec<&str> = rows.iter().map(|r| r.1.analyzer.as_str()).collect();
        let revisions: Vec<&str> = rows.iter().map(|r| r.1.revision.as_str()).collect();
        let outputs: Vec<Option<&Value>> = rows.iter().map(|r| r.1.output.as_ref()).collect();
        let keys: Vec<Option<&str>> = rows.iter().map(|r| r.1.embedding_key.as_deref()).collect();
        sqlx::query(
            "WITH r AS (
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                      $6::jsonb[], $7::jsonb[], $8::bool[], $9::text[])
                     AS r(job_id, modality, status, error_kind, error, analyses, facts, reused,
                          job_hash)
             ), hash AS (
                 UPDATE jobs j SET content_hash = r.job_hash FROM r
                 WHERE j.id = r.job_id AND r.job_hash IS NOT NULL AND j.content_hash IS NULL
             ), stored AS (
                 INSERT INTO analyses (content_hash, analyzer, revision, output, embedding_key)
                 SELECT * FROM UNNEST($10::text[], $11::text[], $12::text[], $13::jsonb[],
                                      $14::text[])
                 ON CONFLICT DO NOTHING
             )
             INSERT INTO modality_results
                 (job_id, modality, status, error_kind, error, analyses, facts, reused)
             SELECT job_id, modality, status, error_kind, error, analyses, facts, reused FROM r
             ON CONFLICT (job_id, modality) DO UPDATE SET status = EXCLUDED.status,
                 error_kind = EXCLUDED.error_kind, error = EXCLUDED.error,
                 analyses = EXCLUDED.analyses, facts = EXCLUDED.facts,
                 reused = EXCLUDED.reused, updated_at = now()",
        )
        .bind(&job_ids)
        .bind(&modalities)
        .bind(&statuses)
        .bind(&error_kinds)
        .bind(&errors)
        .bind(&analyses)
        .bind(&facts)
        .bind(&reused)
        .bind(&job_hashes)
        .bind(&row_hashes)
        .bind(&names)
        .bind(&revisions)
        .bind(&outputs)
        .bind(&keys)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Jobs with their modality results, in one round trip (fusion).
    pub async fn jobs_with_results(
        &self,
        ids: &[String],
    ) -> Result<Vec<(Job, Vec<ModalityResult>)>, DistError> {
        let rows = sqlx::query(
            "SELECT j.id, j.batch_id, j.source_uri, j.content_hash, j.kind, j.status, j.expected,
                 COALESCE((SELECT json_agg(json_build_array(m.modality, m.status, m.error_kind,
                                  m.error, m.analyses, m.facts) ORDER BY m.modality)
                           FROM modality_results m WHERE m.job_id = j.id), '[]'::json)
             FROM jobs j WHERE j.id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let job = Job {
                    id: r.get(0),
                    batch_id: r.get(1),
                    source_uri: r.get(2),
                    content_hash: r.get(3),
                    kind: r.get(4),
                    status: r.get(5),
                    expected: r.get(6),
                };
                let results: Value = r.get(7);
                let results = results
                    .as_array()
                    .map(|list| {
                        list.iter()
                            .map(|m| ModalityResult {
                                modality: m[0].as_str().unwrap_or_default().to_string(),
                                ok: m[1] == "ok",
                                error_kind: m[2].as_str().map(str::to_string),
                                error: m[3].as_str().map(str::to_string),
                                analyses: m[4].clone(),
                                facts: m[5].clone(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                (job, results)
            })
            .collect())
    }

    /// Every stored output of the given contents, by content hash.
    pub async fn analyses_of(
        &self,
        hashes: &[String],
    ) -> Result<HashMap<String, Vec<StoredRow>>, DistError> {
        let rows = sqlx::query(
            "SELECT content_hash, analyzer, revision, output FROM analyses
             WHERE content_hash = ANY($1) AND output IS NOT NULL",
        )
        .bind(hashes)
        .fetch_all(&self.pool)
        .await?;
        let mut by_hash: HashMap<String, Vec<StoredRow>> = HashMap::new();
        for r in &rows {
            by_hash
                .entry(r.get(0))
                .or_default()
                .push((r.get(1), r.get(2), r.get(3)));
        }
        Ok(by_hash)
    }

    /// The outputs for `hash` that (analyzer, revision) `pairs` stand for ([`outputs_for`]).
    pub async fn analyses(
        &self,
        hash: &str,
        pairs: &[(String, String)],
    ) -> Result<Vec<(String, Value)>, DistError> {
        let stored = self
            .analyses_of(&[hash.to_string()])
            .await?
            .remove(hash)
            .unwrap_or_default();
        let pairs: HashSet<(&str, &str)> = pairs
            .iter()
            .map(|(a, r)| (a.as_str(), r.as_str()))
            .collect();
        Ok(outputs_for(&pairs, &stored)
            .map(|(a, v)| (a.to_string(), v.clone()))
            .collect())
    }

    /// Writes (or replaces, for a late result) the fused record and closes the job.
    pub async fn upsert_record(&self, job: &Job, r: &RecordWrite) -> Result<(), DistError> {
        // One statement: the record and the job's final state together.
        sqlx::query(
            "WITH closed AS (
                 UPDATE jobs SET status = CASE WHEN $8 THEN 'partial' ELSE 'done' END,
                     finished_at = COALESCE(finished_at, now())
                 WHERE id = $1
             )
             INSERT INTO records (job_id, batch_id, source_uri, content_hash, kind, decision,
                 reasons, partial, missing, text, languages, labels, record, fused_key,
                 image_embedding, text_embedding, clip_embedding)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14,
                 $15::text::vector, $16::text::vector, $17::text::vector)
             ON CONFLICT (job_id) DO UPDATE SET decision = EXCLUDED.decision,
                 kind = EXCLUDED.kind, reasons = EXCLUDED.reasons, partial = EXCLUDED.partial,
                 missing = EXCLUDED.missing, text = EXCLUDED.text,
                 languages = EXCLUDED.languages, labels = EXCLUDED.labels,
                 record = EXCLUDED.record, fused_key = EXCLUDED.fused_key,
                 image_embedding = EXCLUDED.image_embedding,
                 text_embedding = EXCLUDED.text_embedding,
                 clip_embedding = EXCLUDED.clip_embedding, updated_at = now()",
        )
        .bind(&job.id)
        .bind(&job.batch_id)
        .bind(&job.source_uri)
        .bind(&job.content_hash)
        .bind(r.kind.as_ref().or(job.kind.as_ref()))
        .bind(&r.decision)
        .bind(&r.reasons)
        .bind(r.partial)
        .bind(&r.missing)
        .bind(&r.text)
        .bind(&r.languages)
        .bind(&r.labels)
        .bind(&r.record)
        .bind(&r.fused_key)
        .bind(r.image_embedding.as_deref().map(vector_literal))
        .bind(r.text_embedding.as_deref().map(vector_literal))
        .bind(r.clip_embedding.as_deref().map(vector_literal))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Puts a dead-lettered job back where `stage` picks it up again (`mediasift dlq retry`).
    pub async fn reopen(&self, id: &str, stage: &str) -> Result<(), DistError> {
        let mut tx = self.pool.begin().await?;
        if stage == "dispatcher" {
            sqlx::query(
                "UPDATE jobs SET status = 'queued', error_kind = NULL, last_error = NULL,
                     finished_at = NULL WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        } else {
            sqlx::query(
                "DELETE FROM modality_results WHERE job_id = $1 AND status = 'failed'
                   AND split_part(modality, ':', 1) = $2",
            )
            .bind(id)
            .bind(stage)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE jobs SET status = 'dispatched', error_kind = NULL, last_error = NULL,
                     finished_at = NULL, dispatched_at = now()
                 WHERE id = $1 AND status IN ('failed', 'partial')",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Dispatched jobs still without a record after `timeout_secs`.
    pub async fn overdue_jobs(&self, timeout_secs: u64) -> Result<Vec<String>, DistError> {
        let rows = sqlx::query(
            "SELECT id FROM jobs WHERE status = 'dispatched'
               AND dispatched_at < now() - make_interval(secs => $1) LIMIT 1000",
        )
        .bind(timeout_secs as f64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get::<String, _>(0)).collect())
    }

    /// The batch named or made from `name_or_id`.
    pub async fn batch_id(&self, name_or_id: &str) -> Result<Option<String>, DistError> {
        let row = sqlx::query(
            "SELECT id FROM batches WHERE id = $1 OR name = $1 ORDER BY created_at DESC LIMIT 1",
        )
        .bind(name_or_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub async fn status(&self, batch: Option<&str>) -> Result<StatusCounts, DistError> {
        let by_status = sqlx::query(
            "SELECT status, count(*) FROM jobs WHERE $1::text IS NULL OR batch_id = $1
             GROUP BY status ORDER BY status",
        )
        .bind(batch)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1)))
        .collect();
        let finished_last_minute: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE ($1::text IS NULL OR batch_id = $1)
               AND finished_at > now() - interval '60 seconds'",
        )
        .bind(batch)
        .fetch_one(&self.pool)
        .await?;
        let records: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM records WHERE $1::text IS NULL OR batch_id = $1",
        )
        .bind(batch)
        .fetch_one(&self.pool)
        .await?;
        Ok(StatusCounts {
            by_status,
            finished_last_minute,
            records,
        })
    }
}

/// A stored analysis of one content: (analyzer, revision, output).
pub type StoredRow = (String, String, Value);

/// The stored outputs that (analyzer, revision) `pairs` stand for: the rows with those pairs,
/// plus the companion outputs of the same model runs — rows under another name with one of the
/// pairs' model revisions (those with `@`): the image embedding that comes with the tags.
pub fn outputs_for<'a>(
    pairs: &'a HashSet<(&str, &str)>,
    stored: &'a [StoredRow],
) -> impl Iterator<Item = (&'a str, &'a Value)> {
    let names: HashSet<&str> = pairs.iter().map(|p| p.0).collect();
    let revisions: HashSet<&str> = pairs.iter().map(|p| p.1).collect();
    stored
        .iter()
        .filter(move |(a, r, _)| {
            pairs.contains(&(a.as_str(), r.as_str()))
                || (r.contains('@')
                    && revisions.contains(r.as_str())
                    && !names.contains(a.as_str()))
        })
        .map(|(a, _, v)| (a.as_str(), v))
}

/// pgvector's text form: `[1,2,3]`.
fn vector_literal(v: &[f32]) -> String {
    let mut s = String::with_capacity(v.len() * 10 + 2);
    s.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&x.to_string());
    }
    s.push(']');
    s
}
