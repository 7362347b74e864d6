//! Whisper on the real weights (installed by `mediasift models fetch`, which the test script
//! runs): features and greedy tokens against faster-whisper (fixtures from
//! `scripts/reference/whisper_reference.py`), word error rate against the reference
//! transcripts, language detection, and no invented text over silence or noise.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use candle_core::Device;
use mediasift_core::{Config, RawConfig};
use mediasift_media::{Decoded, Tools, decode_file};
use mediasift_models::vad::speech_regions;
use mediasift_models::whisper::MelExtractor;
use mediasift_models::{
    ModelStore, SileroVad, TranscribeOptions, Transcript, VadOptions, WhisperModel, catalog,
};
use serde_json::Value;

fn repo(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

fn reference() -> &'static Value {
    static R: OnceLock<Value> = OnceLock::new();
    R.get_or_init(|| {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/whisper_reference.json");
        serde_json::from_slice(&std::fs::read(path).expect("reference fixture")).expect("json")
    })
}

fn config() -> &'static Config {
    static CFG: OnceLock<Config> = OnceLock::new();
    CFG.get_or_init(|| RawConfig::default().validate().expect("default config"))
}

fn model(id: &str) -> &'static WhisperModel {
    static BASE: OnceLock<WhisperModel> = OnceLock::new();
    static TINY: OnceLock<WhisperModel> = OnceLock::new();
    let (cell, spec) = match id {
        "whisper-base" => (&BASE, &catalog::WHISPER_BASE),
        _ => (&TINY, &catalog::WHISPER_TINY_EN),
    };
    cell.get_or_init(|| {
        let cfg = config();
        let store = ModelStore::new(cfg.models_dir(), cfg.models().paths.clone(), false);
        let resolved = store
            .resolve(spec)
            .unwrap_or_else(|e| panic!("{e} (the test script fetches it)"));
        WhisperModel::load(&resolved, &Device::Cpu).expect("load whisper")
    })
}

fn vad() -> &'static SileroVad {
    static VAD: OnceLock<SileroVad> = OnceLock::new();
    VAD.get_or_init(|| {
        let cfg = config();
        let store = ModelStore::new(cfg.models_dir(), cfg.models().paths.clone(), false);
        let resolved = store
            .resolve(&catalog::SILERO_VAD)
            .unwrap_or_else(|e| panic!("{e} (the test script fetches it)"));
        SileroVad::load(&resolved).expect("load silero")
    })
}

/// 16 kHz mono samples of a fixture, through mediasift's own decoder.
fn samples(rel: &str) -> Vec<f32> {
    let tools = Tools::detect(config().video());
    let intake = decode_file(
        &repo("tests/fixtures/media").join(rel),
        config(),
        &tools,
        Instant::now() + Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("{rel}: {e}"));
    match intake.decoded {
        Decoded::Audio(a) => a.samples,
        other => panic!("{rel} decoded as {:?}", other.kind()),
    }
}

fn at_temperature_zero(beam_size: usize) -> TranscribeOptions {
    TranscribeOptions {
        temperatures: vec![0.0],
        beam_size,
        ..TranscribeOptions::default()
    }
}

#[test]
fn log_mel_matches_faster_whisper_within_1e_4() {
    let clip = &reference()["models"]["whisper-base"]["clips"]["speech_01.wav"];
    let mel = MelExtractor::new(80).compute(&samples("audio/speech_01.wav"), 160);
    assert_eq!(
        mel.frames as u64,
        clip["mel_frames"].as_u64().expect("frames")
    );
    let mut worst = 0f32;
    for (i, frame) in clip["mel_every_10th_frame"]
        .as_array()
        .expect("frames")
        .iter()
        .enumerate()
    {
        for (m, v) in frame.as_array().expect("bins").iter().enumerate() {
            let ours = mel.data[m * mel.frames + i * 10];
            worst = worst.max((ours - v.as_f64().expect("f64") as f32).abs());
        }
    }
    assert!(worst < 1e-4, "largest difference {worst}");
}

fn tokens_of(t: &Transcript) -> Vec<u32> {
    t.segments.iter().flat_map(|s| s.tokens.clone()).collect()
}

