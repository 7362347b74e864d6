use std::path::Path;

use serde_json::Value;

use crate::common::{analyze, count_files, export, fixtures, mediasift, ok};

/// How a robust reader reacts to each hostile fixture (tests/fixtures/media/MANIFEST.tsv).
fn expected_bad(path: &str) -> (&'static str, Option<&'static str>, &'static [&'static str]) {
    // (status, error kind, flags)
    match path {
        "bad/bad_01.jpg" | "bad/bad_02.png" => ("failed", Some("truncated"), &[]),
        "bad/bad_03.png" => ("failed", Some("corrupt"), &[]),
        "bad/bad_04.gif" | "bad/bad_05.tif" | "bad/bad_06.png" => {
            ("failed", Some("too_large"), &[])
        }
        "bad/bad_07.jpg" => ("failed", Some("empty"), &[]),
        "bad/bad_10.mp4" | "bad/bad_11.jpg" => ("failed", Some("not_media"), &[]),
        "bad/bad_08.jpg" | "bad/bad_09.jpg" | "bad/derived_wav_named.mp3" => {
            ("ok", None, &["extension_mismatch"])
        }
        "bad/bad_12.wav" | "bad/bad_13.wav" | "bad/bad_14.mp3" | "bad/bad_15.mp4" => {
            ("ok", None, &["truncated"])
        }
        other => panic!("no expectation for {other}"),
    }
}

