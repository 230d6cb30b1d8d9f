//! What an attention layer asks of its cache. [`KvCache`](crate::KvCache) holds one sequence;
//! chapter 10's batched cache holds several, each at its own position.

use mlx_rs::{error::Result, Array};
use rope::Offset;

/// The cache of one attention layer, as the layer sees it.
///
/// Given.
pub trait LayerCache {
    /// The position of each row's first new token, for RoPE: one for the whole batch, or one
    /// per row.
    fn positions(&self) -> Offset<'_>;

    /// Appends the new keys and values `[B, H_kv, L, D]` and returns every cached one,
    /// `[B, H_kv, S, D]`.
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)>;

    /// After an update of `queries` new tokens: the additive mask over the `S` keys it
    /// returned, broadcastable to `[B, H_q, L, S]`; `None` means the plain causal rule (each new
    /// token sees every key up to its own position).
    fn mask(&self, queries: i32) -> Result<Option<Array>>;

    /// For a cache that runs attention over its own storage in one kernel (chapter 12's pages
    /// on a CUDA GPU): stores the new `keys`, `values` `[B, H_kv, L, D]` and returns the
    /// attention of `queries` `[B, H_q, L, D]` over every cached key, `[B, H_q, L, D]`.
    /// `Ok(None)`, the default, leaves the cache untouched: the layer then calls
    /// [`update_and_fetch`](Self::update_and_fetch) and MLX's attention. Only the engine's fused
    /// path ([`crate::Kernels::Fused`]) asks.
    fn attend_fused(
        &mut self,
        queries: &Array,
        keys: &Array,
        values: &Array,
        scale: f32,
    ) -> Result<Option<Array>> {
        let _ = (queries, keys, values, scale);
        Ok(None)
    }
}