#[test]
fn greedy_tokens_equal_faster_whisper() {
    for (id, entry) in reference()["models"].as_object().expect("models") {
        let m = model(id);
        let expected_suppress: Vec<u32> =
            serde_json::from_value(entry["suppress_tokens"].clone()).expect("suppress list");
        assert_eq!(m.special_tokens().suppress, expected_suppress, "{id}");
        for (clip, want) in entry["clips"].as_object().expect("clips") {
            let t = m
                .transcribe(&samples(&format!("audio/{clip}")), &at_temperature_zero(1))
                .expect("transcribe");
            let want_tokens: Vec<u32> = want["segments"]
                .as_array()
                .expect("segments")
                .iter()
                .flat_map(|s| serde_json::from_value::<Vec<u32>>(s["tokens"].clone()).expect("ids"))
                .collect();
            assert_eq!(tokens_of(&t), want_tokens, "{id} {clip}: {}", t.text);
            assert_eq!(
                t.language,
                want["language"].as_str().expect("lang"),
                "{id} {clip}"
            );
            let p = want["language_probability"].as_f64().expect("p") as f32;
            assert!(
                (t.language_probability - p).abs() < 1e-3,
                "{id} {clip}: {p}"
            );
            for (ours, theirs) in t
                .segments
                .iter()
                .zip(want["segments"].as_array().expect("s"))
            {
                assert!((ours.start - theirs["start"].as_f64().expect("start")).abs() < 1e-6);
                assert!((ours.end - theirs["end"].as_f64().expect("end")).abs() < 1e-6);
                let ns = theirs["no_speech_prob"].as_f64().expect("nsp") as f32;
                assert!((ours.no_speech_prob - ns).abs() < 1e-3, "{id} {clip}");
            }
        }
    }
}

/// Word timestamps (greedy, temperature 0) against faster-whisper's `word_timestamps=True` on
/// the same audio: the same segments and tokens (word timing moves the next window's start),
/// the same words, and their times within one 20 ms frame.
#[test]
fn word_timestamps_match_faster_whisper() {
    let mut compared = 0;
    for (id, entry) in reference()["models"].as_object().expect("models") {
        let m = model(id);
        for (clip, want) in entry["clips"].as_object().expect("clips") {
            let opts = TranscribeOptions {
                word_timestamps: true,
                ..at_temperature_zero(1)
            };
            let t = m
                .transcribe(&samples(&format!("audio/{clip}")), &opts)
                .expect("transcribe");
            let want_segments = want["word_segments"].as_array().expect("word segments");
            assert_eq!(t.segments.len(), want_segments.len(), "{id} {clip}");
            let (mut words, mut worst, mut worst_p) = (0, 0f64, 0f64);
            for (ours, theirs) in t.segments.iter().zip(want_segments) {
                let tokens: Vec<u32> =
                    serde_json::from_value(theirs["tokens"].clone()).expect("ids");
                assert_eq!(ours.tokens, tokens, "{id} {clip}");
                let their_words = theirs["words"].as_array().expect("words");
                let texts: Vec<&str> = ours.words.iter().map(|w| w.word.as_str()).collect();
                let their_texts: Vec<&str> = their_words
                    .iter()
                    .map(|w| w["word"].as_str().expect("word"))
                    .collect();
                assert_eq!(texts, their_texts, "{id} {clip}");
                for (w, tw) in ours.words.iter().zip(their_words) {
                    let f = |k: &str| tw[k].as_f64().expect("number");
                    worst = worst
                        .max((w.start - f("start")).abs())
                        .max((w.end - f("end")).abs());
                    worst_p = worst_p.max((w.probability - f("probability")).abs());
                    words += 1;
                }
                let f = |k: &str| theirs[k].as_f64().expect("number");
                worst = worst
                    .max((ours.start - f("start")).abs())
                    .max((ours.end - f("end")).abs());
            }
            eprintln!(
                "{id} {clip}: {words} words, times within {worst:.3} s, probabilities within {worst_p:.1e}"
            );
            // speech_02 (two voices mixed) gets only "He begins with a few few" from tiny.en.
            assert!(words >= 5, "{id} {clip}: {words} words");
            compared += words;
            assert!(worst <= 0.021, "{id} {clip}: a time is {worst:.3} s off");
            assert!(
                worst_p < 1e-3,
                "{id} {clip}: a probability is {worst_p} off"
            );
        }
    }
    assert!(compared > 100, "only {compared} words compared");
}

