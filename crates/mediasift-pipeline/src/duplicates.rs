//! Near-duplicate image groups: content hashes whose perceptual hashes are within a Hamming
//! distance, joined transitively (union-find), plus exact duplicates (one content, many paths).

use std::collections::BTreeMap;

use crate::analyzer::hamming;

/// One group of near-identical images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateGroup {
    /// (content hash, pHash, paths holding that content), sorted by content hash.
    pub members: Vec<(String, u64, Vec<String>)>,
    /// Largest distance of a link inside the group.
    pub max_distance: u32,
}

/// Groups entries by pHash distance ≤ `max_distance`. Groups of one content with a single path
/// are not duplicates and are left out. O(n²) comparisons, fine to ~100k images; a BK-tree or
/// multi-index hashing is the next step for larger archives.
pub fn group(entries: Vec<(String, u64, Vec<String>)>, max_distance: u32) -> Vec<DuplicateGroup> {
    let n = entries.len();
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    let mut edges = Vec::new();
    for i in 0..n {
        for j in i + 1..n {
            let d = hamming(entries[i].1, entries[j].1);
            if d <= max_distance {
                edges.push((i, d));
                let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                parent[b] = a;
            }
        }
    }
    let mut groups: BTreeMap<usize, DuplicateGroup> = BTreeMap::new();
    for (i, entry) in entries.into_iter().enumerate() {
        let root = find(&mut parent, i);
        groups
            .entry(root)
            .or_insert_with(|| DuplicateGroup {
                members: Vec::new(),
                max_distance: 0,
            })
            .members
            .push(entry);
    }
    for (i, d) in edges {
        let root = find(&mut parent, i);
        if let Some(g) = groups.get_mut(&root) {
            g.max_distance = g.max_distance.max(d);
        }
    }
    groups
        .into_values()
        .filter(|g| g.members.len() > 1 || g.members.iter().any(|m| m.2.len() > 1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_hashes_group_and_far_ones_do_not() {
        let e = |h: &str, p: u64, paths: &[&str]| {
            (
                h.to_string(),
                p,
                paths.iter().map(|s| s.to_string()).collect(),
            )
        };
        let groups = group(
            vec![
                e("a", 0b0000, &["x.jpg"]),
                e("b", 0b0011, &["y.jpg"]),
                e("c", u64::MAX, &["z.jpg"]),
                e("d", 0xF0F0_F0F0_0000_0000, &["d1.png", "d2.png"]),
            ],
            2,
        );
        assert_eq!(groups.len(), 2);
        let hashes: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.members.iter().map(|m| m.0.as_str()).collect())
            .collect();
        assert!(hashes.contains(&vec!["a", "b"]));
        assert!(hashes.contains(&vec!["d"]));
    }
}
