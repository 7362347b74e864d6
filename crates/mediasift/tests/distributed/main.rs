//! The distributed mode against real servers: NATS JetStream, PostgreSQL + pgvector and an S3
//! server (SeaweedFS), every component a separate `mediasift` process.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod harness;

use std::time::Duration;

use harness::{Cluster, fixtures, s3_keys, upload, var};
use serde_json::Value;
use sqlx::Row;

const SETTLE: Duration = Duration::from_secs(600);

/// Good files of several kinds and three bad ones, from S3 through every stage.
#[tokio::test(flavor = "multi_thread")]
async fn s3_archive_gets_a_record_per_good_file_and_dead_letters_per_bad_one() {
    let nats = var("MEDIASIFT_TEST_NATS_URL");
    let bucket = var("MEDIASIFT_TEST_S3_BUCKET");
    let metrics_port = harness::free_port();
    let mut c = Cluster::new("e2e", &nats, "").await;
    let prefix = format!("{}/media", c.name);
    let roots = format!("allowed_roots = [\"s3://{bucket}/{}\"]\n", c.name);
    // The allowlist and the fusion's metrics address go into the config file.
    let mut toml = std::fs::read_to_string(&c.config).unwrap();
    toml = toml.replace(
        "metrics_addr = \"\"\n",
        &format!("metrics_addr = \"\"\n{roots}"),
    );
    std::fs::write(&c.config, &toml).unwrap();
    let f = fixtures();
    let files = [
        ("images/photo_02.jpg", "cat.jpg"),
        ("images/photo_03.webp", "coffee.webp"),
        ("audio/speech_01.wav", "speech.wav"),
        ("audio/speech_05.m4a", "voice.m4a"),
        ("text/doc_01.txt", "udhr.txt"),
        ("text/ocr_01.png", "invoice.png"),
        ("video/video_01.mp4", "parrot.mp4"),
        ("bad/bad_03.png", "broken.png"),
        ("bad/bad_07.jpg", "empty.jpg"),
        ("bad/bad_10.mp4", "error-page.mp4"),
    ];
    let keys: Vec<(String, std::path::PathBuf)> = files
        .iter()
        .map(|(src, name)| (format!("{prefix}/{name}"), f.join(src)))
        .collect();
    let refs: Vec<(&str, &std::path::Path)> = keys
        .iter()
        .map(|(k, p)| (k.as_str(), p.as_path()))
        .collect();
    upload(&refs).await;

    c.spawn("dispatcher", &["dispatcher"]);
    let vision_port = harness::free_port();
    let vision_addr = format!("127.0.0.1:{vision_port}");
    c.spawn_env(
        "vision",
        &["worker", "--modality", "vision", "--concurrency", "2"],
        &[("MEDIASIFT__DISTRIBUTED__METRICS_ADDR", &vision_addr)],
    );
    for m in ["audio", "text"] {
        c.spawn(m, &["worker", "--modality", m, "--concurrency", "2"]);
    }
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    c.spawn_env(
        "fusion",
        &["fusion"],
        &[("MEDIASIFT__DISTRIBUTED__METRICS_ADDR", &metrics_addr)],
    );

    let source = format!("s3://{bucket}/{prefix}");
    let (batch, report) = c.enqueue(&source, None);
    assert_eq!(batch.len(), 16, "batch id printed: {batch:?}");
    assert!(report.contains("10 published"), "{report}");
    c.wait_settled(10, SETTLE).await;

    // A record for every good file, none for the bad ones.
    let rows = sqlx::query(
        "SELECT source_uri, kind, decision, text, languages, labels, partial,
                image_embedding IS NOT NULL, text_embedding IS NOT NULL, fused_key, record
         FROM records ORDER BY source_uri",
    )
    .fetch_all(&c.pg)
    .await
    .unwrap();
    let by_name = |name: &str| {
        rows.iter()
            .find(|r| r.get::<String, _>(0).ends_with(&format!("/{name}")))
            .unwrap_or_else(|| panic!("no record for {name}\n{}", c.logs()))
    };
    assert_eq!(rows.len(), 7, "{}", c.logs());
    for r in &rows {
        let decision: String = r.get(2);
        assert!(["allow", "review", "block"].contains(&decision.as_str()));
        assert!(
            !r.get::<bool, _>(6),
            "complete record expected: {}",
            r.get::<Value, _>(10)
        );
        // Videos have no single image feature (tags per frame) and this one is silent.
        if r.get::<Option<String>, _>(1).as_deref() != Some("video") {
            let uri: String = r.get(0);
            assert!(
                r.get::<Option<String>, _>(9).is_some(),
                "fused embedding of {uri}"
            );
        }
    }
    let cat = by_name("cat.jpg");
    let labels: Vec<String> = cat.get(5);
    assert!(labels.iter().any(|l| l.contains("cat")), "{labels:?}");
    assert!(cat.get::<bool, _>(7), "image embedding in pgvector");
    let speech = by_name("speech.wav");
    assert_eq!(speech.get::<Vec<String>, _>(4), ["en"]);
    let said: String = speech.get(3);
    assert!(said.split_whitespace().count() > 10, "transcript: {said}");
    assert!(
        speech.get::<bool, _>(8),
        "transcript embedded by the text worker"
    );
    // An M4A is sniffed as MP4 (a video container); the record has the kind the decoder found.
    let voice = by_name("voice.m4a");
    assert_eq!(voice.get::<Option<String>, _>(1).as_deref(), Some("audio"));
    assert!(!voice.get::<String, _>(3).is_empty(), "transcribed");
    let doc = by_name("udhr.txt");
    assert!(doc.get::<bool, _>(8), "document embedded");
    let invoice = by_name("invoice.png");
    assert!(
        invoice.get::<String, _>(3).contains("Invoice"),
        "OCR text in the record"
    );
    assert!(invoice.get::<bool, _>(8), "OCR text embedded");
    let video = by_name("parrot.mp4");
    assert_eq!(video.get::<Option<String>, _>(1).as_deref(), Some("video"));
    let record: Value = video.get(10);
    assert!(record["analyses"]["frame_tags"].is_object(), "{record}");

    // The fusion serves Prometheus metrics and a health check.
    assert!(harness::http_get(metrics_port, "/healthz").contains("ok"));
    let metrics = harness::http_get(metrics_port, "/metrics");
    assert!(
        metrics.contains("mediasift_records_written_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mediasift_stage_seconds_bucket{stage=\"fusion\""),
        "{metrics}"
    );
    let vision_metrics = harness::http_get(vision_port, "/metrics");
    assert!(
        vision_metrics.contains("mediasift_inference_batch_size_bucket{model=\"image-tags\""),
        "{vision_metrics}"
    );
    assert!(vision_metrics.contains("mediasift_consumer_pending{stage=\"vision\"}"));

    // Every bad file failed with its reason, and is in the dead-letter stream.
    let failed =
        sqlx::query("SELECT source_uri, error_kind, last_error FROM jobs WHERE status = 'failed'")
            .fetch_all(&c.pg)
            .await
            .unwrap();
    assert_eq!(failed.len(), 3, "{}", c.logs());
    let reason = |name: &str| {
        failed
            .iter()
            .find(|r| r.get::<String, _>(0).ends_with(name))
            .map(|r| (r.get::<String, _>(1), r.get::<String, _>(2)))
            .unwrap_or_else(|| panic!("{name} not failed"))
    };
    assert_eq!(reason("empty.jpg").0, "empty");
    assert_eq!(reason("error-page.mp4").0, "not_media");
    let broken = reason("broken.png");
    assert!(
        broken.1.contains("broken.png"),
        "the reason names the file: {broken:?}"
    );
    let dlq = c.run(&["dlq", "list"]);
    let letters: Vec<Value> = String::from_utf8_lossy(&dlq.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(letters.len(), 3, "{letters:?}");
    for l in &letters {
        assert!(!l["reason"].as_str().unwrap().is_empty());
        assert!(l["uri"].as_str().unwrap().starts_with("s3://"));
    }

    // Embeddings are in S3.
    let objects = s3_keys(&format!("{}/objects/embeddings", c.name)).await;
    for part in ["image_embedding/", "text_embedding/", "fused/"] {
        assert!(
            objects.iter().any(|k| k.contains(part)),
            "{part} in {objects:?}"
        );
    }

    // The same batch again: nothing published, no new rows or objects.
    let counts = |c: &Cluster| {
        let pg = c.pg.clone();
        async move {
            let mut v = Vec::new();
            for t in ["jobs", "analyses", "modality_results", "records"] {
                v.push(
                    sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!(
                        "SELECT count(*) FROM {t}"
                    )))
                    .fetch_one(&pg)
                    .await
                    .unwrap(),
                );
            }
            v
        }
    };
    let before = counts(&c).await;
    let objects_before = s3_keys(&c.name).await.len();
    let (again, report) = c.enqueue(&source, None);
    assert_eq!(again, batch);
    assert!(
        report.contains("0 published") && report.contains("10 already known"),
        "{report}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(counts(&c).await, before);
    assert_eq!(s3_keys(&c.name).await.len(), objects_before);

    // The same bytes under another name in another batch: a new record, analyses reused.
    upload(&[(
        &format!("{}/more/cat-copy.jpg", c.name),
        &f.join("images/photo_02.jpg"),
    )])
    .await;
    c.enqueue(&format!("s3://{bucket}/{}/more", c.name), Some("copies"));
    c.wait_settled(11, SETTLE).await;
    let reused: bool = sqlx::query_scalar(
        "SELECT m.reused FROM modality_results m JOIN jobs j ON j.id = m.job_id
         WHERE j.source_uri LIKE '%/cat-copy.jpg' AND m.modality = 'vision'",
    )
    .fetch_one(&c.pg)
    .await
    .unwrap();
    assert!(reused, "content-addressed results are reused");

    // status reports the batch; SIGTERM stops a component cleanly.
    let status = String::from_utf8_lossy(&c.run(&["status", &batch]).stdout).into_owned();
    assert!(
        status.contains("done") && status.contains("dead letters: 3"),
        "{status}"
    );

    // Retrying dead letters republishes them; these files are still bad, so each comes back
    // to the dead-letter stream once more with the same reason, and no job is left open.
    let retry = String::from_utf8_lossy(&c.run(&["dlq", "retry"]).stdout).into_owned();
    assert!(retry.contains("3 dead letters published again"), "{retry}");
    let start = std::time::Instant::now();
    loop {
        let out = c.run(&["dlq", "list"]);
        let n = String::from_utf8_lossy(&out.stdout).lines().count();
        let failed = c
            .count("SELECT count(*) FROM jobs WHERE status = 'failed'")
            .await;
        if n == 3 && failed == 3 {
            break;
        }
        assert!(
            start.elapsed() < SETTLE,
            "{n} letters, {failed} failed\n{}",
            c.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(c.count("SELECT count(*) FROM records").await, 8);
    assert!(
        c.terminate("dispatcher").success(),
        "{}",
        c.log("dispatcher")
    );
}

/// A job naming a file outside the allowlisted roots is rejected with that reason, never read.
#[tokio::test(flavor = "multi_thread")]
async fn job_outside_the_allowed_roots_is_rejected() {
    let nats = var("MEDIASIFT_TEST_NATS_URL");
    let mut c = Cluster::new("allow", &nats, "allowed_roots = [\"/nonexistent/root\"]").await;
    c.spawn("dispatcher", &["dispatcher"]);
    let dir = fixtures().join("text");
    c.enqueue(dir.to_str().unwrap(), None);
    let n = std::fs::read_dir(&dir).unwrap().count() as i64;
    c.wait_settled(n, SETTLE).await;
    let rejected = c
        .count("SELECT count(*) FROM jobs WHERE status = 'rejected' AND error_kind = 'not_allowed'")
        .await;
    assert_eq!(rejected, n, "{}", c.logs());
    let why: String = sqlx::query_scalar("SELECT last_error FROM jobs LIMIT 1")
        .fetch_one(&c.pg)
        .await
        .unwrap();
    assert!(why.contains("outside the allowed roots"), "{why}");
    let dlq = String::from_utf8_lossy(&c.run(&["dlq", "list"]).stdout).into_owned();
    assert_eq!(dlq.lines().count() as i64, n, "{dlq}");
}

/// Speech clips from a local root, for the crash and restart tests.
fn speech_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let audio = fixtures().join("audio");
    for name in [
        "speech_01.wav",
        "speech_03.mp3",
        "speech_04.flac",
        "speech_08.wav",
        "speech_09.wav",
    ] {
        std::fs::copy(audio.join(name), dir.path().join(name)).unwrap();
    }
    dir
}

/// Five speech clips through dispatcher, fusion, a text worker and one audio worker
/// (`audio-a`) taking one task at a time; returns once its first result is in, so that the
/// worker is inside its next task.
async fn audio_worker_in_a_task(name: &str, ack_wait_secs: u64) -> (tempfile::TempDir, Cluster) {
    let nats = var("MEDIASIFT_TEST_NATS_URL");
    let media = speech_dir();
    let root = media.path().canonicalize().unwrap();
    let extra = format!(
        "allowed_roots = [\"{}\"]\nack_wait_secs = {ack_wait_secs}",
        root.display()
    );
    let mut c = Cluster::new(name, &nats, &extra).await;
    c.spawn("dispatcher", &["dispatcher"]);
    c.spawn("fusion", &["fusion"]);
    c.spawn("text", &["worker", "--modality", "text"]);
    c.spawn(
        "audio-a",
        &["worker", "--modality", "audio", "--concurrency", "1"],
    );
    c.enqueue(root.to_str().unwrap(), None);
    c.wait_count(
        "SELECT count(*) FROM modality_results WHERE modality = 'audio'",
        1,
        SETTLE,
    )
    .await;
    (media, c)
}

/// A worker killed with SIGKILL in the middle of a task: its unacknowledged task is
/// redelivered to the next worker, every job gets its record, nothing is written twice.
#[tokio::test(flavor = "multi_thread")]
async fn killed_worker_loses_nothing_and_duplicates_nothing() {
    let (_media, mut c) = audio_worker_in_a_task("kill", 3).await;
    c.kill9("audio-a");
    let done_by_a = c
        .count("SELECT count(*) FROM modality_results WHERE modality = 'audio'")
        .await;
    assert!(done_by_a < 5, "the kill came too late to test anything");
    c.spawn(
        "audio-b",
        &["worker", "--modality", "audio", "--concurrency", "1"],
    );
    c.wait_settled(5, SETTLE).await;
    assert_eq!(
        c.count("SELECT count(*) FROM records").await,
        5,
        "{}",
        c.logs()
    );
    assert_eq!(
        c.count("SELECT count(*) FROM jobs WHERE status = 'done'")
            .await,
        5
    );
    // One result per job and modality, one analysis row per content and analyzer.
    assert_eq!(
        c.count("SELECT count(*) FROM modality_results WHERE modality = 'audio'")
            .await,
        5
    );
    assert_eq!(
        c.count(
            "SELECT count(*) FROM (SELECT content_hash, analyzer FROM analyses
             GROUP BY 1, 2 HAVING count(*) > 1) d"
        )
        .await,
        0
    );
}

