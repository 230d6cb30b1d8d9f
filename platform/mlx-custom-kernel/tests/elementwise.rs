//! A trivial kernel, `out = a * b + 1` element by element, against the same MLX ops: on a CUDA
//! GPU it must match them (exactly in float32; bfloat16 ops round after each op, the kernel once);
//! elsewhere `apply` must say that it needs CUDA.

use mlx_custom_kernel::{
    cuda_kernels_run_here, CudaKernel, KernelError, LaunchConfig, OutputSpec, TemplateArg,
};
use mlx_rs::{Array, Dtype};
use test_support::{assert_allclose, random_array, Tolerance};

const MULTIPLY_ADD: &str = r#"
    const int index = blockIdx.x * blockDim.x + threadIdx.x;
    if (index < a_shape[0]) {
        // Rounded after each operation, as MLX's multiply then add are (no fused multiply-add).
        const float product = __fmul_rn(static_cast<float>(a[index]), static_cast<float>(b[index]));
        out[index] = static_cast<T>(__fadd_rn(product, 1.0f));
    }
"#;

fn multiply_add(a: &Array, b: &Array) -> Result<Array, KernelError> {
    let kernel = CudaKernel::new("test_multiply_add", &["a", "b"], &["out"], MULTIPLY_ADD)?;
    let length = a.shape()[0];
    let outputs = kernel.apply(
        &[a, b],
        &LaunchConfig {
            grid: (length, 1, 1),
            thread_group: (128, 1, 1),
            outputs: vec![OutputSpec {
                shape: vec![length],
                dtype: a.dtype(),
            }],
            template_args: vec![("T".into(), TemplateArg::Dtype(a.dtype()))],
            init_value: None,
        },
    )?;
    Ok(outputs.into_iter().next().expect("one output"))
}

#[test]
fn a_trivial_kernel_matches_mlx_ops_or_says_it_needs_cuda() {
    // 1000 is not a multiple of the thread group: the last block's extra threads must not write.
    for (length, dtype, tolerance) in [
        (
            1000,
            Dtype::Float32,
            Tolerance {
                rtol: 0.0,
                atol: 0.0,
            },
        ),
        (37, Dtype::Bfloat16, Tolerance::BF16),
    ] {
        let a = random_array(&[length], dtype, 1);
        let b = random_array(&[length], dtype, 2);
        let one = Array::from_f32(1.0).as_dtype(dtype).unwrap();
        let expected = a.multiply(&b).unwrap().add(&one).unwrap();
        let result = multiply_add(&a, &b);
        if cuda_kernels_run_here().unwrap() {
            let got = result.unwrap_or_else(|error| panic!("on CUDA the kernel runs: {error}"));
            assert_eq!(got.dtype(), dtype);
            assert_allclose(
                &got,
                &expected,
                tolerance,
                "a * b + 1 by a custom CUDA kernel",
            );
        } else {
            let error = result.expect_err("without CUDA, apply fails");
            assert!(
                matches!(error, KernelError::CudaUnavailable | KernelError::NotOnGpu),
                "the error says CUDA is missing, got {error:?}"
            );
            assert!(error.to_string().contains("CUDA"), "{error}");
        }
    }
}

#[test]
fn a_call_with_the_wrong_number_of_inputs_is_refused_before_mlx_sees_it() {
    let kernel = CudaKernel::new("test_multiply_add", &["a", "b"], &["out"], MULTIPLY_ADD).unwrap();
    let a = random_array(&[4], Dtype::Float32, 1);
    let config = LaunchConfig {
        grid: (4, 1, 1),
        thread_group: (4, 1, 1),
        outputs: vec![OutputSpec {
            shape: vec![4],
            dtype: Dtype::Float32,
        }],
        template_args: vec![],
        init_value: None,
    };
    let error = kernel.apply(&[&a], &config).expect_err("refused");
    if cuda_kernels_run_here().unwrap() {
        assert!(
            error.to_string().contains("1 inputs for 2 input names"),
            "{error}"
        );
    } else {
        assert!(matches!(error, KernelError::CudaUnavailable), "{error:?}");
    }
}
