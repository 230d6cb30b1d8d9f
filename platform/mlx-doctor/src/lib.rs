//! What `cargo xtask doctor` reports: which MLX is loaded, on which backend and BLAS, and a
//! tiny computation checked against its hand-computed result; optionally GEMM and memory speed.

mod loaded_libraries;
mod speed;

pub use loaded_libraries::{blas_in_use, loaded_library_path};
pub use speed::{copy_bandwidth_gb_per_s, f32_gemm_gflop_per_s};

use mlx_rs::{Array, Device};
use std::ffi::CStr;

/// The MLX version string, as MLX itself reports it.
pub fn mlx_version() -> String {
    unsafe {
        let mut version = mlx_sys::mlx_string_new();
        mlx_sys::mlx_version(&mut version);
        let text = CStr::from_ptr(mlx_sys::mlx_string_data(version))
            .to_string_lossy()
            .into_owned();
        mlx_sys::mlx_string_free(version);
        text
    }
}

/// The backend this MLX was built for: `metal`, `cuda` or `cpu`.
pub fn backend() -> &'static str {
    let (mut metal, mut cuda) = (false, false);
    unsafe {
        mlx_sys::mlx_metal_is_available(&mut metal);
        mlx_sys::mlx_cuda_is_available(&mut cuda);
    }
    match (metal, cuda) {
        (true, _) => "metal",
        (_, true) => "cuda",
        _ => "cpu",
    }
}

/// MLX's default device, e.g. `cpu:0` or `gpu:0`.
pub fn default_device() -> Result<String, mlx_rs::error::Exception> {
    let device = Device::try_default()?;
    let kind = format!("{:?}", device.get_type()?).to_lowercase();
    Ok(format!("{kind}:{}", device.get_index()?))
}

/// `[[1, 2], [3, 4]] @ [[5, 6], [7, 8]]`, which is `[[19, 22], [43, 50]]`: proves MLX runs.
pub fn tiny_matmul() -> Result<Vec<f32>, mlx_rs::error::Exception> {
    let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0], &[2, 2]);
    let b = Array::from_slice(&[5.0f32, 6.0, 7.0, 8.0], &[2, 2]);
    let product = a.matmul(&b)?;
    product.eval()?;
    Ok(product.as_slice::<f32>().to_vec())
}
