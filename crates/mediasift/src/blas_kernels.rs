//! Runs OpenBLAS with kernels for this CPU when it took the CPU for an older one (see
//! `mediasift_models::blas_core`): the process re-executes itself once with
//! `OPENBLAS_CORETYPE` set, as OpenBLAS reads it only when the library loads.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// Set on the re-executed process: the kernel set OpenBLAS had chosen.
const DETECTED: &str = "MEDIASIFT_OPENBLAS_DETECTED";

/// Re-executes this process with better OpenBLAS kernels, where OpenBLAS chose older ones and
/// the user did not choose any (`OPENBLAS_CORETYPE`). Returns when nothing is to be done or the
/// re-execution failed. Call first thing in `main`, before any thread starts.
pub fn reexec_if_misdetected() {
    if std::env::var_os("OPENBLAS_CORETYPE").is_some() {
        return;
    }
    let Some((chosen, better)) = mediasift_models::blas_core::openblas_core_override() else {
        return;
    };
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let err = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("OPENBLAS_CORETYPE", better)
        .env(DETECTED, &chosen)
        .exec();
    eprintln!(
        "warning: OpenBLAS runs its {chosen} kernels on this CPU; re-running with \
         OPENBLAS_CORETYPE={better} failed ({err}), so matrix products will be slow"
    );
}

/// Logs the kernel choice made by [`reexec_if_misdetected`] (once logging is set up).
pub fn log_choice() {
    if let (Ok(chosen), Ok(used)) = (std::env::var(DETECTED), std::env::var("OPENBLAS_CORETYPE")) {
        tracing::info!(
            chosen = %chosen,
            used = %used,
            "OpenBLAS took this CPU for an older one; running its kernels for this CPU instead"
        );
    }
}
