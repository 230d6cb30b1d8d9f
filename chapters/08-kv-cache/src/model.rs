//! The week-2 model's forward pass: new tokens through every layer, each reading and filling its
//! cache. The model's layers and loading are in `src/model_weights.rs`.

use crate::{LayerCache, Model};
use mlx_rs::{error::Exception, Array};

impl Model {
    /// Runs `L` new tokens of each of `B` sequences, which continue what `cache` holds.
    ///
    /// - `tokens`: `[B, L]` integer ids; `cache`: one cache per layer (from
    ///   [`Model::new_cache`], or chapter 10's batched cache), where these tokens start.
    /// - Returns the logits `[B, L, V]`, float32; the cache then holds the new tokens too.
    /// - Fails when `cache` does not have one entry per layer.
    ///
    /// Book: week 2, chapter 8 (the KV cache), task 4.
    pub fn forward<C: LayerCache>(
        &self,
        tokens: &Array,
        cache: &mut [C],
    ) -> mlx_rs::error::Result<Array> {
        todo!("chapter 8, task 4: embed, run each block with its layer's cache, norm, output layer")
    }
}
