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
        if tables.is_empty() || new_tokens == 0 {
            return Err(Exception::custom(format!(
                "a step needs at least one sequence and one new token, got {} sequences of {new_tokens} tokens",
                tables.len()
            )));
        }
        let longest = tables.iter().map(|table| table.len()).max().unwrap_or(0) + new_tokens;
        let (batch, keys, queries) = (tables.len() as i32, longest as i32, new_tokens as i32);
        let mut write_slots = Vec::with_capacity(tables.len() * new_tokens);
        let mut read_slots = Vec::with_capacity(tables.len() * longest);
        for table in tables {
            let end = table.len() + new_tokens;
            let slots = (0..end)
                .map(|position| table.slot(position))
                .collect::<Option<Vec<i32>>>()
                .ok_or_else(|| {
                    Exception::custom(format!(
                        "a block table of {} tokens has room for {}, not {new_tokens} more: reserve first",
                        table.len(),
                        table.capacity()
                    ))
                })?;
            write_slots.extend_from_slice(&slots[table.len()..]);
            read_slots.extend_from_slice(&slots);
            read_slots.resize(read_slots.len() + longest - end, 0);
        }
        let positions: Vec<i32> = tables.iter().map(|table| table.len() as i32).collect();
        let mask = if positions.iter().all(|&p| p == positions[0]) {
            None
        } else {
            let columns = Array::arange::<_, i32>(0, keys, None)?.reshape(&[1, 1, 1, keys])?; // [1, 1, 1, S]
            let offsets =
                Array::arange::<_, i32>(0, queries, None)?.reshape(&[1, 1, queries, 1])?; // [1, 1, L, 1]
            let starts = Array::from_slice(&positions, &[batch, 1, 1, 1]); // [B, 1, 1, 1]
            let visible = columns.le(&starts.add(&offsets)?)?; // [B, 1, L, S]
            let hidden = Array::from_f32(f32::NEG_INFINITY);
            Some(ops::select(&visible, Array::from_f32(0.0), &hidden)?)
        };
        Ok(StepPlan {
            write_slots: Array::from_slice(&write_slots, &[batch * queries]),
            read_slots: Array::from_slice(&read_slots, &[batch, keys]),
            positions,
            mask,
        })
    }
}
