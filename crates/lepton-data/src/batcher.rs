//! Mini-batches prepared on a background thread, so the trainer never waits on data.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use rand::seq::SliceRandom;

use crate::augment::augment;
use crate::dataset::{Dataset, Targets};
use crate::error::Result;
use crate::spec::AugmentSpec;
use crate::split::rng;

/// One batch, ready for the model.
#[derive(Debug)]
pub struct Batch {
    /// `f32 [B, ...sample_shape]`.
    pub x: Tensor,
    /// `u32 [B]` class indices or `f32 [B]` regression targets.
    pub y: Tensor,
    /// `f32 [B]` loss weights when class re-weighting is on.
    pub weights: Option<Tensor>,
    /// Which samples of the dataset are in the batch.
    pub indices: Vec<usize>,
}

/// How batches are drawn.
#[derive(Debug, Clone)]
pub struct BatcherConfig {
    pub batch_size: usize,
    /// Shuffle with `(seed, epoch)`. Default true.
    pub shuffle: bool,
    pub seed: u64,
    pub epoch: u64,
    /// Skip this many batches (resuming mid-epoch).
    pub start_batch: usize,
    /// Augmentation with its per-channel fill value.
    pub augment: Option<(AugmentSpec, Vec<f32>)>,
    /// Drop the last incomplete batch. Default false.
    pub drop_last: bool,
    /// Batches prepared ahead. Default 3.
    pub prefetch: usize,
}

impl BatcherConfig {
    pub fn new(batch_size: usize) -> Self {
        Self {
            batch_size,
            shuffle: true,
            seed: 0,
            epoch: 0,
            start_batch: 0,
            augment: None,
            drop_last: false,
            prefetch: 3,
        }
    }
}

/// The sample order of one epoch: a permutation from `(seed, epoch)` alone.
pub fn epoch_order(n: usize, shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        order.shuffle(&mut rng(seed, 1 + epoch));
    }
    order
}

/// Number of batches in an epoch.
pub fn batches_per_epoch(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last {
        n / batch_size
    } else {
        n.div_ceil(batch_size)
    }
}

/// An iterator of batches filled by a background thread.
pub struct Batcher {
    rx: Receiver<Result<Batch>>,
    handle: Option<JoinHandle<()>>,
}

impl Batcher {
    pub fn new(data: Arc<Dataset>, cfg: BatcherConfig) -> Self {
        let (tx, rx) = sync_channel(cfg.prefetch.max(1));
        let handle = std::thread::Builder::new()
            .name("lepton-batcher".into())
            .spawn(move || {
                let order = epoch_order(data.len(), cfg.shuffle, cfg.seed, cfg.epoch);
                let total = batches_per_epoch(data.len(), cfg.batch_size, cfg.drop_last);
                for b in cfg.start_batch..total {
                    let idx =
                        &order[b * cfg.batch_size..((b + 1) * cfg.batch_size).min(order.len())];
                    if tx.send(make_batch(&data, idx, &cfg)).is_err() {
                        return; // the consumer hung up
                    }
                }
            })
            .expect("spawning the batcher thread");
        Self {
            rx,
            handle: Some(handle),
        }
    }
}

fn make_batch(data: &Dataset, idx: &[usize], cfg: &BatcherConfig) -> Result<Batch> {
    let n = data.sample_len();
    let mut x = Vec::with_capacity(idx.len() * n);
    for &i in idx {
        x.extend_from_slice(data.sample(i));
    }
    if let Some((spec, fill)) = &cfg.augment {
        if data.sample_shape.len() == 3 {
            let s = &data.sample_shape;
            for (k, &i) in idx.iter().enumerate() {
                augment(
                    spec,
                    &mut x[k * n..(k + 1) * n],
                    [s[0], s[1], s[2]],
                    fill,
                    cfg.seed,
                    cfg.epoch,
                    i as u64,
                );
            }
        }
    }
    let mut shape = vec![idx.len()];
    shape.extend_from_slice(&data.sample_shape);
    let x = Tensor::from_vec(x, shape, &Device::Cpu)?;
    let y = match &data.targets {
        Targets::Classes { labels, .. } => Tensor::from_vec(
            idx.iter().map(|&i| labels[i]).collect::<Vec<_>>(),
            idx.len(),
            &Device::Cpu,
        )?,
        Targets::Regression { values } => Tensor::from_vec(
            idx.iter().map(|&i| values[i]).collect::<Vec<_>>(),
            idx.len(),
            &Device::Cpu,
        )?,
    };
    let weights = match &data.weights {
        Some(w) => Some(Tensor::from_vec(
            idx.iter().map(|&i| w[i]).collect::<Vec<_>>(),
            idx.len(),
            &Device::Cpu,
        )?),
        None => None,
    };
    Ok(Batch {
        x,
        y,
        weights,
        indices: idx.to_vec(),
    })
}

impl Iterator for Batcher {
    type Item = Result<Batch>;
    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        // Hang up first so the producer stops at its next send, then wait for it.
        let (_, dead) = sync_channel(0);
        drop(std::mem::replace(&mut self.rx, dead));
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
