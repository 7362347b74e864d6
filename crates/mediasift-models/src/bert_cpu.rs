//! BERT on the CPU in f32: its embeddings, then [`crate::transformer_cpu`]'s fused encoder.
//!
//! Padding tokens are not computed at all: a real token never attends to padding, so its state
//! is the same as with the mask; the states returned at padding positions are zero.

use crate::transformer_cpu::{self, Encoder, Norm};

pub(crate) struct CpuBert {
    /// [vocab, D]
    pub words: Vec<f32>,
    /// [max positions, D]
    pub positions: Vec<f32>,
    /// Token type 0's row, [D].
    pub token_type: Vec<f32>,
    pub embed_norm: Norm,
    pub encoder: Encoder,
}

impl CpuBert {
    pub fn dims(&self) -> usize {
        self.encoder.dims
    }

    /// Hidden states [B·T, D] of token ids [B, T] whose real tokens are marked in `keep`;
    /// zero at padding.
    pub fn forward(&self, ids: &[u32], keep: &[u32], (b, t): (usize, usize)) -> Vec<f32> {
        let d = self.dims();
        // Real tokens of each sentence, in order: their ids, positions and flat indices.
        let mut real_ids = Vec::with_capacity(ids.len());
        let mut positions = Vec::with_capacity(ids.len());
        let mut index = Vec::with_capacity(ids.len());
        let mut starts = Vec::with_capacity(b + 1);
        for s in 0..b {
            starts.push(index.len());
            for p in 0..t {
                if keep[s * t + p] != 0 {
                    real_ids.push(ids[s * t + p]);
                    positions.push(p);
                    index.push(s * t + p);
                }
            }
        }
        starts.push(index.len());
        let lens: Vec<usize> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        let states = transformer_cpu::groups(&lens, |(s0, s1), par| {
            let (from, to) = (starts[s0], starts[s1]);
            let mut x = self.embed(&real_ids[from..to], &positions[from..to]);
            self.encoder.run(&mut x, &lens[s0..s1], par);
            x
        });
        let mut out = vec![0f32; b * t * d];
        for (row, &at) in states.iter().flat_map(|g| g.chunks_exact(d)).zip(&index) {
            out[at * d..(at + 1) * d].copy_from_slice(row);
        }
        out
    }

    /// Word + position + token-type embeddings, normalised: [tokens, D].
    fn embed(&self, ids: &[u32], positions: &[usize]) -> Vec<f32> {
        let d = self.dims();
        let mut x = vec![0f32; ids.len() * d];
        for ((row, &id), &p) in x.chunks_exact_mut(d).zip(ids).zip(positions) {
            let word = &self.words[id as usize * d..][..d];
            let pos = &self.positions[p * d..][..d];
            for (((v, w), p), ty) in row.iter_mut().zip(word).zip(pos).zip(&self.token_type) {
                *v = w + ty + p;
            }
        }
        self.embed_norm.apply(&mut x);
        x
    }
}
