//! `mediasift bench audio`: Whisper wall time and real-time factor per clip, side by side with
//! faster-whisper (CTranslate2) on the same weights and the same 16 kHz samples, in one run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use candle_core::Device;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use mediasift_media::{Decoded, Tools, decode_file};
use mediasift_models::whisper::MelExtractor;
use mediasift_models::{TranscribeOptions, WhisperModel, catalog};
use serde_json::Value;

use crate::cli::{AudioBenchArgs, GlobalArgs};
use crate::context;

struct Clip {
    name: String,
    samples: Vec<f32>,
}

impl Clip {
    fn secs(&self) -> f64 {
        self.samples.len() as f64 / 16_000.0
    }
}

pub fn audio(g: &GlobalArgs, args: AudioBenchArgs) -> anyhow::Result<()> {
    let cfg = context::load_config(g)?;
    let store = mediasift_pipeline::model_store(&cfg);
    let clips = load_clips(&cfg, &args.clips, args.long_secs)?;
    let dir = std::env::temp_dir().join(format!("mediasift-bench-audio-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    for c in &clips {
        let bytes: Vec<u8> = c.samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        std::fs::write(dir.join(format!("{}.f32", c.name)), bytes)?;
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header([
        "model",
        "beam",
        "clip",
        "audio s",
        "mediasift s (RTF)",
        "fw float32 s",
        "ratio",
        "fw int8 s",
        "ratio",
        "tokens = fw float32",
    ]);
    let result = (|| -> anyhow::Result<()> {
        for id in &args.models {
            let spec = catalog::by_id(id)
                .filter(|s| s.id.starts_with("whisper"))
                .ok_or_else(|| anyhow::anyhow!("{id} is not a Whisper model of the catalog"))?;
            let model = WhisperModel::load(&store.resolve(spec)?, &Device::Cpu)?;
            let peer = peer(&args, id, &dir);
            for &beam in &args.beams {
                let opts = TranscribeOptions {
                    temperatures: vec![0.0],
                    beam_size: beam,
                    word_timestamps: args.word_timestamps,
                    ..TranscribeOptions::default()
                };
                // Warm-up, as the peer does.
                model.transcribe(&clips[0].samples, &opts)?;
                let (mut ours_total, mut f32_total, mut audio_total) = (0.0, 0.0, 0.0);
                for c in &clips {
                    let start = Instant::now();
                    let tr = model.transcribe(&c.samples, &opts)?;
                    let ours = start.elapsed().as_secs_f64();
                    let tokens: Vec<u64> = tr
                        .segments
                        .iter()
                        .flat_map(|s| s.tokens.iter().map(|&t| u64::from(t)))
                        .collect();
                    let fw = |ct: &str| -> Option<(f64, Vec<u64>)> {
                        let r = peer.as_ref().ok()?.get(ct)?.get(beam.to_string())?;
                        let r = r.get(format!("{}.f32", c.name))?;
                        let toks = r["tokens"].as_array()?.iter().filter_map(Value::as_u64);
                        Some((r["secs"].as_f64()?, toks.collect()))
                    };
                    let (f32s, int8) = (fw("float32"), fw("int8"));
                    ours_total += ours;
                    audio_total += c.secs();
                    if let Some((s, _)) = &f32s {
                        f32_total += s;
                    }
                    let cell = |v: &Option<(f64, Vec<u64>)>| match v {
                        Some((s, _)) => [format!("{s:.2}"), format!("{:.2}×", ours / s)],
                        None => ["-".into(), "-".into()],
                    };
                    let [fs, fr] = cell(&f32s);
                    let [is, ir] = cell(&int8);
                    let same = match &f32s {
                        Some((_, theirs)) if *theirs == tokens => "yes".to_string(),
                        Some((_, theirs)) => format!("no ({} vs {})", tokens.len(), theirs.len()),
                        None => "-".into(),
                    };
                    t.add_row([
                        id.clone(),
                        beam.to_string(),
                        c.name.clone(),
                        format!("{:.1}", c.secs()),
                        format!("{ours:.2} ({:.3})", ours / c.secs()),
                        fs,
                        fr,
                        is,
                        ir,
                        same,
                    ]);
                }
                let total_ratio = if f32_total > 0.0 {
                    format!("{:.2}×", ours_total / f32_total)
                } else {
                    "-".into()
                };
                t.add_row([
                    id.clone(),
                    beam.to_string(),
                    "all clips".into(),
                    format!("{audio_total:.1}"),
                    format!("{ours_total:.2} ({:.3})", ours_total / audio_total),
                    format!("{f32_total:.2}"),
                    total_ratio,
                    String::new(),
                    String::new(),
                    String::new(),
                ]);
            }
            if let Err(e) = &peer {
                eprintln!("faster-whisper side unavailable for {id}: {e}");
            }
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result?;
    println!("{t}");
    let mel = MelExtractor::new(80);
    let thirty = vec![0.1f32; 16_000 * 30];
    let start = Instant::now();
    let runs = 10;
    for _ in 0..runs {
        std::hint::black_box(mel.compute(&thirty, 160));
    }
    println!(
        "log-mel of 30 s of audio: {:.1} ms; threads: candle uses every core ({}), \
         faster-whisper cpu_threads = {}; RTF = wall time / audio duration",
        start.elapsed().as_secs_f64() * 1e3 / f64::from(runs),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        args.threads
    );
    Ok(())
}

/// The speech clips of `dir` at 16 kHz through mediasift's decoder, plus (when `long_secs` > 0)
/// their concatenation repeated to at least `long_secs` seconds.
fn load_clips(
    cfg: &mediasift_core::Config,
    dir: &Path,
    long_secs: f64,
) -> anyhow::Result<Vec<Clip>> {
    let tools = Tools::detect(cfg.video());
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading the clips folder {}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("speech_"))
        })
        .collect();
    paths.sort();
    let mut clips = Vec::new();
    for p in paths {
        let intake = decode_file(&p, cfg, &tools, Instant::now() + Duration::from_secs(60))?;
        if let Decoded::Audio(a) = intake.decoded {
            let name = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("clip")
                .to_string();
            clips.push(Clip {
                name,
                samples: a.samples,
            });
        }
    }
    anyhow::ensure!(!clips.is_empty(), "no speech_* clips in {}", dir.display());
    if long_secs > 0.0 {
        let mut long = Vec::new();
        while (long.len() as f64) < long_secs * 16_000.0 {
            for c in &clips {
                long.extend_from_slice(&c.samples);
            }
        }
        clips.push(Clip {
            name: format!("concatenated_{:.0}s", long.len() as f64 / 16_000.0),
            samples: long,
        });
    }
    Ok(clips)
}

/// Runs scripts/bench/whisper_peer.py: `{compute type: {beam: {clip file: {secs, tokens}}}}`.
fn peer(
    args: &AudioBenchArgs,
    id: &str,
    dir: &Path,
) -> Result<serde_json::Map<String, Value>, String> {
    let beams: Vec<String> = args.beams.iter().map(usize::to_string).collect();
    let out = Command::new(&args.python)
        .arg(&args.peer_script)
        .arg(id)
        .arg(dir)
        .args(["--threads", &args.threads.to_string()])
        .args(["--beams", &beams.join(",")])
        .args(args.word_timestamps.then_some("--word-timestamps"))
        .output()
        .map_err(|e| format!("{}: {e}", args.python))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "peer failed (pip install faster-whisper?): {}",
            err.lines().last().unwrap_or("")
        ));
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    v.get("results")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| "peer printed no results".into())
}
