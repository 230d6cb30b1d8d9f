//! MLX's custom CUDA kernels (`mlx::core::fast::cuda_kernel`, through mlx-c's
//! `mlx_fast_cuda_kernel_*`), which mlx-rs 0.33 does not wrap: a [`CudaKernel`] made from the
//! body of a `__global__` function, launched on MLX arrays with a [`LaunchConfig`]. Every
//! `unsafe` call into mlx-c stays in this crate.
//!
//! How MLX builds the kernel (mlx/backend/cuda/custom_kernel.cpp, MLX 0.32):
//! - `source` is only the body. MLX writes the signature: each input `x` becomes
//!   `const T* x` with `T` its dtype's CUDA type (`float`, `__half`, `__nv_bfloat16`, `int32_t`...),
//!   followed by `x_shape`, `x_strides` or `x_ndim` when the source mentions them; then each
//!   output `y` as `T* y`. Template arguments become `constexpr int N = ...;`,
//!   `constexpr bool B = ...;` or `using T = float;` at the top of the body.
//! - The kernel is compiled (NVRTC) the first time its outputs are evaluated, and cached under
//!   its name and template arguments: the same name with other input dtypes needs a dtype
//!   template argument to tell them apart.
//! - `grid` counts threads, not blocks, as in `metal_kernel`: MLX launches
//!   `ceil(grid / thread_group)` blocks of `thread_group` threads.

use mlx_rs::{error::Exception, Array, Device, DeviceType, Dtype, Stream};
use std::ffi::CString;

/// The most threads one CUDA block may have.
pub const MAX_THREADS_PER_BLOCK: i32 = 1024;

/// What a custom kernel refuses, before or while MLX builds it.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("custom CUDA kernels need MLX's CUDA backend, and this MLX has none (a CPU or Metal build): run on an NVIDIA GPU with the mlx-cuda build (MLX_BACKEND=cuda), or take the path that uses MLX's ordinary ops")]
    CudaUnavailable,
    #[error("custom CUDA kernels run on the GPU, and MLX's default stream is on the CPU: leave the default device on the GPU (no `with_device(Device::cpu(), ..)` around the call)")]
    NotOnGpu,
    #[error("kernel `{kernel}`: {problem}")]
    Arguments { kernel: String, problem: String },
    /// mlx-c failed without a message this crate can read (mlx-rs keeps the one its error
    /// handler receives to itself): the checks above should have caught the cause.
    #[error("kernel `{kernel}`: MLX failed to {operation}")]
    Mlx {
        kernel: String,
        operation: &'static str,
    },
    #[error("MLX: {0}")]
    Exception(#[from] Exception),
}

impl From<KernelError> for Exception {
    fn from(error: KernelError) -> Self {
        Exception::custom(error.to_string())
    }
}

pub type Result<T> = std::result::Result<T, KernelError>;

/// A compile-time value of the kernel's body (see the crate's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateArg {
    Dtype(Dtype),
    Int(i32),
    Bool(bool),
}

/// The shape and dtype of one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub shape: Vec<i32>,
    pub dtype: Dtype,
}

/// How one call runs the kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchConfig {
    /// Threads (not blocks) along x, y, z.
    pub grid: (i32, i32, i32),
    /// Threads of one block along x, y, z; at most [`MAX_THREADS_PER_BLOCK`] in all.
    pub thread_group: (i32, i32, i32),
    /// One per output name, in order.
    pub outputs: Vec<OutputSpec>,
    /// Compile-time constants and types, by name.
    pub template_args: Vec<(String, TemplateArg)>,
    /// Fills the outputs before the kernel runs; `None`: the kernel writes every element.
    pub init_value: Option<f32>,
}

