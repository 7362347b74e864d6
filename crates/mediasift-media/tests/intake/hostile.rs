//! Every hostile fixture gets the reaction its MANIFEST row asks of a robust reader.

use mediasift_core::{ErrorKind, MediaKind};

use crate::common::decode;

enum Expect {
    /// Fails with this kind and a message containing this text.
    Fails(ErrorKind, &'static str),
    /// Analyzed as its true kind; `truncated` and `mismatch` as flagged.
    Ok {
        kind: MediaKind,
        truncated: bool,
        mismatch: bool,
    },
}

#[test]
fn hostile_files_fail_with_their_reason_or_decode_as_what_they_are() {
    use Expect::*;
    let cases = [
        (
            "bad/bad_01.jpg",
            Fails(ErrorKind::Truncated, "truncated JPEG"),
        ),
        (
            "bad/bad_02.png",
            Fails(ErrorKind::Truncated, "truncated PNG"),
        ),
        ("bad/bad_03.png", Fails(ErrorKind::Corrupt, "corrupt PNG")),
        (
            "bad/bad_04.gif",
            Fails(ErrorKind::TooLarge, "exceeds max_pixels 40000000"),
        ),
        ("bad/bad_05.tif", Fails(ErrorKind::TooLarge, "TIFF")),
        (
            "bad/bad_06.png",
            Fails(
                ErrorKind::TooLarge,
                "image too large: 100000x100000 exceeds max_pixels 40000000",
            ),
        ),
        ("bad/bad_07.jpg", Fails(ErrorKind::Empty, "empty file")),
        (
            "bad/bad_08.jpg",
            Ok {
                kind: MediaKind::Text,
                truncated: false,
                mismatch: true,
            },
        ),
        (
            "bad/bad_09.jpg",
            Ok {
                kind: MediaKind::Image,
                truncated: false,
                mismatch: true,
            },
        ),
        (
            "bad/bad_10.mp4",
            Fails(ErrorKind::NotMedia, "not a media file: detected HTML"),
        ),
        (
            "bad/bad_11.jpg",
            Fails(
                ErrorKind::NotMedia,
                "not a media file: detected ELF executable",
            ),
        ),
        (
            "bad/bad_12.wav",
            Ok {
                kind: MediaKind::Audio,
                truncated: true,
                mismatch: false,
            },
        ),
        (
            "bad/bad_13.wav",
            Ok {
                kind: MediaKind::Audio,
                truncated: true,
                mismatch: false,
            },
        ),
        (
            "bad/bad_14.mp3",
            Ok {
                kind: MediaKind::Audio,
                truncated: true,
                mismatch: false,
            },
        ),
        (
            "bad/bad_15.mp4",
            Ok {
                kind: MediaKind::Video,
                truncated: true,
                mismatch: false,
            },
        ),
        (
            "bad/derived_wav_named.mp3",
            Ok {
                kind: MediaKind::Audio,
                truncated: false,
                mismatch: true,
            },
        ),
    ];
    for (file, expect) in cases {
        let result = decode(file);
        match (expect, result) {
            (Fails(kind, text), Err(e)) => {
                assert_eq!(e.kind, kind, "{file}: {e}");
                assert!(
                    e.message.contains(text),
                    "{file}: message `{}` lacks `{text}`",
                    e.message
                );
                assert!(
                    e.path.ends_with(file),
                    "{file}: error names {}",
                    e.path.display()
                );
            }
            (Fails(kind, _), Ok(i)) => panic!("{file}: expected {kind}, decoded as {}", i.kind),
            (
                Ok {
                    kind,
                    truncated,
                    mismatch,
                },
                Ok(i),
            ) => {
                assert_eq!(i.kind, kind, "{file}");
                assert_eq!(i.decoded.truncated(), truncated, "{file}: truncated flag");
                assert_eq!(
                    i.extension_mismatch.is_some(),
                    mismatch,
                    "{file}: extension mismatch"
                );
            }
            (Ok { .. }, Err(e)) => panic!("{file}: expected to decode, failed: {e}"),
        }
    }
}

#[test]
fn truncated_audio_keeps_the_part_that_is_present() {
    use mediasift_media::Decoded;
    let durations = [
        ("bad/bad_12.wav", 1.49),
        ("bad/bad_13.wav", 1.0),
        ("bad/bad_14.mp3", 4.1),
    ];
    for (file, secs) in durations {
        let Decoded::Audio(a) = decode(file).expect("decodes").decoded else {
            panic!("{file} is audio")
        };
        assert!(
            (a.info.duration_secs - secs).abs() < 0.1,
            "{file}: {} s",
            a.info.duration_secs
        );
    }
    // The lying header claims ~37 hours; nothing was sized from that claim.
    let Decoded::Audio(a) = decode("bad/bad_13.wav").expect("decodes").decoded else {
        panic!()
    };
    assert!(a.info.declared_duration_secs.is_some_and(|d| d > 100_000.0));
    assert!(a.samples.len() < 20_000);
}

#[test]
fn an_expired_deadline_stops_ffmpeg_work() {
    use std::time::Instant;
    let err = mediasift_media::decode_file(
        &crate::common::fixture("video/video_01.mp4"),
        crate::common::config(),
        crate::common::tools(),
        Instant::now(),
    )
    .expect_err("no time left");
    assert_eq!(err.kind, ErrorKind::Timeout, "{err}");
}
