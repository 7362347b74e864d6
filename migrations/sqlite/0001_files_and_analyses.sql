-- One row per path seen by `mediasift analyze`: what it is, whether it could be analyzed, and why not.
CREATE TABLE files (
    path               TEXT PRIMARY KEY,
    -- BLAKE3 of the bytes; NULL only when the file could not be read at all.
    content_hash       TEXT,
    size_bytes         INTEGER NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('image', 'audio', 'video', 'text', 'unknown')),
    format             TEXT,
    status             TEXT NOT NULL CHECK (status IN ('ok', 'failed')),
    error_kind         TEXT,
    error_message      TEXT,
    -- JSON array of flags: "extension_mismatch", "truncated".
    flags              TEXT NOT NULL DEFAULT '[]',
    -- Analyzer names and versions that produced this row; a change re-runs the file.
    pipeline_signature TEXT NOT NULL,
    analyzed_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    CHECK ((status = 'failed') = (error_kind IS NOT NULL))
);
CREATE INDEX files_content_hash ON files (content_hash);
CREATE INDEX files_status ON files (status);

-- Analyzer outputs are content-addressed: the same bytes under two paths are analyzed once.
CREATE TABLE analyses (
    content_hash TEXT NOT NULL,
    analyzer     TEXT NOT NULL,
    version      TEXT NOT NULL,
    output       TEXT NOT NULL,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (content_hash, analyzer)
);

-- 64-bit DCT perceptual hashes of images (and of a video's first sampled frame) for
-- near-duplicate lookup by Hamming distance.
CREATE TABLE perceptual_hashes (
    content_hash TEXT PRIMARY KEY,
    phash        INTEGER NOT NULL
);