impl LaunchConfig {
    /// The launch's own consistency, whatever the kernel.
    fn check(&self, kernel: &str, output_names: usize) -> Result<()> {
        let problem = |problem: String| {
            Err(KernelError::Arguments {
                kernel: kernel.to_string(),
                problem,
            })
        };
        let (gx, gy, gz) = self.grid;
        let (tx, ty, tz) = self.thread_group;
        if [gx, gy, gz, tx, ty, tz].iter().any(|&n| n < 1) {
            return problem(format!(
                "grid {:?} and thread group {:?} need at least one thread along each axis",
                self.grid, self.thread_group
            ));
        }
        if tx as i64 * ty as i64 * tz as i64 > MAX_THREADS_PER_BLOCK as i64 {
            return problem(format!(
                "a thread group of {:?} is more than the {MAX_THREADS_PER_BLOCK} threads a CUDA block may have",
                self.thread_group
            ));
        }
        if self.outputs.len() != output_names {
            return problem(format!(
                "{} output shapes for {output_names} output names",
                self.outputs.len()
            ));
        }
        if let Some(output) = self
            .outputs
            .iter()
            .find(|output| output.shape.iter().any(|&n| n < 0))
        {
            return problem(format!("negative output shape {:?}", output.shape));
        }
        Ok(())
    }
}

/// A CUDA kernel for MLX arrays.
///
/// The body is code of the program like any other: an index past an array's end is a memory
/// error, which no check here can see. Keep the body's reads and writes inside the arrays it
/// gets (guard indices with their `_shape` when they come from data); the wrapper checks the
/// rest (names, counts, the launch, the backend).
pub struct CudaKernel {
    name: String,
    input_count: usize,
    output_count: usize,
    /// `None` on an MLX without CUDA, where MLX refuses to make one.
    raw: Option<mlx_sys::mlx_fast_cuda_kernel>,
}

