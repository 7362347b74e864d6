//! OCR through the Tesseract CLI (Debian `tesseract-ocr`): the image goes in on stdin as PNG,
//! words with boxes and confidences come back as TSV.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::ModelError;

/// One recognised word.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OcrWord {
    pub text: String,
    /// Tesseract's confidence, 0–100.
    pub conf: f32,
    /// left, top, width, height in pixels of the analysed image.
    #[serde(rename = "box")]
    pub bbox: [u32; 4],
}

/// One line of text (words joined by spaces).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OcrLine {
    pub text: String,
    pub words: usize,
}

/// Everything Tesseract read from one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OcrResult {
    /// Lines separated by `\n`, paragraphs by a blank line.
    pub text: String,
    pub mean_confidence: f32,
    pub words: Vec<OcrWord>,
    pub lines: usize,
}

/// A configured Tesseract.
#[derive(Debug, Clone)]
pub struct Tesseract {
    exe: PathBuf,
    languages: String,
    version: String,
    timeout_secs: u64,
}

impl Tesseract {
    /// Finds the executable and checks the languages are installed.
    pub fn new(exe: &str, languages: &str, timeout_secs: u64) -> Result<Tesseract, ModelError> {
        let missing = |hint: String| ModelError::MissingTool {
            tool: exe.into(),
            what: "OCR".into(),
            hint,
        };
        let out = Command::new(exe)
            .arg("--version")
            .output()
            .map_err(|_| missing("apt-get install tesseract-ocr".into()))?;
        let version = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("tesseract")
            .trim()
            .to_string();
        let list = Command::new(exe)
            .arg("--list-langs")
            .output()
            .map_err(|e| missing(e.to_string()))?;
        let installed = String::from_utf8_lossy(&list.stdout).into_owned();
        for lang in languages.split('+') {
            if !installed.lines().any(|l| l.trim() == lang) {
                return Err(missing(format!(
                    "language `{lang}` missing: apt-get install tesseract-ocr-{lang}"
                )));
            }
        }
        Ok(Tesseract {
            exe: PathBuf::from(exe),
            languages: languages.into(),
            version,
            timeout_secs: timeout_secs.max(1),
        })
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn languages(&self) -> &str {
        &self.languages
    }

    /// Runs OCR on an encoded image (PNG, TIFF, …) given as bytes.
    pub fn recognize(&self, image: &[u8]) -> Result<OcrResult, ModelError> {
        let err = |reason: String| ModelError::Inference {
            id: "tesseract".into(),
            reason,
        };
        // coreutils `timeout` ends a Tesseract that hangs on a pathological image (KILL 5 s after
        // TERM), so one image can never hold a decode task forever.
        let mut child = Command::new("timeout")
            .args(["-k", "5", &self.timeout_secs.to_string()])
            .arg(&self.exe)
            .args([
                "stdin",
                "stdout",
                "-l",
                &self.languages,
                "--psm",
                "3",
                "tsv",
            ])
            // One thread per call: decode tasks already use the cores.
            .env("OMP_THREAD_LIMIT", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| err(e.to_string()))?;
        let mut stdin = child.stdin.take().ok_or_else(|| err("no stdin".into()))?;
        let input = image.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().map_err(|e| err(e.to_string()))?;
        let _ = writer.join();
        if matches!(out.status.code(), Some(124 | 137) | None) {
            return Err(err(format!(
                "tesseract did not finish within {} s (ocr.timeout_secs)",
                self.timeout_secs
            )));
        }
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(err(stderr.lines().last().unwrap_or("failed").to_string()));
        }
        Ok(parse_tsv(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// Parses `tesseract … tsv`: level page block par line word left top width height conf text.
fn parse_tsv(tsv: &str) -> OcrResult {
    let mut words = Vec::new();
    let mut text = String::new();
    let mut current: Option<(u32, u32, u32)> = None;
    let mut lines = 0;
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.splitn(12, '\t').collect();
        if cols.len() < 12 || cols[0] != "5" {
            continue;
        }
        let word = cols[11].trim();
        let conf: f32 = cols[10].parse().unwrap_or(-1.0);
        if word.is_empty() || conf < 0.0 {
            continue;
        }
        let num = |i: usize| cols[i].parse::<u32>().unwrap_or(0);
        let key = (num(2), num(3), num(4));
        match current {
            Some(k) if k == key => text.push(' '),
            Some((block, par, _)) => {
                text.push('\n');
                if (block, par) != (key.0, key.1) {
                    text.push('\n');
                }
                lines += 1;
            }
            None => lines += 1,
        }
        current = Some(key);
        text.push_str(word);
        words.push(OcrWord {
            text: word.to_string(),
            conf,
            bbox: [num(6), num(7), num(8), num(9)],
        });
    }
    let mean_confidence = if words.is_empty() {
        0.0
    } else {
        words.iter().map(|w| w.conf).sum::<f32>() / words.len() as f32
    };
    OcrResult {
        text,
        mean_confidence,
        words,
        lines,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tsv_rows_become_lines_and_paragraphs() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
                   5\t1\t1\t1\t1\t1\t10\t10\t50\t20\t96.5\tHello\n\
                   5\t1\t1\t1\t1\t2\t70\t10\t50\t20\t93.5\tworld\n\
                   5\t1\t1\t1\t2\t1\t10\t40\t50\t20\t90\tnext\n\
                   5\t1\t2\t1\t1\t1\t10\t90\t50\t20\t80\tpara\n";
        let r = super::parse_tsv(tsv);
        assert_eq!(r.text, "Hello world\nnext\n\npara");
        assert_eq!(r.lines, 3);
        assert_eq!(r.words[1].bbox, [70, 10, 50, 20]);
        assert!((r.mean_confidence - 90.0).abs() < 1e-3);
    }
}
