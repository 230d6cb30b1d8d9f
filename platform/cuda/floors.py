"""The floors under the engine's speed on this GPU, measured with MLX itself.

    python3 floors.py CONFIG.json [CONFIG.json...] --json OUT.json

- Memory bandwidth: a 1 GiB bf16 element-wise pass through MLX, and a 1 GiB device copy through
  PyTorch, each counting bytes read plus bytes written (median of 20).
- The matmul stack alone: one decode step's linear layers (q, k, v, o, gate, up, down in every
  layer, then the tied output layer) with seeded random bf16 weights, at batch 1 and 64, joined
  by the two element-wise ops that make the layers depend on each other (median of 50 steps).
- The bandwidth floor: weight bytes read per decode step over the measured bandwidth.
"""

import argparse
import json
import pathlib
import statistics
import time

import mlx.core as mx


def median_seconds(run, repeats):
    run()  # warm-up: kernel selection, allocation
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def mlx_bandwidth():
    x = mx.random.normal((1 << 29,)).astype(mx.bfloat16)  # 1 GiB
    mx.eval(x)
    seconds = median_seconds(lambda: mx.eval(x * 2), 20)
    return 2 * x.nbytes / seconds


def torch_bandwidth():
    try:
        import torch
    except ImportError:
        return None
    x = torch.randn(1 << 29, device="cuda", dtype=torch.bfloat16)
    y = torch.empty_like(x)

    def copy():
        y.copy_(x)
        torch.cuda.synchronize()

    return 2 * x.numel() * 2 / median_seconds(copy, 20)


def layer_weights(config, key):
    e, f = config["hidden_size"], config["intermediate_size"]
    heads, kv_heads = config["num_attention_heads"], config["num_key_value_heads"]
    d = config.get("head_dim", e // heads)
    shapes = {
        "q": (heads * d, e),
        "k": (kv_heads * d, e),
        "v": (kv_heads * d, e),
        "o": (e, heads * d),
        "gate": (f, e),
        "up": (f, e),
        "down": (e, f),
    }
    keys = mx.random.split(key, len(shapes))
    return {
        name: (0.02 * mx.random.normal(shape, key=k)).astype(mx.bfloat16)
        for (name, shape), k in zip(shapes.items(), keys)
    }


def matmul_stack(config, batch):
    key = mx.random.key(0)
    layers = [layer_weights(config, k) for k in mx.random.split(key, config["num_hidden_layers"])]
    embedding = (0.02 * mx.random.normal((config["vocab_size"], config["hidden_size"]))).astype(
        mx.bfloat16
    )
    mx.eval(layers, embedding)
    x = mx.random.normal((batch, config["hidden_size"])).astype(mx.bfloat16)

    def step():
        h, side = x, []
        for w in layers:
            q = h @ w["q"].T
            side += [h @ w["k"].T, h @ w["v"].T]
            attention = q @ w["o"].T
            mlp = ((h @ w["gate"].T) * (h @ w["up"].T)) @ w["down"].T
            h = attention + mlp
        mx.eval(h @ embedding.T, side)

    weight_bytes = sum(a.nbytes for w in layers for a in w.values()) + embedding.nbytes
    return median_seconds(step, 50), weight_bytes


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("configs", type=pathlib.Path, nargs="+")
    parser.add_argument("--json", type=pathlib.Path, required=True)
    args = parser.parse_args()

    bandwidth = {"mlx_elementwise": mlx_bandwidth(), "torch_copy": torch_bandwidth()}
    print(f"bandwidth (read + write): {bandwidth}", flush=True)
    best = max(b for b in bandwidth.values() if b)
    models = {}
    for path in args.configs:
        config = json.loads(path.read_text())
        rows = {}
        for batch in (1, 64):
            seconds, weight_bytes = matmul_stack(config, batch)
            rows[batch] = {
                "matmul_stack_ms": seconds * 1e3,
                "matmul_stack_tokens_per_s": batch / seconds,
                "weight_bytes": weight_bytes,
                "bandwidth_floor_ms": weight_bytes / best * 1e3,
                "bandwidth_floor_tokens_per_s": batch * best / weight_bytes,
            }
            print(f"{path.stem} batch {batch}: {rows[batch]}", flush=True)
        models[path.stem] = rows
    result = {"device": str(mx.default_device()), "bandwidth_bytes_per_s": bandwidth, "models": models}
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
