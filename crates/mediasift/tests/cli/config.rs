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

/// On a CPU that OpenBLAS does not know (Debian's 0.3.21 takes a 5th-generation Xeon for a
/// Prescott), the binary still runs OpenBLAS kernels with AVX2 or better.
#[test]
fn openblas_runs_kernels_with_avx2_or_better() {
    #[cfg(target_arch = "x86_64")]
    if !std::arch::is_x86_feature_detected!("avx2") {
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mediasift"))
        .args(["config", "show"])
        .env_remove("OPENBLAS_CORETYPE")
        .env("OPENBLAS_VERBOSE", "2")
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // OpenBLAS prints its choice when it loads: once, or twice when the binary re-ran itself.
    let core = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("Core: "))
        .unwrap_or_else(|| panic!("no kernel choice printed:\n{stderr}"));
    assert!(
        mediasift_models::blas_core::avx2_or_better(core),
        "OpenBLAS runs {core}:\n{stderr}"
    );
}
