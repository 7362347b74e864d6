//! `mediasift`: analyse media archives into searchable, moderated records. This binary only
//! parses arguments, calls the library crates and formats their results.

mod alloc;
mod blas_kernels;
mod cli;
mod commands;
mod context;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    alloc::keep_freed_memory();
    blas_kernels::reexec_if_misdetected();
    let cli = cli::Cli::parse();
    context::init_logging(&cli.global);
    blas_kernels::log_choice();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(commands::dispatch(cli));
    // Abandoned decoder threads (timeouts) must not keep the process alive.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
