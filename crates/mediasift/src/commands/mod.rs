mod analyze;
mod bench;
mod bench_audio;
mod bench_clip;
mod bench_dist;
mod bench_peer;
mod config;
mod distributed;
mod export;
mod inspect;
mod models;

use crate::cli::{BenchCommand, Cli, Command, ConfigCommand, ModelsCommand};

pub async fn dispatch(cli: Cli) -> anyhow::Result<()> {
    let g = &cli.global;
    match cli.command {
        Command::Analyze(args) => analyze::run(g, args).await,
        Command::Export(args) => export::run(g, args).await,
        Command::Show { path_or_hash } => inspect::show(g, &path_or_hash).await,
        Command::Failures => inspect::failures(g).await,
        Command::Duplicates { max_distance } => inspect::duplicates(g, max_distance).await,
        Command::Config {
            command: ConfigCommand::Show,
        } => config::show(g),
        Command::Bench {
            command: BenchCommand::Audio(args),
        } => bench_audio::audio(g, args),
        Command::Bench {
            command: BenchCommand::Vision(args),
        } => bench::vision(g, args).await,
        Command::Bench {
            command: BenchCommand::Queue(args),
        } => bench_dist::queue(g, args).await,
        Command::Bench {
            command: BenchCommand::Distributed(args),
        } => bench_dist::distributed(g, args).await,
        Command::Models {
            command: ModelsCommand::List,
        } => models::list(g),
        Command::Models {
            command: ModelsCommand::ImportCt2 { dir, id },
        } => models::import_ct2(g, &dir, &id),
        Command::Models {
            command: ModelsCommand::Fetch,
        } => models::fetch(g),
        command => distributed::run(g, command).await,
    }
}
