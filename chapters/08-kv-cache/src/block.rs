//! One decoder layer of the week-2 model: chapter 4's block over [`Linear`] layers, with a cache
//! for its attention and a choice of [`Kernels`]. Given: your `Model::forward` runs one per layer.

use crate::{CachedAttention, Kernels, LayerCache, Linear, Norm};
use mlx_rs::{error::Result, ops, transforms::compile::compile, Array};
use rmsnorm_mlp::silu;
use std::cell::RefCell;

/// The SwiGLU MLP of chapter 4 over [`Linear`] layers.
pub(crate) struct Mlp {
    pub(crate) gate_proj: Box<dyn Linear>,
    pub(crate) up_proj: Box<dyn Linear>,
    pub(crate) down_proj: Box<dyn Linear>,
    /// `[2 I, E]`: gate and up joined, for one matmul in the fused path; `None` when the
    /// checkpoint stores them in different formats.
    pub(crate) gate_up_proj: Option<Box<dyn Linear>>,
    /// Whether the fused path compiles `silu(gate) * up` into one kernel ([`swiglu`]).
    pub(crate) compiled_swiglu: bool,
}

impl Mlp {
    fn forward(&self, x: &Array, kernels: Kernels) -> Result<Array> {
        // Joined and compiled only for one token of one row, as q, k and v
        // (`src/fused_attention.rs`): on MLX 0.32.2's CUDA backend, the compiled SwiGLU gave a
        // bfloat16 batch rows other than each row alone (an H100, 2026-12-06).
        let one_token = x.size() == x.dim(-1) as usize;
        let (gate, up) = match (kernels, &self.gate_up_proj) {
            (Kernels::Fused, Some(gate_up_proj)) if one_token => {
                let gate_up = gate_up_proj.forward(x)?; // [B, L, 2 I]
                let inner = gate_up.dim(-1) / 2;
                let mut halves = gate_up.split_at_indices(&[inner], -1)?.into_iter(); // 2 x [B, L, I]
                (halves.next().expect("two"), halves.next().expect("two"))
            }
            _ => (self.gate_proj.forward(x)?, self.up_proj.forward(x)?), // [B, L, I]
        };
        let activated = match (kernels, self.compiled_swiglu) {
            (Kernels::Fused, true) if one_token => swiglu(&gate, &up)?,
            _ => silu(&gate)?.multiply(&up)?,
        }; // [B, L, I]
        self.down_proj.forward(&activated) // [B, L, E]
    }
}

type CompiledSwiglu = Box<dyn for<'a> FnMut((&'a Array, &'a Array)) -> Result<Array>>;

thread_local! {
    /// `silu(gate) * up` compiled by MLX into one element-wise kernel instead of three, as
    /// mlx-lm's `swiglu`; shapeless, so that it is traced once for every batch and length.
    /// One per thread: a compiled function is MLX state that does not cross threads.
    static SWIGLU: RefCell<CompiledSwiglu> = RefCell::new(Box::new(compile(
        |(gate, up): (&Array, &Array)| gate.multiply(ops::sigmoid(gate)?)?.multiply(up),
        true,
    )));
}

/// `silu(gate) * up` in one fused kernel. `gate`, `up`: `[B, L, I]`.
fn swiglu(gate: &Array, up: &Array) -> Result<Array> {
    SWIGLU.with(|compiled| (compiled.borrow_mut())((gate, up)))
}

/// One decoder layer, as in chapter 4, with a cache for its attention.
pub(crate) struct Block {
    pub(crate) input_layernorm: Norm,
    pub(crate) attention: CachedAttention,
    pub(crate) post_attention_layernorm: Norm,
    pub(crate) mlp: Mlp,
    pub(crate) kernels: Kernels,
}

impl Block {
    pub(crate) fn forward(&self, x: &Array, cache: &mut dyn LayerCache) -> Result<Array> {
        let normalized = self.input_layernorm.forward(x)?; // [B, L, E]
        let attended = match self.kernels {
            Kernels::Course => self.attention.forward(&normalized, cache)?,
            Kernels::Fused => self.attention.forward_fused(&normalized, cache)?,
        };
        let h = x.add(&attended)?; // [B, L, E]
        h.add(
            self.mlp
                .forward(&self.post_attention_layernorm.forward(&h)?, self.kernels)?,
        ) // [B, L, E]
    }
}
