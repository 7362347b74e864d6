//! Reading results: one record, the failures, the duplicate groups.

use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use mediasift_pipeline::group_duplicates;

use crate::cli::GlobalArgs;
use crate::context;

pub async fn show(g: &GlobalArgs, key: &str) -> anyhow::Result<()> {
    let cfg = context::load_config(g)?;
    let store = context::open_existing(&cfg).await?;
    // Paths are recorded absolute; accept a relative one too.
    let mut records = store.find(key).await?;
    if records.is_empty()
        && let Ok(abs) = std::path::Path::new(key).canonicalize()
    {
        records = store.find(&abs.to_string_lossy()).await?;
    }
    if records.is_empty() {
        anyhow::bail!("no record for `{key}`");
    }
    for r in records {
        println!("{}", serde_json::to_string_pretty(&r)?);
    }
    Ok(())
}

pub async fn failures(g: &GlobalArgs) -> anyhow::Result<()> {
    let cfg = context::load_config(g)?;
    let store = context::open_existing(&cfg).await?;
    let failures = store.failures().await?;
    if failures.is_empty() {
        println!("no failures");
        return Ok(());
    }
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(["path", "kind", "error", "reason"]);
    for f in &failures {
        let (kind, msg) = f
            .error
            .as_ref()
            .map(|e| (e.kind.as_str(), e.message.as_str()))
            .unwrap_or(("", ""));
        t.add_row([f.path.as_str(), f.kind.as_str(), kind, msg]);
    }
    println!("{t}\n{} failed files", failures.len());
    Ok(())
}

pub async fn duplicates(g: &GlobalArgs, max_distance: Option<u32>) -> anyhow::Result<()> {
    let cfg = context::load_config(g)?;
    let store = context::open_existing(&cfg).await?;
    let max = max_distance.unwrap_or(cfg.duplicates().max_hamming_distance);
    let groups = group_duplicates(store.perceptual_hashes().await?, max);
    if groups.is_empty() {
        println!("no duplicate images within {max} bits");
        return Ok(());
    }
    for (i, group) in groups.iter().enumerate() {
        println!(
            "group {} ({} images, pHash distance ≤ {}):",
            i + 1,
            group.members.iter().map(|m| m.2.len()).sum::<usize>(),
            group.max_distance
        );
        for (hash, phash, paths) in &group.members {
            for p in paths {
                println!("  {phash:016x}  {}  {p}", &hash[..12.min(hash.len())]);
            }
        }
    }
    Ok(())
}
