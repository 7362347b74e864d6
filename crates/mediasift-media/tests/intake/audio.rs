use std::process::Command;

use mediasift_media::TARGET_RATE;

use crate::common::{audio, correlation, fixture};

/// The reference: ffmpeg's own downmix and resampling of a fixture.
fn ffmpeg_mono_16k(rel: &str) -> Vec<f32> {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-i"])
        .arg(fixture(rel))
        .args([
            "-ac",
            "1",
            "-ar",
            &TARGET_RATE.to_string(),
            "-f",
            "f32le",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    out.stdout
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

#[test]
fn every_audio_format_decodes_to_mono_16khz() {
    // (file, codec, original rate, channels, duration in seconds, decoder)
    let cases = [
        (
            "audio/speech_01.wav",
            "pcm_s16le",
            16_000,
            1,
            11.0,
            "symphonia",
        ),
        ("audio/speech_03.mp3", "mp3", 16_000, 1, 7.1, "symphonia"),
        ("audio/speech_04.flac", "flac", 48_000, 1, 5.3, "symphonia"),
        ("audio/speech_05.m4a", "aac", 44_100, 1, 2.55, "symphonia"),
        (
            "audio/speech_06.ogg",
            "vorbis",
            16_000,
            1,
            5.67,
            "symphonia",
        ),
        (
            "audio/speech_07.wav",
            "pcm_s16le",
            8_000,
            1,
            2.79,
            "symphonia",
        ),
        (
            "audio/derived_speech.opus",
            "opus",
            48_000,
            1,
            11.0,
            "ffmpeg",
        ),
    ];
    for (file, codec, rate, channels, secs, decoder) in cases {
        let a = audio(file);
        assert_eq!(a.info.codec, codec, "{file}");
        assert_eq!(
            (a.info.sample_rate, a.info.channels),
            (rate, channels),
            "{file}"
        );
        assert!(
            (a.info.duration_secs - secs).abs() < 0.1,
            "{file}: {} s",
            a.info.duration_secs
        );
        assert!(
            (a.duration_secs() - a.info.duration_secs).abs() < 0.05,
            "{file}: resampled length"
        );
        assert_eq!(a.info.decoded_by, decoder, "{file}");
        assert!(!a.info.truncated, "{file}");
        let peak = a.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
        assert!(peak > 0.05 && peak <= 1.01, "{file}: peak {peak}");
    }
}

/// Our FFT resampler against ffmpeg's on the same 48 kHz file: the same 16 kHz signal.
#[test]
fn resampled_audio_matches_ffmpeg() {
    let ours = audio("audio/speech_04.flac").samples;
    let theirs = ffmpeg_mono_16k("audio/speech_04.flac");
    assert!(
        (ours.len() as i64 - theirs.len() as i64).abs() < 160,
        "{} vs {}",
        ours.len(),
        theirs.len()
    );
    let r = correlation(&ours, &theirs);
    assert!(r > 0.99, "correlation with ffmpeg's resampling {r}");
}

#[test]
fn opus_decodes_to_the_same_speech_as_its_source() {
    let wav = audio("audio/speech_01.wav").samples;
    let opus = audio("audio/derived_speech.opus").samples;
    let r = correlation(&wav, &opus);
    assert!(r > 0.8, "opus vs wav correlation {r}");
}

#[test]
fn stereo_is_downmixed_like_ffmpeg_does() {
    let a = audio("audio/speech_02.wav");
    assert_eq!(a.info.channels, 2);
    assert!((a.info.duration_secs - 5.0).abs() < 0.01);
    let r = correlation(&a.samples, &ffmpeg_mono_16k("audio/speech_02.wav"));
    assert!(r > 0.999, "downmix correlation {r}");
}
