"""Isolates MLX's CUDA quantized_matmul from the course's code: for each shape, bit width and
group size, compares `mx.quantized_matmul` on the GPU with the float product of the same
dequantized weight, on the GPU and on the CPU, in float32 (run with MLX_ENABLE_TF32=0).

    python3 quantized_matmul_check.py [--json FILE]

An error far above the float32 rounding (~1e-5 relative) in the GPU column only is MLX's.
"""

import argparse
import json

import mlx.core as mx


def max_relative_error(got, expected):
    scale = mx.maximum(mx.abs(expected).max(), mx.array(1e-6))
    return (mx.abs(got - expected).max() / scale).item()


def check(x_shape, n, bits, group_size):
    """x: [..., K]; W: [N, K], quantized along K; the product is x W^T, [..., N]."""
    mx.random.seed(0)
    w = mx.random.normal((n, x_shape[-1]))
    x = mx.random.normal(x_shape)
    errors = {}
    devices = [("gpu", mx.gpu)] if mx.is_available(mx.gpu) else []
    for name, device in devices + [("cpu", mx.cpu)]:
        with mx.stream(device):
            packed, scales, biases = mx.quantize(w, group_size, bits)
            dequantized = mx.dequantize(packed, scales, biases, group_size, bits)  # [N, K]
            reference = x @ dequantized.T
            fused = mx.quantized_matmul(x, packed, scales, biases, True, group_size, bits)
            errors[name] = max_relative_error(fused, reference)
    return errors


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    args = parser.parse_args()
    rows = []
    print(f"MLX {mx.__version__}, default device {mx.default_device()}")
    print("max |quantized_matmul - x @ dequantize(W).T| / max |x @ dequantize(W).T|")
    # Chapter 9's QuantizedLinear test (x [2, 3, 128], W [96, 128]), its neighbours, and
    # SmolLM2's and Qwen2-1.5B's projections.
    shapes = [((2, 3, 128), 96), ((6, 128), 96), ((1, 128), 96), ((6, 256), 96),
              ((6, 128), 512), ((1, 576), 1536), ((64, 576), 1536), ((1, 1536), 8960)]
    for x_shape, n in shapes:
        for bits in (4, 8):
            for group_size in (32, 64, 128):
                if x_shape[-1] % group_size:
                    continue
                errors = check(x_shape, n, bits, group_size)
                rows.append(dict(x=list(x_shape), n=n, bits=bits, group_size=group_size, **errors))
                flag = "  <-- wrong" if max(errors.values()) > 1e-4 else ""
                print(f"x {list(x_shape)} W [{n}, {x_shape[-1]}] {bits} bits, groups of {group_size} "
                      "| " + ", ".join(f"{name} {error:.2e}" for name, error in errors.items()) + flag)
    if args.json:
        with open(args.json, "w") as file:
            json.dump(rows, file, indent=1)


if __name__ == "__main__":
    main()