impl CudaKernel {
    /// A kernel `name` whose body `source` reads `inputs` and writes `outputs` (names used in
    /// the body). MLX compiles it at the first evaluation of its outputs. On an MLX without
    /// CUDA this succeeds and [`apply`](Self::apply) says so.
    pub fn new(name: &str, inputs: &[&str], outputs: &[&str], source: &str) -> Result<Self> {
        let problem = |problem: String| KernelError::Arguments {
            kernel: name.to_string(),
            problem,
        };
        if outputs.is_empty() {
            return Err(problem("a kernel needs at least one output".into()));
        }
        let identifiers = std::iter::once(&name).chain(inputs).chain(outputs);
        if let Some(bad) = identifiers.into_iter().find(|n| !is_identifier(n)) {
            return Err(problem(format!(
                "`{bad}` is not a C identifier (letters, digits and _, not starting with a digit)"
            )));
        }
        let mut kernel = CudaKernel {
            name: name.to_string(),
            input_count: inputs.len(),
            output_count: outputs.len(),
            raw: None,
        };
        if !cuda_is_available()? {
            return Ok(kernel);
        }
        let source = CString::new(source).map_err(|_| problem("the source holds a NUL".into()))?;
        let (c_name, header) = (c_string(name)?, c_string("")?);
        let (inputs, outputs) = (StringVector::new(inputs)?, StringVector::new(outputs)?);
        // SAFETY: every pointer is a live NUL-terminated string or a vector made above; mlx-c
        // copies what it keeps.
        let raw = unsafe {
            mlx_sys::mlx_fast_cuda_kernel_new(
                c_name.as_ptr(),
                inputs.raw,
                outputs.raw,
                source.as_ptr(),
                header.as_ptr(),
                true, // MLX copies strided inputs: the body indexes them as dense rows.
                0,    // no dynamic shared memory
            )
        };
        if raw.ctx.is_null() {
            return Err(kernel.mlx_failed("make the kernel"));
        }
        kernel.raw = Some(raw);
        Ok(kernel)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the kernel on `inputs` (one per input name, in order) and returns its outputs,
    /// lazily like any MLX op: compile and launch errors surface when they are evaluated.
    ///
    /// Fails with [`KernelError::CudaUnavailable`] on an MLX without CUDA and
    /// [`KernelError::NotOnGpu`] when the default stream is on the CPU.
    pub fn apply(&self, inputs: &[&Array], config: &LaunchConfig) -> Result<Vec<Array>> {
        let Some(raw) = self.raw else {
            return Err(KernelError::CudaUnavailable);
        };
        let stream = Stream::thread_local_or_default();
        if matches!(stream_device_type(&stream)?, DeviceType::Cpu) {
            return Err(KernelError::NotOnGpu);
        }
        if inputs.len() != self.input_count {
            return Err(KernelError::Arguments {
                kernel: self.name.clone(),
                problem: format!(
                    "{} inputs for {} input names",
                    inputs.len(),
                    self.input_count
                ),
            });
        }
        config.check(&self.name, self.output_count)?;
        let config = RawConfig::new(&self.name, config)?;
        let inputs = ArrayVector::new(inputs, &self.name)?;
        let mut outputs = ArrayVector::empty(&self.name);
        // SAFETY: the kernel, the vectors and the config are live; mlx-c fills `outputs`.
        let status = unsafe {
            mlx_sys::mlx_fast_cuda_kernel_apply(
                &mut outputs.raw,
                raw,
                inputs.raw,
                config.raw,
                stream.as_ptr(),
            )
        };
        if status != 0 {
            return Err(self.mlx_failed("launch the kernel"));
        }
        outputs.into_arrays()
    }

    fn mlx_failed(&self, operation: &'static str) -> KernelError {
        KernelError::Mlx {
            kernel: self.name.clone(),
            operation,
        }
    }
}

impl Drop for CudaKernel {
    fn drop(&mut self) {
        if let Some(raw) = self.raw {
            // SAFETY: made by mlx_fast_cuda_kernel_new, freed once.
            unsafe { mlx_sys::mlx_fast_cuda_kernel_free(raw) };
        }
    }
}

/// Whether this MLX was built with its CUDA backend. Also registers mlx-rs's error handler (its
/// first fallible call does), so that mlx-c reports failures to it instead of MLX's default
/// handler, which ends the process.
pub fn cuda_is_available() -> Result<bool> {
    Device::try_default()?;
    let mut available = false;
    // SAFETY: writes one bool.
    let status = unsafe { mlx_sys::mlx_cuda_is_available(&mut available) };
    if status != 0 {
        return Err(KernelError::Exception(Exception::custom(
            "MLX could not tell whether it has CUDA",
        )));
    }
    Ok(available)
}

/// Whether a [`CudaKernel`] runs here: MLX has CUDA and the default stream is on the GPU.
pub fn cuda_kernels_run_here() -> Result<bool> {
    Ok(cuda_is_available()?
        && matches!(
            stream_device_type(&Stream::thread_local_or_default())?,
            DeviceType::Gpu
        ))
}

fn stream_device_type(stream: &Stream) -> Result<DeviceType> {
    // SAFETY: `device` is made here, filled by mlx-c from a live stream, and freed here.
    unsafe {
        let mut device = mlx_sys::mlx_device_new();
        let status = mlx_sys::mlx_stream_get_device(&mut device, stream.as_ptr());
        let mut kind = mlx_sys::mlx_device_type__MLX_CPU;
        let type_status = mlx_sys::mlx_device_get_type(&mut kind, device);
        mlx_sys::mlx_device_free(device);
        if status != 0 || type_status != 0 {
            return Err(KernelError::Exception(Exception::custom(
                "MLX could not tell which device its default stream is on",
            )));
        }
        Ok(if kind == mlx_sys::mlx_device_type__MLX_GPU {
            DeviceType::Gpu
        } else {
            DeviceType::Cpu
        })
    }
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn c_string(text: &str) -> Result<CString> {
    CString::new(text).map_err(|_| {
        KernelError::Exception(Exception::custom(format!("`{text}` holds a NUL byte")))
    })
}

/// mlx-c's vector of strings: the input or output names.
struct StringVector {
    raw: mlx_sys::mlx_vector_string,
}

impl StringVector {
    fn new(names: &[&str]) -> Result<Self> {
        let owned = names
            .iter()
            .map(|name| c_string(name))
            .collect::<Result<Vec<_>>>()?;
        let mut pointers: Vec<_> = owned.iter().map(|name| name.as_ptr()).collect();
        // SAFETY: `pointers` holds live C strings, which mlx-c copies.
        let raw =
            unsafe { mlx_sys::mlx_vector_string_new_data(pointers.as_mut_ptr(), pointers.len()) };
        if raw.ctx.is_null() {
            return Err(KernelError::Exception(Exception::custom(
                "MLX could not make a vector of names",
            )));
        }
        Ok(StringVector { raw })
    }

    /// The names, read back from mlx-c.
    #[cfg(test)]
    fn names(&self) -> Vec<String> {
        // SAFETY: reads `size` entries of a live vector; mlx-c owns the strings it returns.
        unsafe {
            (0..mlx_sys::mlx_vector_string_size(self.raw))
                .map(|index| {
                    let mut text = std::ptr::null_mut();
                    mlx_sys::mlx_vector_string_get(&mut text, self.raw, index);
                    std::ffi::CStr::from_ptr(text)
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        }
    }
}

impl Drop for StringVector {
    fn drop(&mut self) {
        // SAFETY: made by mlx_vector_string_new_data, freed once.
        unsafe { mlx_sys::mlx_vector_string_free(self.raw) };
    }
}

/// mlx-c's vector of arrays: the inputs, or the outputs it returns.
struct ArrayVector {
    raw: mlx_sys::mlx_vector_array,
    kernel: String,
}

impl ArrayVector {
    fn empty(kernel: &str) -> Self {
        ArrayVector {
            // SAFETY: makes an empty vector that `ArrayVector` frees.
            raw: unsafe { mlx_sys::mlx_vector_array_new() },
            kernel: kernel.to_string(),
        }
    }

    fn new(arrays: &[&Array], kernel: &str) -> Result<Self> {
        let vector = ArrayVector::empty(kernel);
        for array in arrays {
            // SAFETY: the vector and the array are live; mlx-c takes its own reference.
            let status =
                unsafe { mlx_sys::mlx_vector_array_append_value(vector.raw, array.as_ptr()) };
            if status != 0 {
                return Err(KernelError::Mlx {
                    kernel: kernel.to_string(),
                    operation: "collect the inputs",
                });
            }
        }
        Ok(vector)
    }

    fn into_arrays(self) -> Result<Vec<Array>> {
        // SAFETY: reads `size` entries of a live vector into fresh arrays that mlx-rs owns.
        unsafe {
            (0..mlx_sys::mlx_vector_array_size(self.raw))
                .map(|index| {
                    let mut array = mlx_sys::mlx_array_new();
                    if mlx_sys::mlx_vector_array_get(&mut array, self.raw, index) != 0 {
                        mlx_sys::mlx_array_free(array);
                        return Err(KernelError::Mlx {
                            kernel: self.kernel.clone(),
                            operation: "return the outputs",
                        });
                    }
                    Ok(Array::from_ptr(array))
                })
                .collect()
        }
    }
}

impl Drop for ArrayVector {
    fn drop(&mut self) {
        // SAFETY: made by mlx_vector_array_new, freed once.
        unsafe { mlx_sys::mlx_vector_array_free(self.raw) };
    }
}

/// mlx-c's launch configuration, built from a [`LaunchConfig`].
struct RawConfig {
    raw: mlx_sys::mlx_fast_cuda_kernel_config,
}

impl RawConfig {
    fn new(kernel: &str, config: &LaunchConfig) -> Result<Self> {
        let failed = |operation| KernelError::Mlx {
            kernel: kernel.to_string(),
            operation,
        };
        // SAFETY: makes a config that `RawConfig` frees.
        let made = RawConfig {
            raw: unsafe { mlx_sys::mlx_fast_cuda_kernel_config_new() },
        };
        if made.raw.ctx.is_null() {
            return Err(failed("make a launch configuration"));
        }
        let raw = made.raw;
        let check = |status: i32, operation| {
            if status == 0 {
                Ok(())
            } else {
                Err(failed(operation))
            }
        };
        let ((gx, gy, gz), (tx, ty, tz)) = (config.grid, config.thread_group);
        // SAFETY: `raw` is live; shapes and names are live for each call, and mlx-c copies them.
        unsafe {
            for output in &config.outputs {
                check(
                    mlx_sys::mlx_fast_cuda_kernel_config_add_output_arg(
                        raw,
                        output.shape.as_ptr(),
                        output.shape.len(),
                        u32::from(output.dtype),
                    ),
                    "add an output",
                )?;
            }
            check(
                mlx_sys::mlx_fast_cuda_kernel_config_set_grid(raw, gx, gy, gz),
                "set the grid",
            )?;
            check(
                mlx_sys::mlx_fast_cuda_kernel_config_set_thread_group(raw, tx, ty, tz),
                "set the thread group",
            )?;
            for (name, value) in &config.template_args {
                if !is_identifier(name) {
                    return Err(KernelError::Arguments {
                        kernel: kernel.to_string(),
                        problem: format!("template argument `{name}` is not a C identifier"),
                    });
                }
                let name = c_string(name)?;
                let status = match *value {
                    TemplateArg::Dtype(dtype) => {
                        mlx_sys::mlx_fast_cuda_kernel_config_add_template_arg_dtype(
                            raw,
                            name.as_ptr(),
                            u32::from(dtype),
                        )
                    }
                    TemplateArg::Int(value) => {
                        mlx_sys::mlx_fast_cuda_kernel_config_add_template_arg_int(
                            raw,
                            name.as_ptr(),
                            value,
                        )
                    }
                    TemplateArg::Bool(value) => {
                        mlx_sys::mlx_fast_cuda_kernel_config_add_template_arg_bool(
                            raw,
                            name.as_ptr(),
                            value,
                        )
                    }
                };
                check(status, "add a template argument")?;
            }
            if let Some(value) = config.init_value {
                check(
                    mlx_sys::mlx_fast_cuda_kernel_config_set_init_value(raw, value),
                    "set the outputs' initial value",
                )?;
            }
        }
        Ok(made)
    }
}

impl Drop for RawConfig {
    fn drop(&mut self) {
        // SAFETY: made by mlx_fast_cuda_kernel_config_new, freed once.
        unsafe { mlx_sys::mlx_fast_cuda_kernel_config_free(self.raw) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(grid: (i32, i32, i32), thread_group: (i32, i32, i32)) -> LaunchConfig {
        LaunchConfig {
            grid,
            thread_group,
            outputs: vec![OutputSpec {
                shape: vec![4],
                dtype: Dtype::Float32,
            }],
            template_args: vec![("T".into(), TemplateArg::Dtype(Dtype::Float32))],
            init_value: None,
        }
    }

    #[test]
    fn names_reach_mlx_in_order() {
        let names = StringVector::new(&["queries", "key_pages", "out"]).unwrap();
        assert_eq!(names.names(), ["queries", "key_pages", "out"]);
    }

    #[test]
    fn a_launch_configuration_mlx_accepts() {
        let config = launch((64, 9, 3), (32, 1, 1));
        config.check("k", 1).unwrap();
        RawConfig::new("k", &config).unwrap();
    }

    #[test]
    fn launches_cuda_cannot_run_are_refused_with_their_reason() {
        for (config, outputs, reason) in [
            (launch((0, 1, 1), (32, 1, 1)), 1, "at least one thread"),
            (
                launch((64, 1, 1), (64, 32, 1)),
                1,
                "more than the 1024 threads",
            ),
            (
                launch((64, 1, 1), (32, 1, 1)),
                2,
                "1 output shapes for 2 output names",
            ),
        ] {
            let error = config.check("k", outputs).unwrap_err().to_string();
            assert!(error.contains(reason), "{error:?} should say {reason:?}");
        }
        let mut negative = launch((4, 1, 1), (4, 1, 1));
        negative.outputs[0].shape = vec![-1];
        let error = negative.check("k", 1).unwrap_err().to_string();
        assert!(error.contains("negative output shape"), "{error}");
    }

    #[test]
    fn names_that_are_not_identifiers_are_refused() {
        for bad in ["a b", "1x", ""] {
            let error = CudaKernel::new("k", &[bad], &["out"], "")
                .err()
                .expect("refused")
                .to_string();
            assert!(
                error.contains(&format!("`{bad}` is not a C identifier")),
                "{error}"
            );
        }
        let error = CudaKernel::new("k", &["a"], &[], "")
            .err()
            .expect("refused");
        assert!(error.to_string().contains("at least one output"), "{error}");
    }
}
