//! Softmax, linear layers and scaled dot-product attention, from MLX array ops.

use mlx_rs::{error::Exception, error::Result, Array};

/// Softmax of `x` along `axis`: `exp(x - max) / sum(exp(x - max))`.
///
/// - `x`: any shape, any float dtype; `axis` may be negative (counted from the end).
/// - Returns an array of the same shape and dtype whose entries along `axis` sum to 1.
/// - Subtract the maximum first, so that large inputs do not overflow `exp`.
///
/// Book: week 1, chapter 1 (attention), task 1.
pub fn softmax(x: &Array, axis: i32) -> Result<Array> {
    let max = x.max_axis(axis, true)?; // same rank as x, size 1 along axis
    let exponentials = x.subtract(&max)?.exp()?;
    let total = exponentials.sum_axis(axis, true)?;
    exponentials.divide(&total)
}

/// A linear layer: `y = x W^T + b`.
///
/// - `x`: `[..., I]`; `w`: `[O, I]` (PyTorch's layout); `bias`: `[O]` or none.
/// - Returns `[..., O]`, in the dtype of `x`.
///
/// Book: week 1, chapter 1 (attention), task 2.
pub fn linear(x: &Array, w: &Array, bias: Option<&Array>) -> Result<Array> {
    let y = x.matmul(w.t())?; // [..., O]
    match bias {
        Some(bias) => y.add(bias),
        None => Ok(y),
    }
}

/// Attention of queries over keys: `softmax(Q K^T * scale + mask) V`.
///
/// - `q`: `[..., L, D]`; `k` and `v`: `[..., S, D]`, with the same leading dims as `q`.
/// - `scale`: multiplies the scores; `None` means `1 / sqrt(D)`.
/// - `mask`: added to the scores (`0` keeps, `-inf` hides), broadcastable to `[..., L, S]`.
/// - Returns `[..., L, D]`.
///
/// Book: week 1, chapter 1 (attention), task 3.
pub fn scaled_dot_product_attention_simple(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: Option<f32>,
    mask: Option<&Array>,
) -> Result<Array> {
    let depth = *q
        .shape()
        .last()
        .ok_or_else(|| Exception::custom("queries must have a feature axis"))?;
    let scale = scale.unwrap_or(1.0 / (depth as f32).sqrt());
    let rank = k.ndim() as i32;
    let scores = q
        .matmul(k.swap_axes(rank - 2, rank - 1)?)?
        .multiply(Array::from_f32(scale))?; // [..., L, S]
    let scores = match mask {
        Some(mask) => scores.add(mask)?,
        None => scores,
    };
    softmax(&scores, -1)?.matmul(v) // [..., L, D]
}

/// Multi-head attention with separate query, key, value and output projections, no biases.
///
/// Book: week 1, chapter 1 (attention), task 4.
pub struct SimpleMultiHeadAttention {
    num_heads: i32,
    wq: Array,
    wk: Array,
    wv: Array,
    wo: Array,
}

impl SimpleMultiHeadAttention {
    /// - `hidden_size`: E, a multiple of `num_heads`.
    /// - `wq`, `wk`, `wv`, `wo`: `[E, E]` each, in the layout of [`linear`].
    /// - Fails (naming the argument) when a shape does not fit.
    ///
    /// Book: week 1, chapter 1 (attention), task 4.
    pub fn new(
        hidden_size: i32,
        num_heads: i32,
        wq: Array,
        wk: Array,
        wv: Array,
        wo: Array,
    ) -> Result<Self> {
        if num_heads <= 0 || hidden_size % num_heads != 0 {
            return Err(Exception::custom(format!(
                "hidden_size {hidden_size} must be a positive multiple of num_heads {num_heads}"
            )));
        }
        for (name, w) in [("wq", &wq), ("wk", &wk), ("wv", &wv), ("wo", &wo)] {
            if w.shape() != [hidden_size, hidden_size] {
                return Err(Exception::custom(format!(
                    "{name} has shape {:?}, expected [{hidden_size}, {hidden_size}]",
                    w.shape()
                )));
            }
        }
        Ok(SimpleMultiHeadAttention {
            num_heads,
            wq,
            wk,
            wv,
            wo,
        })
    }

    /// - `query`: `[N, L, E]`; `key` and `value`: `[N, S, E]`.
    /// - `mask`: added to every head's scores, broadcastable to `[N, H, L, S]`.
    /// - Returns `[N, L, E]`.
    ///
    /// Book: week 1, chapter 1 (attention), task 4.
    pub fn forward(
        &self,
        query: &Array,
        key: &Array,
        value: &Array,
        mask: Option<&Array>,
    ) -> Result<Array> {
        let (batch, length) = (query.shape()[0], query.shape()[1]);
        let hidden = self.wq.shape()[0];
        let head_dim = hidden / self.num_heads;
        // [N, T, E] -> [N, T, H, D] -> [N, H, T, D]
        let split_heads = |x: &Array, w: &Array| -> Result<Array> {
            let tokens = x.shape()[1];
            linear(x, w, None)?
                .reshape(&[batch, tokens, self.num_heads, head_dim])?
                .swap_axes(1, 2)
        };
        let q = split_heads(query, &self.wq)?;
        let k = split_heads(key, &self.wk)?;
        let v = split_heads(value, &self.wv)?;
        let heads = scaled_dot_product_attention_simple(&q, &k, &v, None, mask)?; // [N, H, L, D]
        let merged = heads.swap_axes(1, 2)?.reshape(&[batch, length, hidden])?; // [N, L, E]
        linear(&merged, &self.wo, None)
    }
}
