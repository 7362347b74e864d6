-- mediasift distributed mode: batches, jobs, content-addressed analysis results, per-job modality
-- results and fused records. Every write is idempotent through these unique keys, so a
-- redelivered message never creates a second row.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE batches (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    source      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One job per (source URI, source version): re-enqueueing an unchanged file finds its job.
CREATE TABLE jobs (
    id             TEXT PRIMARY KEY,
    batch_id       TEXT NOT NULL REFERENCES batches (id),
    source_uri     TEXT NOT NULL,
    source_version TEXT NOT NULL,
    size_bytes     BIGINT,
    content_hash   TEXT,
    kind           TEXT,
    -- queued → dispatched → done | partial | failed | rejected
    status         TEXT NOT NULL DEFAULT 'queued',
    -- Modality results the record waits for: vision, audio, text, text:transcript, text:ocr.
    expected       TEXT[] NOT NULL DEFAULT '{}',
    attempts       INT NOT NULL DEFAULT 0,
    error_kind     TEXT,
    last_error     TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    dispatched_at  TIMESTAMPTZ,
    finished_at    TIMESTAMPTZ,
    UNIQUE (source_uri, source_version)
);
CREATE INDEX jobs_batch_status ON jobs (batch_id, status);
CREATE INDEX jobs_waiting ON jobs (dispatched_at) WHERE status = 'dispatched';
CREATE INDEX jobs_finished ON jobs (finished_at);

-- Content-addressed analyzer outputs: the same bytes under another path or in another batch are
-- not recomputed, and a new model revision re-runs only that analyzer. `output` is NULL when
-- the analyzer ran and did not apply (loudness of an image).
CREATE TABLE analyses (
    content_hash  TEXT NOT NULL,
    analyzer      TEXT NOT NULL,
    revision      TEXT NOT NULL,
    output        JSONB,
    embedding_key TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (content_hash, analyzer, revision)
);

-- What one modality worker reported for one job.
CREATE TABLE modality_results (
    job_id      TEXT NOT NULL REFERENCES jobs (id),
    modality    TEXT NOT NULL,
    status      TEXT NOT NULL,          -- ok | failed
    error_kind  TEXT,
    error       TEXT,
    -- [{analyzer, revision}] of the analyses this result stands for.
    analyses    JSONB NOT NULL DEFAULT '[]',
    -- Format facts: kind, format, flags.
    facts       JSONB NOT NULL DEFAULT '{}',
    reused      BOOLEAN NOT NULL DEFAULT false,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, modality)
);

-- The fused record of a job: used by search and moderation.
CREATE TABLE records (
    job_id          TEXT PRIMARY KEY REFERENCES jobs (id),
    batch_id        TEXT NOT NULL,
    source_uri      TEXT NOT NULL,
    content_hash    TEXT,
    kind            TEXT,
    decision        TEXT NOT NULL,      -- allow | review | block
    reasons         JSONB NOT NULL,
    partial         BOOLEAN NOT NULL,
    missing         TEXT[] NOT NULL DEFAULT '{}',
    text            TEXT NOT NULL DEFAULT '',
    languages       TEXT[] NOT NULL DEFAULT '{}',
    labels          TEXT[] NOT NULL DEFAULT '{}',
    record          JSONB NOT NULL,
    fused_key       TEXT,
    image_embedding vector(1280),
    text_embedding  vector(384),
    clip_embedding  vector(512),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX records_decision ON records (decision);
CREATE INDEX records_text_embedding ON records USING hnsw (text_embedding vector_cosine_ops);
CREATE INDEX records_image_embedding ON records USING hnsw (image_embedding vector_cosine_ops);
CREATE INDEX records_clip_embedding ON records USING hnsw (clip_embedding vector_cosine_ops);
