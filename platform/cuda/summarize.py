"""Turns the device run's results folder into summary.md: test totals, and per model the
engine beside mlx-lm and transformers, with ratios and the floors.

    python3 summarize.py RESULTS_DIR
"""

import json
import pathlib
import re
import sys

MODELS = {"smollm2-135m": "SmolLM2-135M", "qwen2-1.5b": "Qwen2-1.5B"}
SYSTEMS = [
    ("engine", "engine"),
    ("mlx-lm", "mlx-lm"),
    ("transformers", "transformers"),
    ("transformers-compiled", "transformers, static cache + torch.compile"),
]


def read(path):
    return json.loads(path.read_text()) if path.exists() else None


def test_totals(log):
    if not log.exists():
        return "not run"
    text = log.read_text(errors="replace")
    passed = len(re.findall(r"^test \S+ \.\.\. ok$", text, re.M))
    failures = sorted(set(re.findall(r"^test (\S+) \.\.\. FAILED$", text, re.M)))
    executables = len(re.findall(r"^== ", text, re.M))
    finished = len(re.findall(r"^test result: ", text, re.M))
    line = f"{passed} passed, {len(failures)} failed"
    if finished < executables:
        line += f" ({executables - finished} of {executables} test executables did not finish)"
    if "skipped: models/" in text:
        line += " (some tests skipped: a model was absent)"
    if failures:
        groups = sorted({name.split("::")[0] for name in failures})
        line += ": " + ", ".join(f"{group} ({sum(n.startswith(group + '::') or n == group for n in failures)})" for group in groups)
    return line


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def model_section(results, name, title, floors):
    engine_single = read(results / f"engine-single-{name}.json")
    engine_batching = read(results / f"engine-batching-{name}.json")
    others = {
        system: read(results / f"{system}-{name}.json")
        for system in ("mlx-lm", "transformers", "transformers-compiled")
    }
    if not engine_single and not any(others.values()):
        return []
    single = {"engine": engine_single}
    batching = {"engine": {row["concurrency"]: row["tokens_per_s"] for row in engine_batching or []}}
    for system, result in others.items():
        single[system] = result and result["single_stream"]
        batching[system] = {row["concurrency"]: row["tokens_per_s"] for row in (result or {}).get("batching", [])}

    lines = [f"## {title} (seeded random bf16 weights)", ""]
    lines += [
        "| system | prefill tok/s (256-token prompt) | decode tok/s (1 stream, 128 tokens) | aggregate tok/s, 64 streams |",
        "|---|---:|---:|---:|",
    ]
    for system, label in SYSTEMS:
        s = single.get(system) or {}
        lines.append(
            f"| {label} | {s.get('prefill_tokens_per_s', 0):,.0f} | {s.get('decode_tokens_per_s', 0):,.1f} "
            f"| {format(batching[system][64], ',.0f') if 64 in batching[system] else '-'} |"
        )
    e, m = single["engine"] or {}, single["mlx-lm"] or {}
    lines += [
        "",
        f"engine / mlx-lm: prefill {ratio(e.get('prefill_tokens_per_s'), m.get('prefill_tokens_per_s'))}, "
        f"decode {ratio(e.get('decode_tokens_per_s'), m.get('decode_tokens_per_s'))}, "
        f"64 streams {ratio(batching['engine'].get(64), batching['mlx-lm'].get(64))}.",
    ]
    if engine_single:
        lines.append(
            f"Engine decode step (median): {engine_single['median_build_ms']:.2f} ms building the graph, "
            f"{engine_single['median_eval_ms']:.2f} ms evaluating it and reading the token back."
        )
        for before in engine_single.get("before", []):
            lines.append(
                f"{before['variant']}: decode {before['decode_tokens_per_s']:,.1f} tok/s "
                f"({before['median_build_ms']:.2f} ms building, {before['median_eval_ms']:.2f} ms evaluating); "
                f"the engine decodes {ratio(engine_single['decode_tokens_per_s'], before['decode_tokens_per_s'])} as fast."
            )
    model_floors = (floors or {}).get("models", {}).get(name)
    if model_floors:
        one, many = model_floors["1"], model_floors["64"]
        lines.append(
            f"Floors: the MLX matmul stack alone takes {one['matmul_stack_ms']:.2f} ms per step at batch 1 "
            f"({one['matmul_stack_tokens_per_s']:,.0f} tok/s) and {many['matmul_stack_ms']:.2f} ms at batch 64 "
            f"({many['matmul_stack_tokens_per_s']:,.0f} tok/s); reading the {one['weight_bytes'] / 1e6:,.0f} MB "
            f"of weights once per step at the measured bandwidth takes {one['bandwidth_floor_ms']:.3f} ms "
            f"({one['bandwidth_floor_tokens_per_s']:,.0f} tok/s at batch 1)."
        )
    lines += ["", "| concurrent streams | engine tok/s | mlx-lm batch_generate tok/s | transformers generate tok/s | engine / mlx-lm |", "|---:|---:|---:|---:|---:|"]
    for c in sorted(set().union(*[set(b) for b in batching.values()])):
        row = [batching[s].get(c) for s, _ in SYSTEMS[:3]]
        cells = " | ".join(f"{v:,.0f}" if v else "-" for v in row)
        lines.append(f"| {c} | {cells} | {ratio(row[0], row[1])} |")
    return lines + [""]


def main():
    results = pathlib.Path(sys.argv[1])
    gpu = (results / "gpu.txt").read_text().strip() if (results / "gpu.txt").exists() else "?"
    lines = ["# The engine on an NVIDIA GPU (MLX 0.32.2, CUDA backend)", "", "```", gpu, "```", ""]
    if (results / "doctor.log").exists():
        lines += ["```", (results / "doctor.log").read_text().strip(), "```", ""]
    lines += [
        "Tests (chapters 1-6, 8, 9 with their solutions, and the bridge):",
        "",
        f"- MLX defaults (float32 matmuls on TF32 tensor cores): {test_totals(results / 'tests-tf32.log')}",
        f"- MLX_ENABLE_TF32=0 (full float32): {test_totals(results / 'tests-float32.log')}",
        "",
    ]
    floors = read(results / "floors.json")
    if floors:
        bandwidth = floors["bandwidth_bytes_per_s"]
        measured = ", ".join(f"{k} {v / 1e12:.2f} TB/s" for k, v in bandwidth.items() if v)
        lines += [f"Measured device bandwidth (read + write): {measured}.", ""]
    for name, title in MODELS.items():
        lines += model_section(results, name, title, floors)
    (results / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
