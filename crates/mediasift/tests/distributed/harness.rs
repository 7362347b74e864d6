//! A whole distributed deployment per test: its own Postgres database, its own NATS subject
//! prefix (so its own streams), its own S3 prefix, and every component as a separate
//! `mediasift` process, as in production. The servers come from `scripts/services.sh start`
//! (NATS 2.15, PostgreSQL + pgvector, SeaweedFS S3), named by `MEDIASIFT_TEST_*`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sqlx::postgres::PgPool;

pub fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the servers of `scripts/services.sh start` \
             (run `eval \"$(bash scripts/services.sh start)\"` first, or `bash scripts/test.sh`)"
        )
    })
}

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/media")
        .canonicalize()
        .expect("fixtures exist")
}

pub fn s3() -> AmazonS3 {
    AmazonS3Builder::new()
        .with_bucket_name(var("MEDIASIFT_TEST_S3_BUCKET"))
        .with_endpoint(var("MEDIASIFT_TEST_S3_ENDPOINT"))
        .with_region("us-east-1")
        .with_allow_http(true)
        .with_skip_signature(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .expect("S3 client")
}

pub async fn upload(files: &[(&str, &Path)]) {
    let s3 = s3();
    for (key, path) in files {
        let bytes = std::fs::read(path).expect("fixture readable");
        s3.put(&ObjectPath::from(*key), PutPayload::from(bytes))
            .await
            .expect("upload to S3");
    }
}

pub async fn s3_keys(prefix: &str) -> Vec<String> {
    use futures::StreamExt;
    let s3 = s3();
    let mut out = Vec::new();
    let mut list = s3.list(Some(&ObjectPath::from(prefix)));
    while let Some(m) = list.next().await {
        out.push(m.expect("list").location.to_string());
    }
    out.sort();
    out
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One deployment: config file, database, prefix and child processes.
pub struct Cluster {
    pub name: String,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub pg: PgPool,
    children: BTreeMap<String, Child>,
}

impl Cluster {
    /// `distributed` is extra TOML for the `[distributed]` table (one `key = value` per line).
    pub async fn new(name: &str, nats_url: &str, distributed: &str) -> Cluster {
        let name = format!("{name}_{}", std::process::id());
        let admin_url = var("MEDIASIFT_TEST_PG_URL");
        let admin = PgPool::connect(&admin_url)
            .await
            .expect("Postgres reachable");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&admin)
        .await
        .expect("drop test database");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let db_url = format!("{}/{name}", admin_url.rsplit_once('/').expect("url").0);
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("mediasift.toml");
        let bucket = var("MEDIASIFT_TEST_S3_BUCKET");
        let toml = format!(
            r#"
[distributed]
nats_url = "{nats_url}"
prefix = "{name}"
postgres_url = "{db_url}"
object_store = "s3://{bucket}/{name}/objects"
s3_endpoint = "{endpoint}"
s3_allow_http = true
s3_skip_signature = true
backoff_secs = [1]
metrics_addr = ""
{distributed}

[transcription]
model = "whisper-tiny.en"
beam_size = 1

[batching]
max_wait_ms = 5
"#,
            endpoint = var("MEDIASIFT_TEST_S3_ENDPOINT"),
        );
        std::fs::write(&config, toml).expect("write config");
        // Migrations first, so every process starts against the same schema.
        let cluster = Cluster {
            pg: PgPool::connect(&db_url).await.expect("test database"),
            name,
            dir,
            config,
            children: BTreeMap::new(),
        };
        let out = cluster.run(&["migrate"]);
        assert!(
            out.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mediasift"));
        cmd.arg("--config").arg(&self.config).args(args);
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("MEDIASIFT__")) {
            cmd.env_remove(k);
        }
        cmd.env("RUST_LOG", "info,async_nats=warn,sqlx=warn");
        // No config/mediasift.toml from the working directory: defaults + this file only.
        cmd.current_dir(self.dir.path());
        cmd
    }

    /// Runs a command to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("mediasift runs")
    }

    /// Starts a long-running component, logging to `<dir>/<label>.log`.
    pub fn spawn(&mut self, label: &str, args: &[&str]) {
        self.spawn_env(label, args, &[]);
    }

    pub fn spawn_env(&mut self, label: &str, args: &[&str], env: &[(&str, &str)]) {
        let log = std::fs::File::create(self.dir.path().join(format!("{label}.log"))).expect("log");
        let child = self
            .command(args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn component");
        self.children.insert(label.to_string(), child);
    }

    pub fn kill9(&mut self, label: &str) {
        if let Some(mut c) = self.children.remove(label) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then waits for a graceful exit; returns the exit status.
    pub fn terminate(&mut self, label: &str) -> std::process::ExitStatus {
        let mut c = self.children.remove(label).expect("running component");
        let _ = Command::new("kill").arg(c.id().to_string()).status();
        c.wait().expect("component exits")
    }

    pub fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{label}.log"))).unwrap_or_default()
    }

    pub fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.dir.path()).expect("dir").flatten() {
            let p = entry.path();
            if p.extension().is_some_and(|e| e == "log") {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                all.push_str(&format!("==> {}\n", p.display()));
                for l in tail.into_iter().rev() {
                    all.push_str(l);
                    all.push('\n');
                }
            }
        }
        all
    }

    /// Enqueues `source`; returns the batch id.
    pub fn enqueue(&self, source: &str, batch: Option<&str>) -> (String, String) {
        let mut args = vec!["enqueue", source, "--no-progress"];
        if let Some(b) = batch {
            args.extend(["--batch", b]);
        }
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "enqueue failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.pg)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// Panics (with the logs) when a component exited on its own.
    pub fn assert_running(&mut self) {
        let exited = self
            .children
            .iter_mut()
            .find_map(|(label, c)| c.try_wait().ok().flatten().map(|s| (label.clone(), s)));
        if let Some((label, status)) = exited {
            panic!("{label} exited with {status}\n{}", self.logs());
        }
    }

    /// Waits until `n` jobs exist and none is queued or dispatched.
    pub async fn wait_settled(&mut self, n: i64, timeout: Duration) {
        let start = Instant::now();
        loop {
            self.assert_running();
            let total = self.count("SELECT count(*) FROM jobs").await;
            let open = self
                .count("SELECT count(*) FROM jobs WHERE status IN ('queued', 'dispatched')")
                .await;
            if total >= n && open == 0 {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "{open} of {total} jobs still open after {timeout:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Polls `sql` (a count) until it reaches `n`.
    pub async fn wait_count(&mut self, sql: &'static str, n: i64, timeout: Duration) {
        let start = Instant::now();
        while self.count(sql).await < n {
            self.assert_running();
            assert!(
                start.elapsed() < timeout,
                "{sql} < {n} after {timeout:?}\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for (_, mut c) in std::mem::take(&mut self.children) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GET http://127.0.0.1:{port}{path}, the body.
pub fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}
