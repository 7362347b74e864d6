//! Finding the files of a run: recursive, never following a symlink out of its root, skipping
//! hidden entries unless asked and never descending into the run's own data directory.

use std::path::PathBuf;

use walkdir::WalkDir;

/// How to walk the inputs.
#[derive(Debug, Clone, Default)]
pub struct WalkOptions {
    pub include_hidden: bool,
    /// Directories never entered (the data directory).
    pub exclude: Vec<PathBuf>,
}

/// Walks each input (file or directory), calling `found` for each regular file. Returns the
/// number of entries skipped because they were unreadable or left their root.
pub fn walk(
    inputs: &[PathBuf],
    opts: &WalkOptions,
    mut found: impl FnMut(PathBuf) -> bool,
) -> usize {
    let exclude: Vec<PathBuf> = opts
        .exclude
        .iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect();
    let mut skipped = 0;
    for input in inputs {
        let Ok(root) = input.canonicalize() else {
            tracing::warn!(path = %input.display(), "Input does not exist; skipping it");
            skipped += 1;
            continue;
        };
        let walker = WalkDir::new(&root)
            .follow_links(false)
            .sort_by_file_name()
            .into_iter();
        let entries = walker.filter_entry(|e| {
            let hidden =
                e.depth() > 0 && e.file_name().to_str().is_some_and(|n| n.starts_with('.'));
            let excluded = e.file_type().is_dir() && exclude.iter().any(|x| x == e.path());
            (!hidden || opts.include_hidden) && !excluded
        });
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot read directory entry; skipping it");
                    skipped += 1;
                    continue;
                }
            };
            let ft = entry.file_type();
            let path = if ft.is_file() {
                entry.into_path()
            } else if ft.is_symlink() {
                // A symlinked file counts only when its target stays inside the root.
                match entry.path().canonicalize() {
                    Ok(target) if target.starts_with(&root) && target.is_file() => {
                        entry.into_path()
                    }
                    _ => {
                        tracing::debug!(path = %entry.path().display(), "Symlink leaves the root or dangles; skipping it");
                        skipped += 1;
                        continue;
                    }
                }
            } else {
                continue;
            };
            if !found(path) {
                return skipped;
            }
        }
    }
    skipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_files_symlinks_out_of_root_and_data_dir_are_skipped() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.txt"), "x").unwrap();
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("sub")).unwrap();
        std::fs::create_dir_all(r.join("data")).unwrap();
        std::fs::write(r.join("a.txt"), "a").unwrap();
        std::fs::write(r.join("sub/b.txt"), "b").unwrap();
        std::fs::write(r.join(".hidden.txt"), "h").unwrap();
        std::fs::write(r.join("data/db"), "d").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret.txt"), r.join("escape.txt"))
            .unwrap();
        std::os::unix::fs::symlink(r.join("a.txt"), r.join("inside.txt")).unwrap();

        let collect = |opts: &WalkOptions| {
            let mut names = Vec::new();
            walk(&[r.to_path_buf()], opts, |f| {
                names.push(
                    f.strip_prefix(r.canonicalize().unwrap())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                );
                true
            });
            names
        };
        let opts = WalkOptions {
            include_hidden: false,
            exclude: vec![r.join("data")],
        };
        assert_eq!(collect(&opts), vec!["a.txt", "inside.txt", "sub/b.txt"]);
        let opts = WalkOptions {
            include_hidden: true,
            exclude: vec![r.join("data")],
        };
        assert_eq!(
            collect(&opts),
            vec![".hidden.txt", "a.txt", "inside.txt", "sub/b.txt"]
        );
    }
}
