//! Which shared libraries this process actually loaded, asked of the dynamic loader.

use std::{ffi::CStr, path::PathBuf};

/// The file the loader resolved `symbol` to, with symlinks followed.
fn library_defining(symbol: &CStr) -> Option<PathBuf> {
    unsafe {
        let address = libc::dlsym(libc::RTLD_DEFAULT, symbol.as_ptr());
        if address.is_null() {
            return None;
        }
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(address, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let path = PathBuf::from(
            CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned(),
        );
        Some(path.canonicalize().unwrap_or(path))
    }
}

/// Where libmlx was loaded from (the library defining `mlx_version`'s C++ core is libmlx, the
/// bridge itself is linked statically, so ask for a symbol only libmlx exports).
pub fn loaded_library_path() -> Option<PathBuf> {
    // mlx::core::default_device(), exported by every build of libmlx.
    library_defining(c"_ZN3mlx4core14default_deviceEv")
}

/// The BLAS serving MLX's f32 GEMM, named from the library that defines `cblas_sgemm`. On Linux
/// that is the bridge's stand-in for the wheel's reference BLAS, which jumps to scipy-openblas32's
/// `scipy_` functions: nothing else links that OpenBLAS, so finding it loaded means it serves.
pub fn blas_in_use() -> String {
    if cfg!(target_os = "macos") {
        return "Accelerate (macOS)".into();
    }
    if let Some(openblas) = library_defining(c"scipy_cblas_sgemm") {
        return format!(
            "{}, from scipy-openblas32 ({})",
            scipy_openblas_config().unwrap_or_else(|| "OpenBLAS".into()),
            openblas.display()
        );
    }
    match library_defining(c"cblas_sgemm") {
        Some(path) if path.to_string_lossy().contains("openblas") => {
            format!("OpenBLAS ({})", path.display())
        }
        Some(path) => format!("reference BLAS, slow ({})", path.display()),
        None => "none found".into(),
    }
}

/// OpenBLAS's own description (version, kernels, thread limit) and the threads it runs.
fn scipy_openblas_config() -> Option<String> {
    unsafe {
        let config = libc::dlsym(libc::RTLD_DEFAULT, c"scipy_openblas_get_config".as_ptr());
        let threads = libc::dlsym(
            libc::RTLD_DEFAULT,
            c"scipy_openblas_get_num_threads".as_ptr(),
        );
        if config.is_null() || threads.is_null() {
            return None;
        }
        let config: extern "C" fn() -> *const libc::c_char = std::mem::transmute(config);
        let threads: extern "C" fn() -> libc::c_int = std::mem::transmute(threads);
        let description = CStr::from_ptr(config()).to_string_lossy().trim().to_owned();
        Some(format!("{description}, {} threads", threads()))
    }
}
