//! Two numbers that bound everything the engine does on this machine: f32 GEMM throughput
//! and memory bandwidth, both measured through MLX itself.

use mlx_rs::{error::Exception, random, Array};
use std::time::Instant;

/// Best of `runs` timings of `work` (evaluated), after one warm-up run.
fn best_seconds(
    runs: usize,
    mut work: impl FnMut() -> Result<Array, Exception>,
) -> Result<f64, Exception> {
    work()?.eval()?;
    let mut best = f64::INFINITY;
    for _ in 0..runs {
        let start = Instant::now();
        work()?.eval()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// GFLOP/s of an `n x n` by `n x n` f32 matmul (2 n^3 flops).
pub fn f32_gemm_gflop_per_s(n: i32) -> Result<f64, Exception> {
    let key = random::key(0)?;
    let a = random::normal::<f32>(&[n, n][..], None, None, &key)?;
    let b = random::normal::<f32>(&[n, n][..], None, None, &key)?;
    mlx_rs::transforms::eval([&a, &b])?;
    let seconds = best_seconds(5, || a.matmul(&b))?;
    Ok(2.0 * f64::from(n).powi(3) / seconds / 1e9)
}

/// The machine's memory bandwidth in GB/s: a `megabytes` memcpy, counting each byte read and
/// written. It bounds decode speed: every generated token streams all weights through memory.
pub fn copy_bandwidth_gb_per_s(megabytes: usize) -> f64 {
    let bytes = megabytes << 20;
    let source = vec![1u8; bytes];
    let mut destination = vec![0u8; bytes];
    destination.copy_from_slice(&source);
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let start = Instant::now();
        destination.copy_from_slice(std::hint::black_box(&source));
        best = best.min(start.elapsed().as_secs_f64());
    }
    std::hint::black_box(&destination);
    2.0 * bytes as f64 / best / 1e9
}