/// Lower-case words without punctuation, numbers and common abbreviations spelled out (as
/// Whisper's English normaliser does before scoring).
fn normalise(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    for raw in text.split(|c: char| c.is_whitespace() || c == '-') {
        let w: String = raw
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '\'')
            .flat_map(char::to_lowercase)
            .collect();
        let w = w.trim_matches('\'').to_string();
        if w.is_empty() {
            continue;
        }
        let ordinal = ["st", "nd", "rd", "th"]
            .iter()
            .find_map(|suffix| w.strip_suffix(suffix)?.parse::<u32>().ok());
        match (w.parse::<u32>(), ordinal, w.as_str()) {
            (Ok(n), _, _) => words.extend(number_words(n)),
            (_, Some(n), _) => {
                let mut spelled = number_words(n);
                if let Some(last) = spelled.last_mut() {
                    *last = ordinal_word(last);
                }
                words.extend(spelled);
            }
            (_, _, "mr") => words.push("mister".into()),
            (_, _, "mrs") => words.push("missus".into()),
            (_, _, "dr") => words.push("doctor".into()),
            _ => words.push(w),
        }
    }
    words
}

fn number_words(n: u32) -> Vec<String> {
    const SMALL: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 10] = [
        "", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    match n {
        0..20 => vec![SMALL[n as usize].into()],
        20..100 => {
            let mut v = vec![TENS[(n / 10) as usize].to_string()];
            if !n.is_multiple_of(10) {
                v.push(SMALL[(n % 10) as usize].into());
            }
            v
        }
        100..1000 => {
            let mut v = vec![SMALL[(n / 100) as usize].to_string(), "hundred".into()];
            if !n.is_multiple_of(100) {
                v.extend(number_words(n % 100));
            }
            v
        }
        _ => vec![n.to_string()],
    }
}

fn ordinal_word(cardinal: &str) -> String {
    match cardinal {
        "one" => "first".into(),
        "two" => "second".into(),
        "three" => "third".into(),
        "five" => "fifth".into(),
        "eight" => "eighth".into(),
        "nine" => "ninth".into(),
        "twelve" => "twelfth".into(),
        c if c.ends_with('y') => format!("{}ieth", &c[..c.len() - 1]),
        c => format!("{c}th"),
    }
}

/// Word-level edit distance.
fn edits(reference: &[String], hypothesis: &[String]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev[j] + usize::from(r != h);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[hypothesis.len()]
}

fn reference_transcripts() -> BTreeMap<String, (String, String)> {
    let text = std::fs::read_to_string(repo("tests/fixtures/groundtruth/transcripts.tsv"))
        .expect("transcripts.tsv");
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let mut f = l.split('\t');
            let file = f.next()?.strip_prefix("audio/")?.to_string();
            Some((file, (f.next()?.to_string(), f.next()?.to_string())))
        })
        .collect()
}

#[test]
fn english_speech_has_low_word_error_rate_and_languages_are_detected() {
    let m = model("whisper-base");
    let refs = reference_transcripts();
    let opts = TranscribeOptions::default();
    let mut clean = (0usize, 0usize);
    let mut report = Vec::new();
    for (clip, (lang, text)) in &refs {
        let t = m
            .transcribe(&samples(&format!("audio/{clip}")), &opts)
            .expect("transcribe");
        assert_eq!(&t.language, lang, "{clip}: detected {}", t.language);
        assert!(!t.segments.is_empty(), "{clip}: no segments");
        for s in &t.segments {
            assert!(
                s.start <= s.end && s.end <= t.duration + 0.5,
                "{clip}: {s:?}"
            );
        }
        if lang != "en" || clip == "speech_02.wav" {
            // Non-English: language only. speech_02 is two speakers on two channels, mixed.
            report.push(format!("{clip} [{lang}] {}", t.text));
            continue;
        }
        let (r, h) = (normalise(text), normalise(&t.text));
        let e = edits(&r, &h);
        report.push(format!(
            "{clip} WER {:.1}% ({e}/{}) {}",
            100.0 * e as f64 / r.len() as f64,
            r.len(),
            t.text
        ));
        // speech_07 is 8 kHz telephone audio, speech_08 speech under noise at 5 dB SNR.
        if clip != "speech_07.wav" && clip != "speech_08.wav" {
            clean.0 += e;
            clean.1 += r.len();
        }
    }
    eprintln!("{}", report.join("\n"));
    let wer = clean.0 as f64 / clean.1 as f64;
    assert!(wer <= 0.05, "clean-speech WER {:.1}%", 100.0 * wer);
}

