//! One forward step over paged sequences: the [`StepPlan`] that says where each row's new
//! tokens go and where its keys are, and [`PagedLayer`], which lets chapter 8's attention use one
//! layer's pages as its cache. Given: your code in `src/step_plan.rs` makes the plan and
//! `src/paged_attention.rs` writes and reads the pages.

use crate::{LayerPages, PagedAttentionKernel};
use kv_cache::LayerCache;
use mlx_rs::{error::Result, Array};
use rope::Offset;

/// Where one step's tokens go in the pages and where every key they attend to is, for a batch
/// of `B` sequences each running `L` new tokens. The same for every layer: made once per step.
///
/// Given; making it is yours (book: week 3, chapter 12 (paged KV cache), task 2).
pub struct StepPlan {
    /// `[B * L]` int32: the slot of each new token, row by row (row 0's `L` tokens first).
    pub(crate) write_slots: Array,
    /// `[B, S]` int32: the slot of each row's positions `0..S`, `S` the longest row after the
    /// step; past a row's end any valid slot (the mask hides it).
    pub(crate) read_slots: Array,
    /// Each row's length before the step: the position of its first new token, for RoPE.
    pub(crate) positions: Vec<i32>,
    /// `[B, 1, L, S]`, 0 where a new token may attend and `-inf` where not; `None` when every
    /// row has the same length (then the plain causal rule is right).
    pub(crate) mask: Option<Array>,
}

impl StepPlan {
    pub fn write_slots(&self) -> &Array {
        &self.write_slots
    }

    pub fn read_slots(&self) -> &Array {
        &self.read_slots
    }

    pub fn positions(&self) -> &[i32] {
        &self.positions
    }

    pub fn mask(&self) -> Option<&Array> {
        self.mask.as_ref()
    }
}

/// One layer's pages seen through a step's plan: what attention reads and fills.
///
/// Given.
pub struct PagedLayer<'a> {
    pub pages: &'a mut LayerPages,
    pub plan: &'a StepPlan,
}

impl LayerCache for PagedLayer<'_> {
    fn positions(&self) -> Offset<'_> {
        Offset::PerRow(&self.plan.positions)
    }

    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        self.pages.write(keys, values, self.plan)?;
        self.pages.gather(self.plan)
    }

    fn mask(&self, _queries: i32) -> Result<Option<Array>> {
        Ok(self.plan.mask.clone())
    }

    /// On a CUDA GPU with `TINY_LLM_PAGED_ATTENTION=fused`, a decode step writes its keys and
    /// runs the fused kernel over the pages (`src/fused_paged_attention.rs`); otherwise, and for
    /// prompts, `None`: gather, then MLX.
    fn attend_fused(
        &mut self,
        queries: &Array,
        keys: &Array,
        values: &Array,
        scale: f32,
    ) -> Result<Option<Array>> {
        let kernel = PagedAttentionKernel::for_decode(queries, self.pages)?;
        if kernel != PagedAttentionKernel::Fused {
            return Ok(None);
        }
        self.pages.write(keys, values, self.plan)?;
        let out = self
            .pages
            .decode_attention(queries, self.plan, scale, kernel)?; // [B, H_q, 1, D]
        Ok(Some(out))
    }
}