#[test]
fn analyze_records_every_fixture_as_the_manifest_expects() {
    let root = fixtures();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let m = analyze(&root, &data, &["--no-progress"], &[]);
    let records = export(&data, &root);
    assert_eq!(records.len(), count_files(&root), "one record per file");
    // derived_wav_named.mp3 is a byte copy of speech_07.wav: whichever comes second may reuse.
    assert_eq!(
        m.get("analyzed") + m.get("reused") + m.get("failed"),
        records.len() as u64
    );

    for (path, r) in &records {
        for field in [
            "path",
            "content_hash",
            "kind",
            "status",
            "error",
            "analyses",
            "flags",
        ] {
            assert!(r.get(field).is_some(), "{path}: missing {field}");
        }
        assert_eq!(
            r["content_hash"].as_str().map(str::len),
            Some(64),
            "{path}: BLAKE3 hex"
        );
        if path.starts_with("bad/") {
            let (status, error, flags) = expected_bad(path);
            assert_eq!(r["status"], status, "{path}: {r}");
            assert_eq!(r["error"]["kind"].as_str(), error, "{path}: {r}");
            if error.is_some() {
                assert!(
                    r["error"]["message"].as_str().is_some_and(|m| m.len() > 8),
                    "{path}: a reason"
                );
            }
            let got: Vec<&str> = r["flags"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
                .collect();
            assert_eq!(got, flags, "{path}");
        } else {
            assert_eq!(r["status"], "ok", "{path}: {r}");
            assert!(r["error"].is_null());
            assert_eq!(r["flags"], serde_json::json!([]), "{path}");
        }
    }

    // Kinds as the manifest gives them, and the analyses each kind must have.
    let manifest = std::fs::read_to_string(root.join("MANIFEST.tsv")).unwrap();
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (path, kind) = (cols[0], cols[1]);
        if kind == "bad" {
            continue;
        }
        let r = &records[path];
        assert_eq!(r["kind"], kind, "{path}");
        let a = &r["analyses"];
        assert!(a["metadata"].is_object(), "{path}: metadata");
        match kind {
            "image" => {
                assert_eq!(
                    a["phash"]["hash"].as_str().map(str::len),
                    Some(16),
                    "{path}: pHash"
                );
                assert_eq!(a["nsfw"]["model"]["id"], "open_nsfw", "{path}");
                let nsfw = a["nsfw"]["score"].as_f64().unwrap();
                assert!(
                    (0.0..0.1).contains(&nsfw),
                    "{path}: safe-for-work photo scored {nsfw}"
                );
                let tags = a["tags"].as_array().expect("ImageNet tags");
                assert_eq!(tags.len(), 5, "{path}");
                assert!(tags.iter().all(|t| {
                    t["label"].is_string()
                        && t["score"]
                            .as_f64()
                            .is_some_and(|s| (0.0..=1.0).contains(&s))
                }));
                let emb = &a["image_embedding"];
                assert_eq!(
                    (emb["dims"].as_u64(), emb["model"]["id"].as_str()),
                    (Some(1280), Some("mobilenet_v2")),
                    "{path}"
                );
                let npy =
                    std::fs::read(data.join("blobs").join(emb["key"].as_str().unwrap())).unwrap();
                assert_eq!(
                    npy.len() - 10 - u16::from_le_bytes([npy[8], npy[9]]) as usize,
                    1280 * 4,
                    "{path}"
                );
                // OCR runs (by default) only on what looks like a page, scan or screenshot.
                let is_scan = path.starts_with("text/ocr_");
                assert_eq!(a["ocr"].is_object(), is_scan, "{path}: OCR ran? {a}");
                if is_scan {
                    assert_eq!(a["text_embedding"]["source"], "ocr", "{path}");
                    assert_embedding(&data, path, a);
                }
                let key = a["thumbnail"]["key"].as_str().expect("thumbnail key");
                assert!(
                    data.join("blobs").join(key).is_file(),
                    "{path}: thumbnail blob {key}"
                );
            }
            "audio" => {
                assert!(
                    a["metadata"]["duration_secs"]
                        .as_f64()
                        .is_some_and(|d| d > 1.0),
                    "{path}"
                );
                assert!(
                    a["loudness"]["integrated_lufs"]
                        .as_f64()
                        .is_some_and(|l| (-60.0..0.0).contains(&l)),
                    "{path}: {a}"
                );
                // Every audio fixture is speech: a transcript with timed segments, in the
                // language the manifest names, embedded for search.
                let t = &a["transcript"];
                assert_eq!(t["model"]["id"], "whisper-base", "{path}: {t}");
                let lang = cols[3]
                    .strip_prefix('[')
                    .and_then(|x| x.get(..2))
                    .expect("manifest: expected text starts with [lang]");
                assert_eq!(t["language"], lang, "{path}: {t}");
                let segments = t["segments"].as_array().expect("segments");
                assert!(!segments.is_empty(), "{path}: {t}");
                for s in segments {
                    let (start, end) = (s["start"].as_f64().unwrap(), s["end"].as_f64().unwrap());
                    assert!(start < end, "{path}: {s}");
                    assert!(s["text"].as_str().is_some_and(|x| !x.is_empty()), "{path}");
                    // Word timestamps (on by default): the segment's text word by word, in
                    // order, inside the file.
                    let words = s["words"].as_array().expect("words");
                    let squeeze = |x: &str| x.split_whitespace().collect::<String>();
                    let joined: String = words.iter().filter_map(|w| w["word"].as_str()).collect();
                    assert_eq!(
                        squeeze(&joined),
                        squeeze(s["text"].as_str().unwrap()),
                        "{path}"
                    );
                    let duration = a["metadata"]["duration_secs"].as_f64().unwrap();
                    let mut previous = 0.0;
                    for w in words {
                        let (ws, we) = (w["start"].as_f64().unwrap(), w["end"].as_f64().unwrap());
                        assert!(previous <= ws && ws <= we && we <= duration, "{path}: {w}");
                        previous = ws;
                    }
                }
                assert!(t["text"].as_str().is_some_and(|x| x.len() > 5), "{path}");
                assert_eq!(a["text_embedding"]["source"], "transcript", "{path}");
                assert_embedding(&data, path, a);
            }
            "video" => {
                assert!(
                    a["metadata"]["frames_sampled"]
                        .as_u64()
                        .is_some_and(|n| n >= 1),
                    "{path}"
                );
                assert!(
                    a["phash"]["frames"]
                        .as_array()
                        .is_some_and(|f| !f.is_empty()),
                    "{path}"
                );
                assert!(a["loudness"].is_object(), "{path}: soundtrack loudness");
                // video_01's soundtrack is digital silence: no invented words.
                if path == "video/video_01.mp4" {
                    assert_eq!(a["transcript"]["text"], "", "{path}: {}", a["transcript"]);
                    assert!(a["text_embedding"].is_null(), "{path}");
                }
                assert_eq!(
                    a["tags"].as_array().map(Vec::len),
                    Some(5),
                    "{path}: video tags"
                );
                let timeline = a["frame_tags"]["frames"]
                    .as_array()
                    .expect("per-frame tags");
                assert_eq!(
                    timeline.len() as u64,
                    a["metadata"]["frames_sampled"].as_u64().unwrap(),
                    "{path}"
                );
                let frames = a["nsfw"]["frames"]
                    .as_array()
                    .expect("per-frame NSFW scores");
                assert_eq!(
                    frames.len() as u64,
                    a["metadata"]["frames_sampled"].as_u64().unwrap(),
                    "{path}"
                );
            }
            "text" => {
                assert!(
                    a["metadata"]["words"].as_u64().is_some_and(|w| w > 50),
                    "{path}"
                );
                assert_eq!(a["text_embedding"]["source"], "text", "{path}");
                assert_embedding(&data, path, a);
            }
            other => panic!("unexpected kind {other}"),
        }
    }
    let top = |p: &str| {
        records[p]["analyses"]["tags"][0]["label"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(top("images/photo_02.jpg"), "Egyptian cat");
    assert_eq!(top("images/photo_03.webp"), "espresso");
    let invoice = records["text/ocr_01.png"]["analyses"]["ocr"]["text"]
        .as_str()
        .unwrap();
    assert!(invoice.contains("Harbour Street Bakery"), "{invoice}");
    // The cockatoo video's soundtrack is digital silence.
    assert_eq!(
        records["video/video_01.mp4"]["analyses"]["loudness"]["silence_ratio"],
        1.0
    );
}

/// The text embedding's `.npy` blob exists and holds `chunks + 1` rows of `dims` float32.
fn assert_embedding(data: &Path, path: &str, a: &Value) {
    let e = &a["text_embedding"];
    assert_eq!(e["dims"], 384, "{path}: {e}");
    assert_eq!(e["model"]["id"], "all-MiniLM-L6-v2", "{path}");
    assert_eq!(
        e["model"]["sha256"].as_str().map(str::len),
        Some(64),
        "{path}"
    );
    let key = e["key"].as_str().unwrap();
    assert!(
        key.starts_with("embeddings/text_embedding/all-MiniLM-L6-v2/") && key.ends_with(".npy")
    );
    let bytes = std::fs::read(data.join("blobs").join(key)).unwrap();
    let chunks = e["chunks"].as_u64().unwrap() as usize;
    let header_len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + header_len]).unwrap();
    assert!(
        header.contains(&format!("'shape': ({}, 384)", chunks + 1)),
        "{path}: {header}"
    );
    assert_eq!(
        bytes.len() - 10 - header_len,
        (chunks + 1) * 384 * 4,
        "{path}"
    );
}

