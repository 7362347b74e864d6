use std::path::PathBuf;
use std::sync::OnceLock;

use crate::common::{analyze, fixtures, mediasift, ok};

/// One analysis of the fixture folder shared by the read-only tests below.
fn data() -> &'static PathBuf {
    static DATA: OnceLock<PathBuf> = OnceLock::new();
    DATA.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let data = dir.join("data");
        // Transcripts play no part in these commands; the manifest test covers them.
        analyze(
            &fixtures(),
            &data,
            &[],
            &[("MEDIASIFT__ANALYZERS__TRANSCRIPT", "false")],
        );
        data
    })
}

fn run(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["--data", data().to_str().unwrap()]);
    ok(&mediasift(&all, &[]))
}

#[test]
fn duplicates_groups_near_identical_images_and_nothing_else() {
    let out = run(&["duplicates"]);
    let groups: Vec<&str> = out.split("group ").skip(1).collect();
    let group_of = |name: &str| -> Vec<String> {
        let found: Vec<&&str> = groups.iter().filter(|g| g.contains(name)).collect();
        assert_eq!(found.len(), 1, "{name} in exactly one group:\n{out}");
        let mut names: Vec<String> = found[0]
            .lines()
            .skip(1)
            .filter_map(|l| l.rsplit('/').next())
            .map(str::to_string)
            .collect();
        names.sort();
        names
    };
    // Two EXIF orientations of one photo, upright after decoding.
    assert_eq!(group_of("photo_10.jpg"), ["photo_10.jpg", "photo_11.jpg"]);
    // A lossless progressive re-encode of the cat.
    assert_eq!(
        group_of("photo_02.jpg"),
        ["derived_progressive.jpg", "photo_02.jpg"]
    );
    // Format conversions of the Hopper portrait (the alpha variant has a white band: not near).
    assert_eq!(
        group_of("photo_14.jpg"),
        [
            "derived_bmp24.bmp",
            "derived_palette.png",
            "derived_rgb48.png",
            "photo_14.jpg"
        ]
    );
    for unique in [
        "photo_03.webp",
        "photo_05.png",
        "photo_08.tif",
        "ocr_03.tif",
        "derived_alpha.png",
    ] {
        assert!(
            !out.contains(unique),
            "{unique} has no near-duplicate:\n{out}"
        );
    }
}

#[test]
fn failures_lists_each_failed_file_with_its_reason() {
    let out = run(&["failures"]);
    assert!(
        out.contains("bad_06.png")
            && out.contains("image too large: 100000x100000 exceeds max_pixels 40000000"),
        "{out}"
    );
    assert!(
        out.contains("bad_10.mp4") && out.contains("not a media file: detected HTML"),
        "{out}"
    );
    assert!(!out.contains("photo_02.jpg"));
}

#[test]
fn show_finds_a_record_by_path_and_by_hash_prefix() {
    let path = fixtures().join("audio/speech_01.wav");
    let by_path: serde_json::Value =
        serde_json::from_str(&run(&["show", path.to_str().unwrap()])).unwrap();
    assert_eq!(by_path["kind"], "audio");
    assert_eq!(by_path["analyses"]["metadata"]["sample_rate"], 16000);
    let hash = by_path["content_hash"].as_str().unwrap();
    let by_hash: serde_json::Value = serde_json::from_str(&run(&["show", &hash[..12]])).unwrap();
    assert_eq!(by_hash["path"], by_path["path"]);
    let missing = mediasift(
        &[
            "show",
            "nothing-like-this",
            "--data",
            data().to_str().unwrap(),
        ],
        &[],
    );
    assert!(!missing.status.success());
}
