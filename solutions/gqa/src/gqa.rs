//! Causal masks and grouped-query attention: several query heads share one key/value head.

use attention::softmax;
use mlx_rs::{
    error::{Exception, Result},
    ops, Array, Dtype,
};

/// The additive causal mask of `queries` new tokens over `keys` tokens, the new ones last.
///
/// - Returns `[queries, keys]` in `dtype`: `0` where query `i` may look at key `j`, `-inf`
///   elsewhere. Query `i` is the token at position `keys - queries + i`, so it sees keys
///   `0..=keys - queries + i`: the last query sees every key.
/// - Fails when `queries > keys` (a query would see no key at all) or a size is not positive.
///
/// Book: week 1, chapter 3 (grouped-query attention), task 1.
pub fn causal_mask(queries: i32, keys: i32, dtype: Dtype) -> Result<Array> {
    if queries <= 0 || keys < queries {
        return Err(Exception::custom(format!(
            "causal_mask needs 0 < queries <= keys, got {queries} queries over {keys} keys"
        )));
    }
    let positions = Array::arange::<_, i32>(keys - queries, keys, None)?.reshape(&[queries, 1])?; // [L, 1]
    let key_positions = Array::arange::<_, i32>(0, keys, None)?.reshape(&[1, keys])?; // [1, S]
    let visible = key_positions.le(&positions)?; // [L, S]
    let zeros = Array::zeros::<f32>(&[queries, keys])?;
    let hidden = Array::full::<f32>(&[queries, keys], Array::from_f32(f32::NEG_INFINITY))?;
    ops::select(&visible, &zeros, &hidden)?.as_dtype(dtype) // [L, S]
}

/// What a query may not look at.
///
/// Book: week 1, chapter 3 (grouped-query attention), task 2.
#[derive(Clone, Copy, Debug)]
pub enum Mask<'a> {
    /// Every query sees every key.
    None,
    /// Query `i` sees the keys up to its own position ([`causal_mask`]).
    Causal,
    /// An additive mask broadcastable to `[B, H_q, L, S]` (`0` keeps, `-inf` hides).
    Array(&'a Array),
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
    let (&[batch, heads, queries, depth], &[kv_batch, kv_heads, keys, key_depth]) =
        (q.shape(), k.shape())
    else {
        return Err(Exception::custom(format!(
            "grouped attention needs q [B, H_q, L, D] and k [B, H_kv, S, D], got q {:?} and k {:?}",
            q.shape(),
            k.shape()
        )));
    };
    if kv_batch != batch || key_depth != depth || v.shape() != k.shape() {
        return Err(Exception::custom(format!(
            "grouped attention: q {:?}, k {:?} and v {:?} do not fit (same B and D, k and v alike)",
            q.shape(),
            k.shape(),
            v.shape()
        )));
    }
    if kv_heads == 0 || heads % kv_heads != 0 {
        return Err(Exception::custom(format!(
            "grouped attention: {heads} query heads cannot share {kv_heads} key/value heads"
        )));
    }
    let groups = heads / kv_heads;
    let scale = scale.unwrap_or(1.0 / (depth as f32).sqrt());

    // Query heads h = g_kv * groups + g share key/value head g_kv: give K and V a group axis of
    // size 1 and let matmul broadcast it, instead of repeating them `groups` times.
    let q = q.reshape(&[batch, kv_heads, groups, queries, depth])?; // [B, H_kv, G, L, D]
    let k = k.expand_dims(2)?; // [B, H_kv, 1, S, D]
    let v = v.expand_dims(2)?; // [B, H_kv, 1, S, D]
    let scores = q
        .matmul(k.swap_axes(-1, -2)?)? // [B, H_kv, G, L, S]
        .as_dtype(Dtype::Float32)?
        .multiply(Array::from_f32(scale))?;
    let scores = match mask {
        Mask::None => scores,
        Mask::Causal => scores.add(causal_mask(queries, keys, Dtype::Float32)?)?, // + [L, S]
        Mask::Array(mask) => scores.add(grouped_mask(mask, kv_heads, groups)?)?,
    };
    let weights = softmax(&scores, -1)?.as_dtype(v.dtype())?; // [B, H_kv, G, L, S]
    weights
        .matmul(&v)? // [B, H_kv, G, L, D]
        .reshape(&[batch, heads, queries, depth]) // [B, H_q, L, D]
}

/// Reshapes a mask broadcastable to `[B, H_q, L, S]` so that it broadcasts to the grouped
/// scores `[B, H_kv, G, L, S]`.
fn grouped_mask(mask: &Array, kv_heads: i32, groups: i32) -> Result<Array> {
    let shape = mask.shape();
    let mask = mask.as_dtype(Dtype::Float32)?;
    if shape.len() < 3 {
        return Ok(mask); // [L, S] or [S]: the same for every head
    }
    let head_axis = shape.len() - 3;
    let mut grouped: Vec<i32> = shape[..head_axis].to_vec();
    match shape[head_axis] {
        1 => grouped.extend([1, 1]), // [..., 1, 1, L, S]
        heads if heads == kv_heads * groups => grouped.extend([kv_heads, groups]), // [..., H_kv, G, L, S]
        heads => {
            return Err(Exception::custom(format!(
                "the mask has {heads} heads; expected 1 or {}",
                kv_heads * groups
            )))
        }
    }
    grouped.extend(&shape[head_axis + 1..]);
    mask.reshape(&grouped)
}