#[test]
fn a_second_run_skips_everything_and_force_redoes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for f in [
        "images/photo_02.jpg",
        "audio/speech_07.wav",
        "text/doc_01.txt",
        "bad/bad_01.jpg",
    ] {
        std::fs::copy(
            fixtures().join(f),
            input.join(Path::new(f).file_name().unwrap()),
        )
        .unwrap();
    }
    let data = tmp.path().join("data");
    let first = analyze(&input, &data, &[], &[]);
    assert_eq!((first.get("analyzed"), first.get("failed")), (3, 1));
    let second = analyze(&input, &data, &[], &[]);
    assert_eq!(
        (
            second.get("skipped"),
            second.get("analyzed"),
            second.get("failed")
        ),
        (4, 0, 0)
    );
    let forced = analyze(&input, &data, &["--force"], &[]);
    assert_eq!(
        (
            forced.get("analyzed"),
            forced.get("failed"),
            forced.get("skipped")
        ),
        (3, 1, 0)
    );
    // A changed file is analyzed again; the others stay skipped.
    std::fs::copy(
        fixtures().join("images/photo_14.jpg"),
        input.join("photo_02.jpg"),
    )
    .unwrap();
    let changed = analyze(&input, &data, &[], &[]);
    assert_eq!((changed.get("analyzed"), changed.get("skipped")), (1, 3));
}

#[test]
fn the_same_content_under_another_name_is_reused_not_recomputed() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir(&a).unwrap();
    std::fs::create_dir(&b).unwrap();
    std::fs::copy(fixtures().join("images/photo_02.jpg"), a.join("cat.jpg")).unwrap();
    std::fs::copy(
        fixtures().join("images/photo_02.jpg"),
        b.join("copy-of-cat.png"),
    )
    .unwrap();
    let data = tmp.path().join("data");
    assert_eq!(analyze(&a, &data, &[], &[]).get("analyzed"), 1);
    let second = analyze(&b, &data, &[], &[]);
    assert_eq!((second.get("reused"), second.get("analyzed")), (1, 0));
    let records = export(&data, tmp.path());
    let (orig, copy) = (&records["a/cat.jpg"], &records["b/copy-of-cat.png"]);
    assert_eq!(orig["content_hash"], copy["content_hash"]);
    assert_eq!(orig["analyses"], copy["analyses"]);
    assert_eq!(copy["flags"], serde_json::json!(["extension_mismatch"]));
    assert_eq!(orig["flags"], serde_json::json!([]));
}

#[test]
fn the_decode_timeout_cuts_off_a_slow_decoder_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // A 3312x2550 CCITT-G4 scan takes far longer than a millisecond to decode and hash-index.
    std::fs::copy(fixtures().join("text/ocr_03.tif"), input.join("scan.tif")).unwrap();
    let data = tmp.path().join("data");
    let m = analyze(
        &input,
        &data,
        &[],
        &[("MEDIASIFT__INTAKE__DECODE_TIMEOUT_SECS", "0.001")],
    );
    assert_eq!(m.get("failed"), 1);
    let records = export(&data, &input);
    let r = &records["scan.tif"];
    assert_eq!(r["error"]["kind"], "timeout", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("decode_timeout_secs")
    );
}

