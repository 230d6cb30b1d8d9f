"""Seeded random bf16 weights for a Hugging Face architecture, written as an HF model directory.

    python3 make_weights.py CONFIG.json OUT_DIR [--seed 0]

The weights come from transformers' own initialisation (normal, std = initializer_range) under
a fixed seed, made on the GPU and saved with `save_pretrained`. config.json is then replaced by
CONFIG.json itself, so that every engine reads the same plain fields (transformers 5 rewrites
rope_theta into rope_parameters, which older readers miss). No tokenizer: the benchmarks feed
token ids.
"""

import argparse
import json
import pathlib
import shutil
import time

import torch
import transformers


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config", type=pathlib.Path)
    parser.add_argument("out", type=pathlib.Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    fields = json.loads(args.config.read_text())
    config = transformers.AutoConfig.for_model(**fields)
    torch.manual_seed(args.seed)
    with torch.device("cuda"):
        model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    staging = args.out.with_name(args.out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    shutil.copyfile(args.config, staging / "config.json")
    shutil.rmtree(args.out, ignore_errors=True)
    staging.rename(args.out)
    parameters = sum(p.numel() for p in model.parameters())
    print(
        f"{args.out}: {parameters / 1e6:.1f}M parameters, bf16, seed {args.seed}, "
        f"{time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
