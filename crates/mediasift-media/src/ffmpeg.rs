//! ffmpeg/ffprobe as subprocesses, each bounded by a deadline and an output cap. Used for video,
//! and for audio/images the built-in decoders reject (Opus, CCITT-compressed TIFF …).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use mediasift_core::{ErrorKind, MediaError, VideoConfig};

/// External tools found at start-up. A missing ffmpeg only affects files that need it.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    pub ffmpeg: Option<PathBuf>,
    pub ffprobe: Option<PathBuf>,
}

impl Tools {
    /// Looks for ffmpeg/ffprobe as configured; each is `None` when it does not run.
    pub fn detect(cfg: &VideoConfig) -> Tools {
        let runs = |exe: &str| {
            Command::new(exe)
                .arg("-version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
                .then(|| PathBuf::from(exe))
        };
        Tools {
            ffmpeg: runs(&cfg.ffmpeg),
            ffprobe: runs(&cfg.ffprobe),
        }
    }

    pub(crate) fn ffmpeg(&self, path: &Path) -> Result<&Path, MediaError> {
        self.ffmpeg
            .as_deref()
            .ok_or_else(|| missing(path, "ffmpeg"))
    }

    pub(crate) fn ffprobe(&self, path: &Path) -> Result<&Path, MediaError> {
        self.ffprobe
            .as_deref()
            .ok_or_else(|| missing(path, "ffprobe"))
    }
}

fn missing(path: &Path, tool: &str) -> MediaError {
    MediaError::new(
        path,
        ErrorKind::MissingTool,
        format!("{tool} is not installed; it is needed for this file (apt-get install ffmpeg)"),
    )
}

/// What a finished subprocess left behind.
#[derive(Debug)]
pub(crate) struct Output {
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub success: bool,
    /// stdout reached the cap and the rest was discarded.
    pub capped: bool,
}

/// Runs `exe args` with no stdin, killing it at `deadline`. At most `max_stdout` bytes of stdout
/// are kept; past that the pipe is closed and the process ends.
pub(crate) fn run(
    path: &Path,
    exe: &Path,
    args: &[String],
    deadline: Instant,
    max_stdout: usize,
) -> Result<Output, MediaError> {
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            MediaError::new(
                path,
                ErrorKind::MissingTool,
                format!("cannot run {}: {e}", exe.display()),
            )
        })?;
    let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
        let _ = child.kill();
        return Err(MediaError::new(
            path,
            ErrorKind::Io,
            "subprocess pipes unavailable",
        ));
    };
    let reader = thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 1 << 16];
        let mut capped = false;
        loop {
            match out.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) if buf.len() + n > max_stdout => {
                    // Dropping the pipe makes the producer exit on its next write (EPIPE).
                    capped = true;
                    break;
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        (buf, capped)
    });
    let err_reader = thread::spawn(move || {
        let mut s = Vec::new();
        // stderr is diagnostics only; keep its start, which names the problem.
        let _ = err.by_ref().take(64 << 10).read_to_end(&mut s);
        let _ = std::io::copy(&mut err, &mut std::io::sink());
        String::from_utf8_lossy(&s).into_owned()
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(MediaError::new(
                    path,
                    ErrorKind::Timeout,
                    format!("{} did not finish within the decode timeout", exe.display()),
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                return Err(MediaError::new(
                    path,
                    ErrorKind::Io,
                    format!("waiting for ffmpeg: {e}"),
                ));
            }
        }
    };
    let (stdout, capped) = reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(Output {
        stdout,
        stderr,
        success: status.is_some_and(|s| s.success()) || capped,
        capped,
    })
}

/// The first meaningful line ffmpeg printed to stderr, for error messages.
pub(crate) fn first_error_line(stderr: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no diagnostic output")
        .chars()
        .take(300)
        .collect()
}

/// Common leading arguments: quiet, no stdin interaction, one input.
pub(crate) fn input_args(path: &Path, loglevel: &str) -> Vec<String> {
    vec![
        "-nostdin".into(),
        "-hide_banner".into(),
        "-loglevel".into(),
        loglevel.into(),
        "-i".into(),
        path.to_string_lossy().into_owned(),
    ]
}
