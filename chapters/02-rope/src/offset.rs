//! Where the first token of each row of RoPE's input sits. Given; your `RoPE::apply` takes it.

/// The position of the first token of `x`: one start for every batch row, or one per row.
///
/// Book: week 1, chapter 2 (RoPE), tasks 1 and 3.
#[derive(Clone, Copy, Debug)]
pub enum Offset<'a> {
    /// Every row's first token is at this position (0 for a prompt, the cache length after it).
    Start(i32),
    /// Row `b`'s first token is at position `starts[b]`; one entry per batch row.
    PerRow(&'a [i32]),
}
