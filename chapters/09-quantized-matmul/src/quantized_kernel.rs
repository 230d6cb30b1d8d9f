//! Which code multiplies by a quantized weight: MLX's fused kernel or yours. Given.

/// Which code multiplies by a quantized weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// MLX's fused `quantized_matmul`: it unpacks inside the matmul and never materializes the
    /// float weight. The engine's fast path: [`load_model`](crate::load_model) then also runs
    /// the other layers on MLX's fused kernels (`Kernels::Fused`).
    Mlx,
    /// This chapter's [`quantized_matmul`]; the engine uses it under `cargo xtask run --mine`.
    Course,
}