#[test]
fn an_unusable_data_directory_is_a_fatal_error() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let data = file.join("data");
    let out = mediasift(
        &[
            "analyze",
            fixtures().join("text").to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("data directory"), "{err}");
}

#[test]
fn per_file_failures_do_not_change_the_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let out = mediasift(
        &[
            "analyze",
            fixtures().join("bad").to_str().unwrap(),
            "--data",
            tmp.path().join("d").to_str().unwrap(),
        ],
        &[],
    );
    let table = ok(&out);
    assert!(
        table.contains("too_large ×3"),
        "summary names the common reasons:\n{table}"
    );
}

#[test]
fn without_ffmpeg_only_video_fails_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    std::fs::create_dir(&input).unwrap();
    for f in [
        "video/video_01.mp4",
        "images/photo_02.jpg",
        "audio/speech_03.mp3",
        // An M4A declares itself audio-only and still decodes through symphonia.
        "audio/speech_05.m4a",
    ] {
        std::fs::copy(
            fixtures().join(f),
            input.join(Path::new(f).file_name().unwrap()),
        )
        .unwrap();
    }
    let data = tmp.path().join("data");
    let env = [
        ("MEDIASIFT__VIDEO__FFMPEG", "/nonexistent/ffmpeg"),
        ("MEDIASIFT__VIDEO__FFPROBE", "/nonexistent/ffprobe"),
    ];
    let m = analyze(&input, &data, &[], &env);
    assert_eq!((m.get("analyzed"), m.get("failed")), (3, 1));
    let records = export(&data, &input);
    assert_eq!(records["speech_05.m4a"]["kind"], "audio");
    let video = &records["video_01.mp4"];
    assert_eq!(video["error"]["kind"], "missing_tool", "{video}");
    // Once ffmpeg is there, the next run retries the video (a transient failure) and skips the rest.
    let again = analyze(&input, &data, &[], &[]);
    assert_eq!(
        (
            again.get("analyzed"),
            again.get("skipped"),
            again.get("failed")
        ),
        (1, 3, 0)
    );
    assert_eq!(export(&data, &input)["video_01.mp4"]["status"], "ok");
    assert!(
        video["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ffmpeg")
    );
}

/// Only CLIP among the models, from a random-weight checkpoint in a models folder of its own.
fn clip_only_env(models_dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "MEDIASIFT__MODELS__MODELS_DIR",
            models_dir.display().to_string(),
        ),
        ("MEDIASIFT__ANALYZERS__TAGS", "false".into()),
        ("MEDIASIFT__ANALYZERS__NSFW", "false".into()),
        ("MEDIASIFT__ANALYZERS__TRANSCRIPT", "false".into()),
        ("MEDIASIFT__ANALYZERS__TEXT_EMBEDDING", "false".into()),
        ("MEDIASIFT__OCR__MODE", "never".into()),
    ]
}

#[test]
fn clip_embeds_images_and_labels_them_zero_shot() {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    mediasift_models::clip::write_random_checkpoint(
        &models.join("clip-vit-base-patch32"),
        &["a", "photo", "of", "person", "animal", "food"],
    )
    .unwrap();
    let input = fixtures().join("images");
    let data = tmp.path().join("data");
    let env = clip_only_env(&models);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    analyze(&input, &data, &[], &env);
    let records = export(&data, &input);
    let images: Vec<&Value> = records.values().filter(|r| r["kind"] == "image").collect();
    assert!(images.len() >= 5);
    for r in images {
        let clip = &r["analyses"]["clip"];
        assert_eq!(clip["dims"], 32, "{r}");
        let labels = clip["labels"].as_array().unwrap();
        assert_eq!(labels.len(), 5);
        let total: f64 = labels.iter().map(|l| l["prob"].as_f64().unwrap()).sum();
        assert!(total > 0.0 && total <= 1.0001, "{labels:?}");
        let key = clip["key"].as_str().unwrap();
        assert!(key.starts_with("embeddings/clip/clip-vit-base-patch32/"));
        assert!(data.join("blobs").join(key).is_file(), "{key} stored");
        assert_eq!(clip["model"]["id"], "clip-vit-base-patch32");
    }
}

#[test]
fn without_clip_weights_the_rest_runs_and_says_so_once() {
    let tmp = tempfile::tempdir().unwrap();
    let input = fixtures().join("images");
    let data = tmp.path().join("data");
    let env = clip_only_env(&tmp.path().join("no-models"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let data_arg = data.to_str().unwrap();
    let out = mediasift(
        &["analyze", input.to_str().unwrap(), "--data", data_arg],
        &env,
    );
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("clip: model not installed").count(),
        1,
        "{stderr}"
    );
    let records = export(&data, &input);
    let image = records.values().find(|r| r["kind"] == "image").unwrap();
    assert!(image["analyses"]["phash"].is_object());
    assert!(image["analyses"].get("clip").is_none());
}
