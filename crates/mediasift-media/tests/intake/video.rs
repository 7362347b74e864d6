use mediasift_media::{Decoded, DecodedVideo};

use crate::common::decode;

fn video(rel: &str) -> DecodedVideo {
    match decode(rel).unwrap_or_else(|e| panic!("{rel}: {e}")).decoded {
        Decoded::Video(v) => v,
        other => panic!("{rel} decoded as {:?}", other.kind()),
    }
}

#[test]
fn mp4_gives_timed_frames_and_its_audio_track() {
    let v = video("video/video_01.mp4");
    assert_eq!((v.info.width, v.info.height), (640, 360));
    assert_eq!(v.info.video_codec, "h264");
    assert!(!v.info.truncated);
    // 5 s sampled every 2 s: frames at 0, 2 and 4 s (plus any scene change).
    let times: Vec<f64> = v.frames.iter().map(|f| f.time_secs).collect();
    for t in [0.0, 2.0, 4.0] {
        assert!(
            times.iter().any(|x| (x - t).abs() < 0.1),
            "no frame near {t} s: {times:?}"
        );
    }
    assert!(
        times.windows(2).all(|w| w[0] < w[1]),
        "timestamps ascend: {times:?}"
    );
    assert_eq!(v.frames[0].rgb.dimensions(), (640, 360));
    let audio = v.audio.expect("the AAC track decodes");
    assert!(
        (audio.duration_secs() - 5.0).abs() < 0.1,
        "{}",
        audio.duration_secs()
    );
    assert_eq!(audio.info.codec, "aac");
}

#[test]
fn webm_with_vp9_and_opus_decodes() {
    let v = video("video/video_02.webm");
    assert_eq!((v.info.width, v.info.height), (854, 480));
    assert_eq!(v.info.video_codec, "vp9");
    let audio = v.audio.expect("the Opus track decodes");
    assert_eq!(audio.info.codec, "opus");
    assert!((audio.duration_secs() - 2.0).abs() < 0.1);
    assert!(!v.frames.is_empty());
}
