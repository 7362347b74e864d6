use crate::common::{mediasift, ok};

#[test]
fn config_show_prints_defaults_and_layers_files_and_environment() {
    let defaults = ok(&mediasift(&["config", "show"], &[]));
    assert!(defaults.contains("max_pixels = 40000000"), "{defaults}");

    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("c.toml");
    std::fs::write(
        &file,
        "[intake]\nmax_pixels = 1000\nmax_file_bytes = 5000\n",
    )
    .unwrap();
    let layered = ok(&mediasift(
        &["config", "show", "--config", file.to_str().unwrap()],
        &[("MEDIASIFT__INTAKE__MAX_PIXELS", "1234")],
    ));
    assert!(
        layered.contains("max_pixels = 1234"),
        "environment wins over the file:\n{layered}"
    );
    assert!(
        layered.contains("max_file_bytes = 5000"),
        "the file wins over defaults:\n{layered}"
    );
}

#[test]
fn unknown_keys_and_invalid_values_are_start_up_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("c.toml");
    std::fs::write(&file, "[intake]\nmax_pixles = 1000\n").unwrap();
    let out = mediasift(&["config", "show", "--config", file.to_str().unwrap()], &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_pixles"));

    let out = mediasift(
        &["config", "show"],
        &[("MEDIASIFT__VIDEO__FRAME_INTERVAL_SECS", "0")],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("video.frame_interval_secs"));
}
