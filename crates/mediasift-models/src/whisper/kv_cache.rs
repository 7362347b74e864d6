//! The decoder's self-attention keys and values, one growable buffer per sequence.
//!
//! Each step appends one position's projections to each sequence (no copy of what is cached;
//! `Tensor::cat` copied the whole cache every step). Sequences are shared copy-on-write, so
//! beam search's reordering (`select`) moves buffers instead of gathering them: only a
//! hypothesis that two children continue is copied, once, when the second one appends.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};

type Result<T> = candle_core::Result<T>;

/// One sequence's keys and values, position-major: position t's D = H·dh values at t·D.
#[derive(Debug, Clone, Default)]
pub struct Sequence {
    pub keys: Vec<f32>,
    pub values: Vec<f32>,
}

/// One decoder layer's cache for a batch of sequences.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    sequences: Vec<Arc<Sequence>>,
    /// Values per position (the model width D).
    width: usize,
}

impl KvCache {
    /// Positions cached (the same for every sequence).
    pub fn len(&self) -> usize {
        match self.sequences.first() {
            Some(s) if self.width > 0 => s.keys.len() / self.width,
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn sequence(&self, row: usize) -> &Sequence {
        &self.sequences[row]
    }

    pub fn rows(&self) -> usize {
        self.sequences.len()
    }

    /// Appends projected keys and values `k`, `v` [B, T, D] (B = the cached sequences, or any B
    /// when the cache is empty).
    pub fn append(&mut self, k: &Tensor, v: &Tensor) -> Result<()> {
        let (b, t, d) = k.dims3()?;
        if v.dims3()? != (b, t, d) {
            candle_core::bail!("keys {:?} and values {:?} differ", k.dims(), v.dims());
        }
        if self.sequences.is_empty() {
            self.sequences = (0..b).map(|_| Arc::new(Sequence::default())).collect();
            self.width = d;
        }
        if b != self.sequences.len() || d != self.width {
            candle_core::bail!(
                "appending [{b}, {t}, {d}] to a cache of {} sequences of width {}",
                self.sequences.len(),
                self.width
            );
        }
        let ks: Vec<f32> = k.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let vs: Vec<f32> = v.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let step = t * d;
        for (r, seq) in self.sequences.iter_mut().enumerate() {
            let seq = Arc::make_mut(seq);
            seq.keys.extend_from_slice(&ks[r * step..(r + 1) * step]);
            seq.values.extend_from_slice(&vs[r * step..(r + 1) * step]);
        }
        Ok(())
    }

    /// The cache of sequences `parents[i]` in order (beam search reordering; shares buffers).
    pub fn select(&self, parents: &[usize]) -> Result<KvCache> {
        let sequences = parents
            .iter()
            .map(|&p| {
                self.sequences
                    .get(p)
                    .cloned()
                    .ok_or_else(|| candle_core::Error::Msg(format!("no cached sequence {p}")))
            })
            .collect::<Result<_>>()?;
        Ok(KvCache {
            sequences,
            width: self.width,
        })
    }

    /// Keys and values as tensors [B, T, D] (for the general attention path).
    pub fn tensors(&self, device: &Device) -> Result<(Tensor, Tensor)> {
        let (b, t, d) = (self.sequences.len(), self.len(), self.width);
        let keys: Vec<f32> = self
            .sequences
            .iter()
            .flat_map(|s| s.keys.iter().copied())
            .collect();
        let values: Vec<f32> = self
            .sequences
            .iter()
            .flat_map(|s| s.values.iter().copied())
            .collect();
        Ok((
            Tensor::from_vec(keys, (b, t, d), device)?,
            Tensor::from_vec(values, (b, t, d), device)?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_and_reorders_without_disturbing_other_sequences() -> Result<()> {
        let dev = Device::Cpu;
        let mut c = KvCache::default();
        let k = Tensor::arange(0f32, 12.0, &dev)?.reshape((2, 2, 3))?;
        c.append(&k, &(&k * 10.0)?)?;
        assert_eq!(c.len(), 2);
        // Both children continue sequence 1; sequence 0 ends.
        let mut d = c.select(&[1, 1])?;
        let step = Tensor::new(&[[[100f32, 101., 102.]], [[200., 201., 202.]]], &dev)?;
        d.append(&step, &step)?;
        assert_eq!(d.len(), 3);
        assert_eq!(
            d.sequence(0).keys,
            [6., 7., 8., 9., 10., 11., 100., 101., 102.]
        );
        assert_eq!(
            d.sequence(1).keys,
            [6., 7., 8., 9., 10., 11., 200., 201., 202.]
        );
        // The original is untouched.
        assert_eq!(c.sequence(1).keys, [6., 7., 8., 9., 10., 11.]);
        let (kt, vt) = d.tensors(&dev)?;
        assert_eq!(kt.dims(), [2, 3, 3]);
        assert_eq!(vt.get(1)?.get(2)?.to_vec1::<f32>()?, [200., 201., 202.]);
        // Other widths or batch sizes are refused.
        let wide = Tensor::zeros((2, 1, 4), DType::F32, &dev)?;
        assert!(d.append(&wide, &wide).is_err());
        let three = Tensor::zeros((3, 1, 3), DType::F32, &dev)?;
        assert!(d.append(&three, &three).is_err());
        Ok(())
    }
}