/// The NATS server restarted in the middle of a run: every component reconnects and the run
/// finishes, with the streams kept on disk by the server.
#[tokio::test(flavor = "multi_thread")]
async fn nats_restart_mid_run_is_survived() {
    let bin = var("MEDIASIFT_TEST_NATS_BIN");
    let port = harness::free_port();
    let store = tempfile::tempdir().unwrap();
    let start_nats = || {
        std::process::Command::new(&bin)
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut server = start_nats();
    let url = format!("nats://127.0.0.1:{port}");
    wait_for_port(port).await;
    let media = speech_dir();
    let root = media.path().canonicalize().unwrap();
    let extra = format!(
        "allowed_roots = [\"{}\"]\nack_wait_secs = 5",
        root.display()
    );
    let mut c = Cluster::new("restart", &url, &extra).await;
    c.spawn("dispatcher", &["dispatcher"]);
    c.spawn("fusion", &["fusion"]);
    c.spawn("text", &["worker", "--modality", "text"]);
    c.spawn(
        "audio",
        &["worker", "--modality", "audio", "--concurrency", "1"],
    );
    c.enqueue(root.to_str().unwrap(), None);
    c.wait_count("SELECT count(*) FROM records", 1, SETTLE)
        .await;
    server.kill().unwrap();
    server.wait().unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut server = start_nats();
    wait_for_port(port).await;
    c.wait_settled(5, SETTLE).await;
    assert_eq!(
        c.count("SELECT count(*) FROM records").await,
        5,
        "{}",
        c.logs()
    );
    // The components saw the server go away and come back.
    for component in ["dispatcher", "audio", "fusion"] {
        let log = c.log(component);
        assert!(log.contains("event=disconnected"), "{component}: {log}");
    }
    drop(c);
    server.kill().unwrap();
    server.wait().unwrap();
}

async fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listens on {port}");
}

/// SIGTERM to a worker in the middle of a task: it pulls nothing more, finishes and
/// acknowledges the task in hand, exits 0; another worker takes the rest.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_the_task_in_hand_and_exits() {
    let (_media, mut c) = audio_worker_in_a_task("sigterm", 30).await;
    let status = c.terminate("audio-a");
    assert!(status.success(), "{status}\n{}", c.log("audio-a"));
    let log = c.log("audio-a");
    assert!(log.contains("Finishing tasks in flight"), "{log}");
    // The task in hand was finished, not dropped: with ack_wait at 30 s, a dropped task would
    // keep the run open far longer than it takes worker B to do the rest.
    c.spawn(
        "audio-b",
        &["worker", "--modality", "audio", "--concurrency", "1"],
    );
    let start = std::time::Instant::now();
    c.wait_settled(5, SETTLE).await;
    assert!(
        start.elapsed() < Duration::from_secs(25),
        "a task waited for redelivery: {:?}",
        start.elapsed()
    );
    assert_eq!(c.count("SELECT count(*) FROM records").await, 5);
}
