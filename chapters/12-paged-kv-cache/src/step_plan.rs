//! Planning one step over paged sequences: where each new token goes, where each key is read
//! from, and what each new token may see. The plan's type, [`StepPlan`], is in
//! `src/paged_layer.rs`.

use crate::{BlockTable, StepPlan};
use mlx_rs::{
    error::{Exception, Result},
    ops, Array,
};

impl StepPlan {
    /// The plan for running `new_tokens` more tokens of each sequence in `tables`, whose blocks
    /// were reserved for them ([`BlockTable::reserve`]) but whose `len()` does not count them yet.
    ///
    /// - `write_slots` `[B * L]`: row `b`'s token `i` is at position `len_b + i`, in slot
    ///   [`BlockTable::slot`] of it.
    /// - `read_slots` `[B, S]`, `S = max(len_b) + L`: the slot of row `b`'s position `j` for
    ///   `j < len_b + L`; 0 beyond.
    /// - `positions`: `len_b` for each row.
    /// - `mask` `[B, 1, L, S]` float32: row `b`'s token `i` sees key `j` (0.0) when
    ///   `j <= len_b + i`, else `-inf`; `None` when every row has the same length.
    /// - Fails when `tables` is empty, `new_tokens` is 0, or a table lacks the blocks.
    ///
    /// Book: week 3, chapter 12 (paged KV cache), task 2.
    pub fn new(tables: &[&BlockTable], new_tokens: usize) -> Result<StepPlan> {
        todo!("chapter 12, task 2: the slots of the new tokens, the slots of every key, each row's position, the mask")
    }
}
