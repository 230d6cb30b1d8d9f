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
}
