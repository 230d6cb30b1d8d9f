//! `cargo xtask doctor`: how MLX is installed here, and (with --bench) how fast it runs.

use std::process::ExitCode;

fn main() -> ExitCode {
    let bench = std::env::args().any(|arg| arg == "--bench");
    match report(bench) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: MLX failed while running the checks: {error}");
            ExitCode::FAILURE
        }
    }
}

fn report(bench: bool) -> Result<(), mlx_rs::error::Exception> {
    let library = mlx_doctor::loaded_library_path()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|| "unknown".into());
    println!("MLX version      {}", mlx_doctor::mlx_version());
    println!("backend          {}", mlx_doctor::backend());
    println!("default device   {}", mlx_doctor::default_device()?);
    println!("BLAS             {}", mlx_doctor::blas_in_use());
    println!("libmlx           {library}");
    let product = mlx_doctor::tiny_matmul()?;
    let verdict = if product == [19.0, 22.0, 43.0, 50.0] {
        "ok"
    } else {
        "WRONG"
    };
    println!("tiny matmul      {product:?} ({verdict})");
    if bench {
        println!(
            "f32 GEMM 1024^3  {:.0} GFLOP/s",
            mlx_doctor::f32_gemm_gflop_per_s(1024)?
        );
        println!(
            "memory bandwidth {:.1} GB/s (256 MiB memcpy, read + write)",
            mlx_doctor::copy_bandwidth_gb_per_s(256)
        );
    }
    if verdict != "ok" {
        return Err(mlx_rs::error::Exception::custom(
            "the tiny matmul gave a wrong result",
        ));
    }
    Ok(())
}
