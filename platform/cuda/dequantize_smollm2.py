"""Rebuilds models/smollm2-135m-instruct (float32, HF layout) on the device from its 4-bit MLX
conversion, which is small enough to carry (the float32 directory is 540 MB).

    python3 dequantize_smollm2.py FOUR_BIT_DIR FLOAT32_CONFIG.json OUT_DIR

The 4-bit directory stores the GGUF's Q4_1 and Q8_0 blocks losslessly as MLX affine
quantization (w = scale * q + bias, float16 scale and bias): dequantizing with float32 scales
and biases gives back the float32 weights that `cargo xtask models fetch` writes, so the
reference-logit tests see the same model.
"""

import json
import pathlib
import shutil
import sys

import mlx.core as mx


def main():
    four_bit, config, out = (pathlib.Path(arg) for arg in sys.argv[1:4])

    quantization = json.loads((four_bit / "config.json").read_text())["quantization"]
    tensors = mx.load(str(four_bit / "model.safetensors"))
    dense = {}
    for name, value in tensors.items():
        if name.endswith((".scales", ".biases")):
            continue
        layer = name.removesuffix(".weight")
        if f"{layer}.scales" in tensors:
            setting = quantization.get(layer, quantization)
            dense[name] = mx.dequantize(
                value,
                tensors[f"{layer}.scales"].astype(mx.float32),
                tensors[f"{layer}.biases"].astype(mx.float32),
                group_size=setting["group_size"],
                bits=setting["bits"],
            )
        else:
            dense[name] = value.astype(mx.float32)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    mx.save_safetensors(str(staging / "model.safetensors"), dense)
    shutil.copyfile(config, staging / "config.json")
    for extra in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        shutil.copyfile(four_bit / extra, staging / extra)
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    print(f"{out}: {len(dense)} float32 tensors from {four_bit}")


if __name__ == "__main__":
    main()