#[test]
fn vad_matches_faster_whisper_and_covers_the_speech_of_every_clip() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vad_reference.json");
    let reference: Value =
        serde_json::from_slice(&std::fs::read(path).expect("fixture")).expect("json");
    for (clip, want) in reference.as_object().expect("clips") {
        let audio = samples(&format!("audio/{clip}"));
        let probs = vad().probabilities(&audio);
        let theirs: Vec<f32> = serde_json::from_value(want["probabilities"].clone()).expect("p");
        assert_eq!(probs.len(), theirs.len(), "{clip}");
        let worst = probs
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            worst < 1e-3,
            "{clip}: largest probability difference {worst}"
        );
        let regions = speech_regions(&probs, audio.len(), &VadOptions::default());
        let got: Vec<(u64, u64)> = regions
            .iter()
            .map(|r| (r.start as u64, r.end as u64))
            .collect();
        let want: Vec<(u64, u64)> = want["regions"]
            .as_array()
            .expect("regions")
            .iter()
            .filter_map(|r| Some((r["start"].as_u64()?, r["end"].as_u64()?)))
            .collect();
        assert_eq!(got, want, "{clip}");
    }
    // Every speech clip: speech found over most of it.
    for clip in reference_transcripts().keys() {
        let audio = samples(&format!("audio/{clip}"));
        let probs = vad().probabilities(&audio);
        let regions = speech_regions(&probs, audio.len(), &VadOptions::default());
        let covered: usize = regions.iter().map(|r| r.end - r.start).sum();
        assert!(
            covered as f64 >= 0.7 * audio.len() as f64,
            "{clip}: speech found in {covered} of {} samples",
            audio.len()
        );
    }
}

#[test]
fn silence_and_noise_give_no_text_with_the_vad() {
    let m = model("whisper-base");
    let opts = TranscribeOptions::default();
    // Whisper alone says "You" over 5 s of digital silence at beam 5 (as faster-whisper does
    // without its VAD filter); with the VAD first there is nothing to transcribe.
    let silence = vec![0.0f32; 16_000 * 5];
    let t = m
        .transcribe_speech(&silence, vad(), &opts)
        .expect("silence");
    assert!(t.segments.is_empty() && t.text.is_empty(), "{t:?}");
    // White noise at a moderate level (deterministic generator).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<f32> = (0..16_000 * 5)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2
        })
        .collect();
    let regions = speech_regions(
        &vad().probabilities(&noise),
        noise.len(),
        &VadOptions::default(),
    );
    assert!(regions.is_empty(), "noise taken for speech: {regions:?}");
    let t = m.transcribe_speech(&noise, vad(), &opts).expect("noise");
    assert!(t.text.is_empty(), "{t:?}");
}

#[test]
fn beam_search_tokens_equal_faster_whisper() {
    for (id, entry) in reference()["models"].as_object().expect("models") {
        for (clip, want) in entry["clips"].as_object().expect("clips") {
            let t = model(id)
                .transcribe(&samples(&format!("audio/{clip}")), &at_temperature_zero(5))
                .expect("transcribe");
            let want: Vec<u32> = serde_json::from_value(want["beam5_tokens"].clone()).expect("ids");
            assert_eq!(tokens_of(&t), want, "{id} {clip}: {}", t.text);
        }
    }
}
