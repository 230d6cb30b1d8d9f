//! Causal masks and grouped-query attention: several query heads share one key/value head.

use crate::Mask;
use mlx_rs::{error::Result, Array, Dtype};

/// The additive causal mask of `queries` new tokens over `keys` tokens, the new ones last.
///
/// - Returns `[queries, keys]` in `dtype`: `0` where query `i` may look at key `j`, `-inf`
///   elsewhere. Query `i` is the token at position `keys - queries + i`, so it sees keys
///   `0..=keys - queries + i`: the last query sees every key.
/// - Fails when `queries > keys` (a query would see no key at all) or a size is not positive.
///
/// Book: week 1, chapter 3 (grouped-query attention), task 1.
pub fn causal_mask(queries: i32, keys: i32, dtype: Dtype) -> Result<Array> {
    todo!("chapter 3, task 1: 0 where key position <= query position, -inf elsewhere")
}

/// Attention where `H_q / H_kv` query heads share each key/value head, without copying K and V.
///
/// - `q`: `[B, H_q, L, D]`; `k` and `v`: `[B, H_kv, S, D]`; `H_q` a multiple of `H_kv`. Query
///   head `h` uses key/value head `h / (H_q / H_kv)`.
/// - `scale`: multiplies the scores; `None` means `1 / sqrt(D)`.
/// - `mask`: see [`Mask`].
/// - Returns `[B, H_q, L, D]`, in the dtype of `q`; the softmax runs in float32.
/// - Fails (naming the shapes) when the shapes do not fit together.
///
/// Book: week 1, chapter 3 (grouped-query attention), task 2.
pub fn scaled_dot_product_attention_grouped(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: Option<f32>,
    mask: Mask,
) -> Result<Array> {
    todo!(
        "chapter 3, task 2: reshape q to [B, H_kv, G, L, D], k and v to [B, H_kv, 1, S, D], attend"
    )
}
